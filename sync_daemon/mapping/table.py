"""Mapping-table rules that need no I/O: finding rows and customers by id or name, choosing the
default recurring invoice, mapping and unmapping, filtering and sorting for `mapping list`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from sync_daemon.connectors.syncro import Customer, Schedule
from sync_daemon.errors import UsageError
from sync_daemon.state import VendorCustomer

T = TypeVar("T")
SortKey = Literal["vendor-customer", "status", "psa-customer"]
STATUS_NAMES = {"mapped": "Mapped", "not_mapped": "Not mapped", "detached": "Detached"}


def find_one(items: Sequence[T], text: str, *, what: str, ident: Callable[[T], str],
             name: Callable[[T], str]) -> T:
    """The one item whose id equals `text` or whose name equals it ignoring case."""
    by_id = [item for item in items if ident(item) == text.strip()]
    if len(by_id) == 1:
        return by_id[0]
    wanted = text.strip().casefold()
    by_name = by_id or [item for item in items if name(item).casefold() == wanted]
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        listed = "; ".join(f"{name(i)} (id {ident(i)}{_motion(i)})" for i in by_name)
        shared_id = len({ident(i) for i in by_name}) == 1
        hint = "use --billing-motion" if by_id or shared_id else "use the id"
        raise UsageError(f"{what} {text!r} is ambiguous: {listed}; {hint}")
    close = [i for i in items if wanted and wanted in name(i).casefold()][:10]
    hint = ("; did you mean: " + "; ".join(f"{name(i)} (id {ident(i)})" for i in close)
            if close else "")
    raise UsageError(f"no {what} {text!r}{hint}")


def find_vendor_customer(rows: Sequence[VendorCustomer], text: str,
                         billing_motion: str | None = None) -> VendorCustomer:
    """A mapping row by vendor id or exact vendor name (optionally of one billing motion)."""
    if billing_motion is not None:
        rows = [r for r in rows if r.billing_motion.casefold() == billing_motion.casefold()]
    return find_one(rows, text, what="vendor customer", ident=lambda r: r.vendor_customer_id,
                    name=lambda r: r.name)


def find_customer(customers: Sequence[Customer], text: str) -> Customer:
    """A Syncro customer by id or exact name."""
    return find_one(customers, text, what="Syncro customer", ident=lambda c: str(c.id),
                    name=lambda c: c.display_name)


def choose_schedule(customer: Customer, schedules: Sequence[Schedule],
                    wanted: int | None) -> Schedule:
    """The recurring invoice to bill on: `wanted`, else the customer's only active one."""
    own = [s for s in schedules if s.customer_id == customer.id]
    if wanted is not None:
        match = [s for s in own if s.id == wanted]
        if not match:
            raise UsageError(f"recurring invoice {wanted} does not belong to "
                             f"{customer.display_name} (id {customer.id}); "
                             f"theirs: {_listing(own)}")
        return match[0]
    active = [s for s in own if not s.paused]
    if len(active) == 1:
        return active[0]
    if not active:
        raise UsageError(f"{customer.display_name} has no active recurring invoice in Syncro; "
                         "create one, then map with --schedule ID")
    raise UsageError(f"{customer.display_name} has several active recurring invoices: "
                     f"{_listing(active)}; choose one with --schedule ID")


def mapped(row: VendorCustomer, customer: Customer, schedule: Schedule, *,
           minimum: int | None, included: int | None) -> VendorCustomer:
    """The row mapped to `customer` and `schedule`."""
    return dataclasses.replace(
        row, status="mapped", psa_customer_id=customer.id, psa_customer_name=customer.display_name,
        schedule_id=schedule.id, minimum=minimum, included=included)


def unmapped(row: VendorCustomer) -> VendorCustomer | None:
    """Back to Not mapped; a Detached row leaves the table (None), as Syncro's tool does."""
    if row.status == "detached":
        return None
    return dataclasses.replace(row, status="not_mapped", psa_customer_id=None,
                               psa_customer_name=None, schedule_id=None, minimum=None,
                               included=None)


def select(rows: Sequence[VendorCustomer], *, status: str | None = None,
           search: str | None = None, sort: SortKey = "vendor-customer") -> list[VendorCustomer]:
    """Rows for `mapping list`: one status, a case-insensitive search, one sort order."""
    chosen = [r for r in rows if status is None or r.status == status.replace("-", "_")]
    if search:
        needle = search.casefold()
        chosen = [r for r in chosen if needle in r.name.casefold()
                  or needle in (r.psa_customer_name or "").casefold()
                  or needle in r.vendor_customer_id.casefold()]
    keys: dict[str, Callable[[VendorCustomer], tuple[str, ...]]] = {
        "vendor-customer": lambda r: (r.name.casefold(), r.billing_motion),
        "status": lambda r: (STATUS_NAMES[r.status], r.name.casefold()),
        "psa-customer": lambda r: ((r.psa_customer_name or "\uffff").casefold(),
                                   r.name.casefold()),
    }
    return sorted(chosen, key=keys[sort])


def _motion(item: object) -> str:
    motion = getattr(item, "billing_motion", "")
    return f", billing motion {motion}" if motion else ""


def _listing(schedules: Sequence[Schedule]) -> str:
    if not schedules:
        return "none"
    return "; ".join(f"{s.id} {s.name!r}{' (paused)' if s.paused else ''}" for s in schedules)
