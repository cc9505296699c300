"""Write-ahead intents for level writes (a line's quantity or prices, a product's prices, a line
delete), and their recovery at the start of the next pass.

A crash after Syncro applied such a write but before it was recorded would leave Syncro right
and the audit log without the change: the next plan finds nothing to do. So `Applier` commits
an intent before the write and settles it in the transaction that records it, and a pass first
reads Syncro for each intent left pending: one that landed is recorded as the crashed run
would have, any other is abandoned (the pass's own plan then does what is still needed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, get_args

from sync_daemon.connectors.syncro import Product, Schedule, SyncroClient
from sync_daemon.errors import InvariantError, NotFoundError
from sync_daemon.logs import get_logger
from sync_daemon.plan import DeleteLine, FieldChange, UpdateLine, UpdateProductPrice, number
from sync_daemon.state import AuditEntry, StateStore, StateTransaction, WriteIntent

log = get_logger()
LevelKind = Literal["line_update", "product_price", "line_delete"]
LEVEL_KINDS: frozenset[str] = frozenset(get_args(LevelKind))
RECOVERED = " (recorded after an interrupted run)"
# The Syncro field each value of `LevelIntent.sets` is read back from.
_LINE_FIELDS = {"quantity": "quantity", "retail": "retail", "cost": "cost"}
_PRODUCT_FIELDS = {"cost": "price_cost", "retail": "price_retail"}


@dataclass(frozen=True, slots=True)
class LevelIntent:
    """A level write about to be sent, with what recording it takes.

    Attributes:
        kind: what the write does.
        vendor: whose pass sends it.
        run_id: the run that sends it (and that its audit entries belong to).
        target: `line:<id>` or `product:<id>`, as the audit log names it.
        sku: the vendor SKU of the line or product.
        object_id: the line's or the product's id.
        schedule_id: the line's recurring invoice (None for a product).
        sets: the values the write sets (`quantity`, `retail`, `cost`); empty for a delete.
        quantity_before: what the line held when planned (recorded when `sets` has no quantity).
        rows: the audit rows that record it.
    """

    kind: LevelKind
    vendor: str
    run_id: str
    target: str
    sku: str
    object_id: int
    schedule_id: int | None
    sets: Mapping[str, Decimal]
    quantity_before: Decimal | None
    rows: tuple[FieldChange, ...]

    @property
    def key(self) -> str:
        """Deterministic per run and target: one level write per target in a run."""
        return f"{self.vendor}:{self.kind}:{self.run_id}:{self.target}"

    def payload(self) -> dict[str, Any]:
        """The intent as JSON, Decimals as text."""
        return {
            "vendor": self.vendor, "target": self.target, "sku": self.sku,
            "object_id": self.object_id, "schedule_id": self.schedule_id,
            "sets": {name: str(value) for name, value in self.sets.items()},
            "quantity_before": None if self.quantity_before is None
            else str(self.quantity_before),
            "audit": [dataclasses.asdict(row) for row in self.rows],
        }

    @classmethod
    def from_stored(cls, intent: WriteIntent) -> LevelIntent:
        """Read back an intent `payload()` wrote.

        Raises:
            InvariantError: the stored payload is not one this module writes.
        """
        data = intent.payload
        try:
            before = data["quantity_before"]
            return cls(
                kind=intent.kind,  # type: ignore[arg-type]  # checked by the caller
                vendor=str(data["vendor"]), run_id=intent.run_id, target=str(data["target"]),
                sku=str(data["sku"]), object_id=int(data["object_id"]),
                schedule_id=None if data["schedule_id"] is None else int(data["schedule_id"]),
                sets={str(k): Decimal(str(v)) for k, v in data["sets"].items()},
                quantity_before=None if before is None else Decimal(str(before)),
                rows=tuple(FieldChange(**row) for row in data["audit"]))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise InvariantError(f"write intent {intent.key!r}: unreadable payload "
                                 f"({type(exc).__name__}: {exc})") from exc


def level_intent(change: UpdateLine | UpdateProductPrice | DeleteLine, *, vendor: str,
                 run_id: str, rows: Sequence[FieldChange]) -> LevelIntent:
    """The intent for a level change; `rows` are its audit rows (`describe` with the target)."""
    match change:
        case UpdateLine():
            sets = {name: Decimal(value) for name, value in (
                ("quantity", change.quantity_after), ("retail", change.retail_after),
                ("cost", change.cost_after)) if value is not None}
            return LevelIntent("line_update", vendor, run_id, f"line:{change.line_id}",
                               change.sku, change.line_id, change.schedule_id, sets,
                               change.quantity_before, tuple(rows))
        case UpdateProductPrice():
            return LevelIntent("product_price", vendor, run_id, f"product:{change.product_id}",
                               change.sku, change.product_id, None,
                               {"cost": change.cost_after, "retail": change.retail_after},
                               None, tuple(rows))
        case DeleteLine():
            return LevelIntent("line_delete", vendor, run_id, f"line:{change.line_id}",
                               change.sku, change.line_id, change.schedule_id, {},
                               change.quantity_before, tuple(rows))


def record_level_write(tx: StateTransaction, intent: LevelIntent) -> None:
    """Record what the write changed in what the daemon owns, and settle its intent.

    The caller appends the audit rows in the same transaction: settled means recorded.
    """
    match intent.kind:
        case "line_update":
            line = tx.get_managed_line(intent.object_id)
            quantity = intent.sets.get("quantity", intent.quantity_before)
            if line is not None:
                tx.put_managed_line(dataclasses.replace(
                    line, last_quantity=line.last_quantity if quantity is None else quantity,
                    last_retail=intent.sets.get("retail", line.last_retail),
                    last_cost=intent.sets.get("cost", line.last_cost)))
        case "product_price":
            product = tx.get_managed_product(intent.vendor, intent.sku)
            if product is not None:
                tx.put_managed_product(dataclasses.replace(
                    product, last_price_cost=intent.sets["cost"],
                    last_price_retail=intent.sets["retail"]))
        case "line_delete":
            tx.delete_managed_line(intent.object_id)
    tx.settle_intent(intent.key, intent.object_id)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a pending intent's write landed (`recover`) or not (`abandon`), and why."""

    outcome: Literal["recover", "abandon"]
    why: str

    @property
    def recover(self) -> bool:
        """Whether the write is to be recorded."""
        return self.outcome == "recover"


