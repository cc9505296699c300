"""Approve before write: what a plan kept for approval stores, and how approval picks from it.

Under `approval = "required"` a pass stores its plan (`hold_plan`) instead of applying it. Each
change is kept with a fingerprint of the Syncro objects it was computed from (a product, or a
schedule's lines); `sync-daemon plan approve` applies a change only while that fingerprint
still matches what Syncro holds. Everything here but `hold_plan` is pure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Union, get_args, get_origin, get_type_hints

from sync_daemon.connectors.syncro import Product, Schedule
from sync_daemon.errors import InvariantError, UsageError
from sync_daemon.plan import (
    AddCharge,
    AdoptLine,
    AdoptProduct,
    Change,
    CreateLine,
    CreateProduct,
    CustomerRef,
    DeleteLine,
    Notice,
    Plan,
    ProductChange,
    UpdateLine,
    UpdateProductPrice,
)
from sync_daemon.state import PlannedChange, StateTransaction, StoredPlan, utc_now

CHANGE_TYPES: dict[str, type[Change]] = {cls.__name__: cls for cls in (
    CreateProduct, AdoptProduct, UpdateProductPrice, CreateLine, AdoptLine, UpdateLine,
    DeleteLine, AddCharge)}


@dataclass(frozen=True, slots=True)
class SyncroView:
    """The Syncro objects changes are planned on: products by id, schedules by id (None: gone)."""

    products: Mapping[int, Product]
    schedules: Mapping[int, Schedule | None]


# -- storing a change ---------------------------------------------------------------------------


def encode_change(change: Change) -> dict[str, Any]:
    """A change as JSON-ready data: Decimals as text, tuples as lists, its type by name."""
    return {"type": type(change).__name__,
            **{f.name: _encode(getattr(change, f.name)) for f in dataclasses.fields(change)}}


def decode_change(data: Mapping[str, Any]) -> Change:
    """The change `encode_change` stored.

    Raises:
        InvariantError: the data is not a change this version knows.
    """
    cls = CHANGE_TYPES.get(str(data.get("type")))
    if cls is None:
        raise InvariantError(f"a stored plan holds an unknown change type {data.get('type')!r}")
    hints = get_type_hints(cls)
    try:
        return cls(**{f.name: _decode(hints[f.name], data[f.name])
                      for f in dataclasses.fields(cls) if f.name in data})
    except (TypeError, ValueError, ArithmeticError) as error:
        raise InvariantError(f"a stored {cls.__name__} change cannot be read: {error}") from error


def _encode(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    if isinstance(value, CustomerRef):
        return dataclasses.asdict(value)
    return value


def _decode(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        (kind,) = [arg for arg in get_args(kind) if arg is not type(None)]
        return _decode(kind, value)
    if origin is tuple:
        return tuple(_decode(get_args(kind)[0], item) for item in value)
    if kind is Decimal:
        return Decimal(str(value))
    if kind is CustomerRef:
        return CustomerRef(**value)
    if kind in (int, str, bool) and not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {value!r}")
    return value


def customer_of(change: Change) -> CustomerRef | None:
    """The mapped customer a change belongs to; None for product changes."""
    return None if isinstance(change, ProductChange) else change.customer


# -- fingerprints ---------------------------------------------------------------------------------


def fingerprint(change: Change, view: SyncroView) -> str:
    """A digest of the Syncro objects the change was computed from.

    A product change depends on its product (a create, on every product of its name); a line
    change or a charge on its schedule's lines. Nothing else is included, so a change elsewhere
    in Syncro (or the schedule's next invoice date) does not refuse it.
    """
    match change:
        case CreateProduct():
            subject: object = [_product(p) for p in sorted(view.products.values(),
                                                           key=lambda p: p.id)
                               if p.name == change.name]
        case AdoptProduct() | UpdateProductPrice():
            product = view.products.get(change.product_id)
            subject = None if product is None else _product(product)
        case _:
            subject = _schedule(view.schedules.get(change.schedule_id))
    text = json.dumps(subject, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _product(product: Product) -> dict[str, object]:
    return {"id": product.id, "name": product.name, "cost": str(product.price_cost),
            "retail": str(product.price_retail), "taxable": product.taxable,
            "disabled": product.disabled}


def _schedule(schedule: Schedule | None) -> object:
    if schedule is None:
        return None
    lines = sorted(schedule.lines, key=lambda line: line.id)
    return {"id": schedule.id, "customer_id": schedule.customer_id,
            "lines": [[line.id, line.product_id, line.name, str(line.quantity),
                       str(line.retail), str(line.cost), line.taxable, line.one_time_charge]
                      for line in lines]}


def schedules_needed(changes: Iterable[Change]) -> set[int]:
    """The schedules whose lines the changes' fingerprints cover."""
    return {c.schedule_id for c in changes if not isinstance(c, ProductChange)}


# -- choosing what to approve ----------------------------------------------------------------------


def select(pending: Sequence[tuple[PlannedChange, Change]],
           only: Sequence[str]) -> list[tuple[PlannedChange, Change]]:
    """The pending changes an approval applies, in plan order.

    Without `only`, all of them. With it, the changes of the customers named (vendor customer
    id, vendor name or Syncro customer name, any case), plus the creation or adoption of each
    product those changes bill; product price updates wait for an approval without `only`.

    Raises:
        UsageError: a name in `only` matches no pending change.
    """
    if not only:
        return list(pending)
    wanted = {name.casefold(): name for name in only}
    chosen: list[tuple[PlannedChange, Change]] = []
    matched: set[str] = set()
    for row, change in pending:
        customer = customer_of(change)
        if customer is None:
            continue
        names = {customer.vendor_customer_id.casefold(), customer.name.casefold(),
                 customer.psa_customer.casefold()}
        if hits := names & wanted.keys():
            matched |= hits
            chosen.append((row, change))
    unknown = [wanted[key] for key in wanted.keys() - matched]
    if unknown:
        raise UsageError(f"--only {', '.join(sorted(unknown))}: no pending change of this plan "
                         "belongs to that customer (`sync-daemon plan show` lists them)")
    skus = {c.sku for _, c in chosen}
    products = [(row, c) for row, c in pending
                if isinstance(c, CreateProduct | AdoptProduct) and c.sku in skus]
    return sorted([*products, *chosen], key=lambda pair: pair[0].seq)


# -- storing a plan -------------------------------------------------------------------------------


def hold_plan(tx: StateTransaction, run_id: str, plan: Plan, view: SyncroView) -> list[str]:
    """Store the plan of pass `run_id` for approval; older pending plans of its vendor are
    superseded. Returns the superseded plans' run ids.
    """
    superseded = supersede(tx, plan.vendor, by=run_id)
    tx.save_plan(
        StoredPlan(run_id=run_id, vendor=plan.vendor, status="pending",
                   created_at=utc_now(), notices=[notice_dict(n) for n in plan.notices],
                   seats={"before": plan.seats.before, "after": plan.seats.after}),
        [PlannedChange(run_id=run_id, seq=seq, kind=type(change).__name__,
                       customer=customer.vendor_customer_id if (customer := customer_of(change))
                       else None,
                       change=encode_change(change), fingerprint=fingerprint(change, view))
         for seq, change in enumerate(plan.changes, start=1)])
    return superseded


def supersede(tx: StateTransaction, vendor: str, *, by: str) -> list[str]:
    """Mark every pending plan of `vendor` superseded by pass `by`; their run ids."""
    older = [p.run_id for p in tx.list_plans(vendor=vendor, status="pending", limit=None)]
    for run_id in older:
        tx.close_plan(run_id, "superseded", message=f"superseded by run {by}")
    return older


def notice_dict(notice: Notice) -> dict[str, str | None]:
    """A notice as stored with a plan and printed by `plan show --format json`."""
    return {"level": notice.level, "kind": notice.kind, "customer": notice.customer,
            "message": notice.message}
