"""The mapping commands' work: read the vendor and Syncro, apply the table's rules, save."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sync_daemon.app import App
from sync_daemon.connectors.syncro import Customer, Schedule
from sync_daemon.errors import UsageError
from sync_daemon.logs import get_logger
from sync_daemon.mapping import csvfile, table
from sync_daemon.mapping.refresh import Refresh, plan_refresh
from sync_daemon.mapping.suggest import Suggestion, suggest
from sync_daemon.state import VendorCustomer
from sync_daemon.state.records import utc_now
from sync_daemon.vendor import SourceCustomer

log = get_logger()


def refresh(app: App, vendor: str) -> tuple[Refresh, list[SourceCustomer]]:
    """Pull the vendor's customer list into the table; returns the changes and the customers."""
    snapshot = app.source(vendor).fetch()
    with app.store.transaction() as tx:
        changes = plan_refresh(vendor, tx.list_vendor_customers(vendor), snapshot.customers,
                               utc_now())
        if changes.seen_at is not None:
            tx.touch_vendor_customers(vendor, changes.seen, changes.seen_at)
        for row in changes.upserts:
            tx.put_vendor_customer(row)
        for row in changes.removals:
            tx.delete_vendor_customer(row.vendor, row.vendor_customer_id, row.billing_motion)
    log.info("mapping.refreshed", vendor=vendor, customers=len(snapshot.customers),
             new=len(changes.appeared), detached=len(changes.detached))
    return changes, list(snapshot.customers)


def rows(app: App, vendor: str) -> list[VendorCustomer]:
    """The vendor's whole mapping table."""
    with app.store.transaction() as tx:
        return tx.list_vendor_customers(vendor)


def map_customer(app: App, vendor: str, vendor_customer: str, psa_customer: str, *,
                 schedule_id: int | None, billing_motion: str | None,
                 minimum: int | None, included: int | None) -> VendorCustomer:
    """Map one vendor customer (id or exact name) to a Syncro customer and recurring invoice."""
    row = table.find_vendor_customer(_rows_or_refresh(app, vendor), vendor_customer,
                                     billing_motion)
    customer = table.find_customer(app.syncro.list_customers(), psa_customer)
    schedule = table.choose_schedule(customer, app.syncro.list_schedules(customer_id=customer.id),
                                     schedule_id)
    updated = table.mapped(row, customer, schedule, minimum=minimum, included=included)
    with app.store.transaction() as tx:
        tx.put_vendor_customer(updated)
    log.info("mapping.mapped", vendor=vendor, vendor_customer=row.name,
             psa_customer=customer.display_name, schedule_id=schedule.id)
    return updated


def unmap_customer(app: App, vendor: str, vendor_customer: str,
                   billing_motion: str | None) -> tuple[VendorCustomer, VendorCustomer | None]:
    """Unmap one row; returns (before, after) where after None means the row was removed."""
    row = table.find_vendor_customer(rows(app, vendor), vendor_customer, billing_motion)
    after = table.unmapped(row)
    with app.store.transaction() as tx:
        if after is None:
            tx.delete_vendor_customer(row.vendor, row.vendor_customer_id, row.billing_motion)
        else:
            tx.put_vendor_customer(after)
    log.info("mapping.unmapped", vendor=vendor, vendor_customer=row.name,
             removed=after is None)
    return row, after


@dataclass(frozen=True, slots=True)
class SuggestOutcome:
    """One suggestion and, with `--apply`, whether it was mapped and why not."""

    suggestion: Suggestion
    mapped_to_schedule: int | None = None
    skipped: str | None = None


def suggest_mappings(app: App, vendor: str, *, apply: bool) -> list[SuggestOutcome]:
    """Suggest a Syncro customer for every Not mapped vendor customer; map the safe ones."""
    _, seen = refresh(app, vendor)
    current = {(r.vendor_customer_id, r.billing_motion): r for r in rows(app, vendor)}
    open_ = [c for c in seen
             if current.get((c.id, c.billing_motion)) is not None
             and current[(c.id, c.billing_motion)].status == "not_mapped"]
    customers = app.syncro.list_customers()
    found = suggest(open_, customers)
    if not apply:
        return [SuggestOutcome(s) for s in found]
    schedules = app.syncro.list_schedules()
    by_id = {c.id: c for c in customers}
    return [_apply_suggestion(app, s, current[(s.vendor_customer_id, s.billing_motion)],
                              by_id[s.psa_customer_id], schedules) for s in found]


def export_csv(app: App, vendor: str) -> str:
    """The vendor's table as CSV."""
    return csvfile.export_rows(table.select(rows(app, vendor)))


def import_csv(app: App, vendor: str, text: str) -> list[VendorCustomer]:
    """Validate every line, then save all of them in one transaction (or none)."""
    parsed = csvfile.parse_import(text, vendor, rows(app, vendor), app.syncro.list_customers(),
                                  app.syncro.list_schedules())
    with app.store.transaction() as tx:
        for row in parsed:
            tx.put_vendor_customer(row)
    log.info("mapping.imported", vendor=vendor, rows=len(parsed))
    return parsed


def _apply_suggestion(app: App, s: Suggestion, row: VendorCustomer, customer: Customer,
                      schedules: Sequence[Schedule]) -> SuggestOutcome:
    if not s.unambiguous_high:
        return SuggestOutcome(s, skipped=f"{s.confidence} confidence: map it by hand")
    try:
        schedule = table.choose_schedule(customer, schedules, None)
    except UsageError as exc:
        return SuggestOutcome(s, skipped=str(exc))
    with app.store.transaction() as tx:
        tx.put_vendor_customer(table.mapped(row, customer, schedule, minimum=None, included=None))
    log.info("mapping.mapped", vendor=row.vendor, vendor_customer=row.name,
             psa_customer=customer.display_name, schedule_id=schedule.id, by="suggest")
    return SuggestOutcome(s, mapped_to_schedule=schedule.id)


def _rows_or_refresh(app: App, vendor: str) -> list[VendorCustomer]:
    """The table, filled from the vendor first if it has never been refreshed."""
    found = rows(app, vendor)
    if not found:
        refresh(app, vendor)
        found = rows(app, vendor)
    return found
