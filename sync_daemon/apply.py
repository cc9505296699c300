"""Execute a plan's changes one by one: write to Syncro, then record ownership and the audit.

Every change is safe to repeat. Creates are recovered by the client (it reads before resending)
and, after a crash between the write and the record, by the next plan (a product or line of the
daemon's name or product that it does not yet own is adopted, not duplicated). Quantities and
prices are absolute values recomputed from a fresh read every run; their writes and line
deletes, like one-time charges, are preceded by a write-ahead intent, so one that landed just
before a crash is still recorded (`sync_daemon.recovery`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from sync_daemon.connectors.http import overlapped
from sync_daemon.connectors.syncro import LineDraft, Product, ProductDraft, SyncroClient
from sync_daemon.errors import AmbiguousWriteError, InvariantError, RejectedError
from sync_daemon.logs import get_logger
from sync_daemon.plan import (
    AddCharge,
    AdoptLine,
    AdoptProduct,
    Change,
    CreateLine,
    CreateProduct,
    DeleteLine,
    UpdateLine,
    UpdateProductPrice,
    describe,
)
from sync_daemon.recovery import level_intent, record_level_write
from sync_daemon.state import AuditEntry, ManagedLine, ManagedProduct, StateStore, StateTransaction
from sync_daemon.state.records import Origin

log = get_logger()
Record = Callable[[StateTransaction], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one change: `error` is None when it landed."""

    change: Change
    target: str | None = None
    error: str | None = None