def decide(intent: LevelIntent, found: Schedule | Product | None) -> Decision:
    """Recover when Syncro holds exactly what the write set (a deleted line: it is gone).

    `found` is the line's recurring invoice, or the product, as read now; None when Syncro
    no longer has it. Anything else (the write never landed, or someone changed the object
    since) is abandoned, and the pass's own plan takes over.
    """
    if found is None:
        what = "recurring invoice" if intent.schedule_id is not None else "product"
        return Decision("abandon", f"the {what} is gone from Syncro")
    if isinstance(found, Schedule):
        line = next((ln for ln in found.lines if ln.id == intent.object_id), None)
        if intent.kind == "line_delete":
            return (Decision("recover", "the line is gone") if line is None
                    else Decision("abandon", "the line is still there"))
        if line is None:
            return Decision("abandon", "the line is gone from Syncro")
        return _holds(line, _LINE_FIELDS, intent.sets)
    return _holds(found, _PRODUCT_FIELDS, intent.sets)


def _holds(found: object, fields: Mapping[str, str], sets: Mapping[str, Decimal]) -> Decision:
    differ = [f"{name} {number(getattr(found, fields[name]))}, not {number(value)}"
              for name, value in sets.items() if getattr(found, fields[name]) != value]
    if differ:
        return Decision("abandon", "Syncro holds " + ", ".join(differ))
    return Decision("recover", "Syncro holds what it set")


def recover_level_writes(syncro: SyncroClient, store: StateStore, vendor: str, *,
                         dry_run: bool = False) -> list[tuple[LevelIntent, Decision]]:
    """Reconcile the vendor's pending level intents with Syncro; call under the run lock.

    A landed write gets its audit entries (under the run that sent it, the reason saying it
    was recorded on recovery) and ownership record, and its intent is settled; any other
    intent is abandoned. A dry run only reads and logs what it would do.
    """
    with store.transaction() as tx:
        pending = [LevelIntent.from_stored(i) for i in tx.list_pending_intents()
                   if i.kind in LEVEL_KINDS and i.payload.get("vendor") == vendor]
    if not pending:
        return []
    schedule_ids = {i.schedule_id for i in pending if i.schedule_id is not None}
    schedules = syncro.get_schedules(schedule_ids) if schedule_ids else {}
    products = {i.object_id: _product(syncro, i.object_id) for i in pending
                if i.schedule_id is None}
    decided = []
    for intent in pending:
        found = (schedules.get(intent.schedule_id) if intent.schedule_id is not None
                 else products[intent.object_id])
        decision = decide(intent, found)
        decided.append((intent, decision))
        fields = {"key": intent.key, "kind": intent.kind, "target": intent.target,
                  "intent_run_id": intent.run_id, "why": decision.why}
        if dry_run:
            log.info("intent.pending", outcome=decision.outcome, **fields)
            continue
        with store.transaction() as tx:
            if decision.recover:
                record_level_write(tx, intent)
                tx.append_audit([
                    AuditEntry(run_id=intent.run_id, vendor=vendor, action=row.action,
                               target=row.target, reason=row.reason + RECOVERED,
                               customer=row.customer, field=row.field, before=row.before,
                               after=row.after)
                    for row in intent.rows])
            else:
                tx.abandon_intent(intent.key)
        log.info("intent.recovered" if decision.recover else "intent.abandoned", **fields)
    return decided


def _product(syncro: SyncroClient, product_id: int) -> Product | None:
    try:
        return syncro.get_product(product_id)
    except NotFoundError:
        return None