class Applier:
    """Applies changes for one vendor's run and remembers what it now owns.

    Args:
        syncro: the PSA client.
        store: the state database.
        run_id: the run the audit entries belong to.
        vendor: the vendor being synced.
        products: Syncro products read this run, by id (an update must echo some flags).
    """

    def __init__(self, syncro: SyncroClient, store: StateStore, *, run_id: str, vendor: str,
                 products: Mapping[int, Product]) -> None:
        self.syncro = syncro
        self.store = store
        self.run_id = run_id
        self.vendor = vendor
        self.products = dict(products)
        self.product_ids: dict[str, int] = {}

    def apply_all(self, changes: Sequence[Change], outcomes: list[Applied], *,
                  workers: int = 1, progress: Callable[[int, int], None] | None = None) -> None:
        """Apply every change, appending the outcomes to `outcomes` in plan order.

        Product changes go first, one at a time: lines need their ids. Then each recurring
        invoice's changes go in plan order, up to `workers` invoices at once, so a write's
        round trip does not leave the rate limit's budget unused; one invoice's changes never
        overlap (a create tells its own line from others by the lines it knew before).
        `progress` is told (done, total) after each change. Outcomes of the changes applied
        before an error are appended too.
        """
        done: dict[int, Applied] = {}
        lock = threading.Lock()

        def run(batch: list[tuple[int, Change]]) -> None:
            for index, change in batch:
                outcome = self.apply(change)
                with lock:
                    done[index] = outcome
                    if progress is not None:
                        progress(len(done), len(changes))

        products: list[tuple[int, Change]] = []
        by_invoice: dict[int, list[tuple[int, Change]]] = {}
        for index, change in enumerate(changes):
            if isinstance(change, CreateProduct | AdoptProduct | UpdateProductPrice):
                products.append((index, change))
            else:
                by_invoice.setdefault(change.schedule_id, []).append((index, change))
        try:
            run(products)
            overlapped(run, list(by_invoice.values()), workers=workers)
        finally:
            outcomes.extend(done[index] for index in sorted(done))

    def apply(self, change: Change) -> Applied:
        """Apply one change; a refusal of this one request, or a create whose outcome stays
        unknown, is returned; anything else is raised.

        The Syncro write comes first; what the daemon now owns and the audit entries are then
        recorded in one transaction.
        """
        try:
            target, record = self._write(change)
        except (RejectedError, AmbiguousWriteError) as exc:
            # An ambiguous create is settled by the next pass (adopted, or its intent settled).
            log.error("change.failed", **_fields(change), error=str(exc))
            return Applied(change, error=str(exc))
        rows = describe(change, target=target)
        with self.store.transaction() as tx:
            record(tx)
            tx.append_audit([
                AuditEntry(run_id=self.run_id, vendor=self.vendor, action=row.action,
                           target=row.target, reason=row.reason, customer=row.customer,
                           field=row.field, before=row.before, after=row.after)
                for row in rows])
        for row in rows:
            log.info("change.applied", action=row.action, target=row.target,
                     customer=row.customer, field=row.field, before=row.before, after=row.after,
                     reason=row.reason)
        return Applied(change, target=target)

    def _write(self, change: Change) -> tuple[str, Record]:
        """Send the change to Syncro; return its target and how to record it."""
        match change:
            case CreateProduct():
                product = self.syncro.create_product(ProductDraft(
                    name=change.name, description=change.description, price_cost=change.cost,
                    price_retail=change.retail, taxable=change.taxable))
                self.products[product.id] = product
                return f"product:{product.id}", self._own_product(
                    change.sku, product.id, origin="created", name=product.name,
                    cost=change.cost, retail=change.retail)
            case AdoptProduct():
                return f"product:{change.product_id}", self._own_product(
                    change.sku, change.product_id, origin="adopted", name=change.name,
                    cost=None, retail=None)
            case UpdateProductPrice():
                product = (self.products.get(change.product_id)
                           or self.syncro.get_product(change.product_id))
                target = f"product:{change.product_id}"
                self.products[product.id], record = self._level(
                    change, target, lambda: self.syncro.update_product(
                        product, price_cost=change.cost_after,
                        price_retail=change.retail_after))
                return target, record
            case CreateLine():
                product_id = change.product_id or self.product_ids.get(change.sku)
                if product_id is None:
                    raise RejectedError(f"{change.sku}: its product could not be created",
                                        status=0)
                line = self.syncro.create_schedule_line(
                    change.schedule_id,
                    LineDraft(product_id=product_id, name=change.name,
                              quantity=Decimal(change.quantity), retail=change.retail,
                              cost=change.cost, taxable=change.taxable),
                    known_line_ids=change.known_line_ids)
                return f"line:{line.id}", self._own_line(
                    change, line.id, quantity=Decimal(change.quantity), retail=change.retail,
                    cost=change.cost, origin="created", product_id=product_id,
                    replaces=change.replaces_line_id)
            case AdoptLine():
                return f"line:{change.line_id}", self._own_line(
                    change, change.line_id, quantity=change.quantity, retail=change.list_retail,
                    cost=change.list_cost, origin="adopted", product_id=change.product_id)
            case UpdateLine():
                quantity = (Decimal(change.quantity_after)
                            if change.quantity_after is not None else None)
                target = f"line:{change.line_id}"
                _, record = self._level(change, target, lambda: self.syncro.update_schedule_line(
                    change.schedule_id, change.line_id, quantity=quantity,
                    retail=change.retail_after, cost=change.cost_after))
                return target, record
            case DeleteLine():
                target = f"line:{change.line_id}"
                _, record = self._level(change, target, lambda: self.syncro.delete_schedule_line(
                    change.schedule_id, change.line_id))
                return target, record
            case AddCharge():
                line_id = self._add_charge(change)
                key = change.key
                return f"line:{line_id}", lambda tx: _settle(tx, key, line_id)

    def _level(self, change: UpdateLine | UpdateProductPrice | DeleteLine, target: str,
               send: Callable[[], T]) -> tuple[T, Record]:
        """Write-ahead for a level write: its intent is committed before `send`, and settled
        by the returned record, in the transaction that writes the audit entries."""
        intent = level_intent(change, vendor=self.vendor, run_id=self.run_id,
                              rows=describe(change, target=target))
        with self.store.transaction() as tx:
            if not tx.begin_intent(intent.key, self.run_id, intent.kind, intent.payload()):
                raise InvariantError(f"a second write to {target} in run {self.run_id}")
        try:
            sent = send()
        except RejectedError:
            # Syncro refused it (a 404 included): nothing landed; the next plan decides again.
            with self.store.transaction() as tx:
                tx.abandon_intent(intent.key)
            raise
        return sent, lambda tx: record_level_write(tx, intent)

    def _add_charge(self, change: AddCharge) -> int:
        """Write-ahead: the intent is committed before the POST, settled after it."""
        if change.existing_line_id is not None:
            return change.existing_line_id
        product_id = change.product_id or self.product_ids.get(change.sku)
        if product_id is None:
            raise RejectedError(f"{change.sku}: its product could not be created", status=0)
        with self.store.transaction() as tx:
            tx.begin_intent(change.key, self.run_id, "charge", {
                "schedule_id": change.schedule_id, "name": change.name,
                "statement_id": change.statement_id, "total": str(change.total)})
        line = self.syncro.create_schedule_line(
            change.schedule_id,
            LineDraft(product_id=product_id, name=change.name, quantity=change.quantity,
                      retail=change.retail, cost=change.cost, taxable=change.taxable,
                      description=change.name, one_time_charge=True),
            known_line_ids=change.known_line_ids)
        return line.id

    def _own_product(self, sku: str, product_id: int, *, origin: Origin, name: str,
                     cost: Decimal | None, retail: Decimal | None) -> Record:
        self.product_ids[sku] = product_id

        def record(tx: StateTransaction) -> None:
            existing = tx.get_managed_product(self.vendor, sku)
            product = ManagedProduct(vendor=self.vendor, sku=sku, syncro_product_id=product_id,
                                     origin=origin, name=name, last_price_cost=cost,
                                     last_price_retail=retail)
            if existing is not None:
                product = dataclasses.replace(product, created_at=existing.created_at)
            tx.put_managed_product(product)

        return record

    def _own_line(self, change: CreateLine | AdoptLine, line_id: int, *, quantity: Decimal,
                  retail: Decimal, cost: Decimal, origin: Origin, product_id: int,
                  replaces: int | None = None) -> Record:
        line = ManagedLine(
            syncro_line_id=line_id, schedule_id=change.schedule_id, vendor=self.vendor,
            vendor_customer_id=change.customer.vendor_customer_id,
            billing_motion=change.customer.billing_motion, sku=change.sku,
            syncro_product_id=product_id, last_retail=retail, last_cost=cost,
            last_quantity=quantity, origin=origin)

        def record(tx: StateTransaction) -> None:
            if replaces is not None:
                tx.delete_managed_line(replaces)
            tx.put_managed_line(line)

        return record


def _settle(tx: StateTransaction, key: str, line_id: int) -> None:
    tx.settle_intent(key, line_id)


def _fields(change: Change) -> dict[str, str | None]:
    row = describe(change)[0]
    return {"action": row.action, "target": row.target, "customer": row.customer}
