"""`run_vendor()`: one sync pass for one vendor, read → refresh mapping → plan → guard → apply.

Under `approval = "required"` the pass stores its plan instead of applying it (see
`sync_daemon.approval`).
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

from sync_daemon.app import App
from sync_daemon.apply import Applied, Applier
from sync_daemon.approval.pending import SyncroView, hold_plan, supersede
from sync_daemon.connectors.http import prepare_tls_context
from sync_daemon.connectors.syncro import Product, Schedule
from sync_daemon.errors import SyncError
from sync_daemon.invoices.charges import ChargeInputs, plan_charges
from sync_daemon.invoices.plan import LineInputs, plan_lines
from sync_daemon.invoices.statements import completed_statements, split_baseline
from sync_daemon.logs import bind_run, get_logger, unbind_run
from sync_daemon.mapping.refresh import Refresh, plan_refresh
from sync_daemon.notify import notify_run
from sync_daemon.plan import (
    Notice,
    Plan,
    ProductChange,
    SeatTotals,
    UpdateProductPrice,
)
from sync_daemon.products.plan import ProductRules, plan_products
from sync_daemon.recovery import recover_level_writes
from sync_daemon.state import ManagedLine, ManagedProduct, VendorCustomer
from sync_daemon.state.records import RunStatus, RunTrigger, utc_now
from sync_daemon.vendor import Snapshot, Statement

log = get_logger()
# Told of each change as it is applied, with how many are done and the total (a progress bar).
Progress = Callable[[int, int], None]


@dataclass
class RunReport:
    """What a pass did, for the summary, the exit code and the `sync.finished` log line."""

    run_id: str
    vendor: str
    dry_run: bool
    status: RunStatus | str = "running"
    plan: Plan | None = None
    applied: list[Applied] = field(default_factory=list)
    refused: list[Applied] = field(default_factory=list)
    refresh: Refresh | None = None
    guard: str | None = None
    error: str | None = None
    duration_s: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)

    @property
    def notices(self) -> tuple[Notice, ...]:
        """Warnings and errors from vendor data and planning."""
        return self.plan.notices if self.plan else ()

    def counts(self) -> dict[str, int]:
        """The numbers the canonical log line and `status` show."""
        changes = self.plan.changes if self.plan else ()
        return {
            "changes_planned": len(changes),
            "changes_applied": sum(1 for a in self.applied if a.error is None),
            "changes_failed": sum(1 for a in self.applied if a.error is not None),
            "changes_refused": len(self.refused),
            "warnings": sum(1 for n in self.notices if n.level == "warning"),
            "errors": sum(1 for n in self.notices if n.level == "error")
            + (1 if self.error else 0),
            "unmapped": sum(1 for n in self.notices if n.kind == "unmapped"),
        }


def guard_message(seats: SeatTotals, *, max_decrease_percent: Decimal,
                  max_zeroed_customers: int) -> str | None:
    """Why the plan looks like a vendor glitch rather than real change, or None."""
    limit = max_decrease_percent
    reasons = []
    # Compare exactly; the rounded percentage is for people only.
    if (seats.before - seats.after) * 100 > limit * seats.before:
        reasons.append(f"billed seats would drop {seats.decrease_percent}% "
                       f"({seats.before} → {seats.after}), more than the {limit}% allowed")
    if len(seats.zeroed_customers) > max_zeroed_customers:
        reasons.append(f"{len(seats.zeroed_customers)} customers would go to zero "
                       f"({', '.join(seats.zeroed_customers)}), more than the "
                       f"{max_zeroed_customers} allowed")
    return "; ".join(reasons) or None


def run_vendor(app: App, vendor: str, *, dry_run: bool = False, force: bool = False,
               trigger: RunTrigger = "manual", wait: bool = False,
               run_id: str | None = None, progress: Progress | None = None) -> RunReport:
    """One pass for `vendor`, holding the vendor's run lock (a dry run takes none).

    Trouble with a single item (a rejected write, one customer's bad data) is in the report;
    trouble that stops the pass (credentials, an unreachable API) is recorded on the run and
    raised. A dry run writes nothing, not even to the state database. With `wait`, a pass
    running elsewhere is waited for instead of refused. After every pass that is not a dry
    run (failed ones included), `[notify]` may send one digest e-mail; that never fails it.

    Raises:
        LockedError: another pass of the vendor is running; nothing was done or recorded.
    """
    report = RunReport(run_id=run_id or uuid.uuid4().hex, vendor=vendor, dry_run=dry_run)
    prepare_tls_context()  # while the state store opens and the run is recorded

    def work() -> None:
        _run(app, report, force=force, progress=progress)

    if dry_run:
        _pass(app, report, work, trigger=trigger)
        return report
    with app.store.run_lock(vendor, report.run_id, wait=wait):
        recorded_pass(app, report, work, trigger=trigger)
    return report


def recorded_pass(app: App, report: RunReport, work: Callable[[], None], *,
                   trigger: RunTrigger) -> None:
    """Record the run, do the pass, then send the digest (also when the pass failed)."""
    with app.store.transaction() as tx:
        tx.start_run(report.vendor, trigger, run_id=report.run_id)
    try:
        _pass(app, report, work, trigger=trigger)
    except Exception:
        notify_run(app.settings, report)
        raise
    notify_run(app.settings, report)


def _pass(app: App, report: RunReport, work: Callable[[], None], *,
          trigger: RunTrigger) -> None:
    """Run and time the pass, log it, and record how it ended (unless a dry run)."""
    started = time.monotonic()
    # One client serves every vendor of a `sync`: count this pass's requests only.
    reads_before, writes_before = app.syncro.api.stats.reads, app.syncro.api.stats.writes
    bind_run(run_id=report.run_id, vendor=report.vendor)
    log.info("sync.started", dry_run=report.dry_run, trigger=trigger)
    try:
        work()
    except SyncError as exc:
        report.status, report.error = "failed", str(exc)
        log.error("sync.failed", error=str(exc), kind=type(exc).__name__)
        raise
    except BaseException as exc:  # a bug, or Ctrl-C: the run must not stay `running`
        report.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        report.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        report.duration_s = round(time.monotonic() - started, 3)
        stats = app.syncro.api.stats
        report.requests = {"reads": stats.reads - reads_before,
                           "writes": stats.writes - writes_before}
        log.info("sync.finished", status=report.status, duration_s=report.duration_s,
                 **report.counts(), syncro_reads=report.requests["reads"],
                 syncro_writes=report.requests["writes"])
        unbind_run("run_id", "vendor")
        if not report.dry_run:
            _finish(app, report)


@dataclass(frozen=True, slots=True)
class _Reads:
    """Everything a pass reads before planning: the vendor, the state, Syncro."""

    snapshot: Snapshot
    rows: list[VendorCustomer]
    managed_products: dict[str, ManagedProduct]
    owned_elsewhere: frozenset[int]
    managed_lines: list[ManagedLine]
    all_line_ids: frozenset[int]
    products: list[Product]
    schedules: dict[int, Schedule | None]
    statements: list[Statement]
    baseline: list[Statement]
    settled: frozenset[str]
    pending: frozenset[str]


def _run(app: App, report: RunReport, *, force: bool, progress: Progress | None) -> None:
    recover_level_writes(app.syncro, app.store, report.vendor, dry_run=report.dry_run)
    reads = _read(app, report)
    report.plan = _plan(app, report.vendor, reads)
    seats = report.plan.seats
    log.info("plan.computed", changes=len(report.plan.changes), seats_before=seats.before,
             seats_after=seats.after)
    for notice in report.plan.notices:
        log.warning("plan.notice", level_=notice.level, kind=notice.kind,
                    customer=notice.customer, detail=notice.message)
    safety = app.settings.safety
    report.guard = guard_message(seats, max_decrease_percent=safety.max_decrease_percent,
                                 max_zeroed_customers=safety.max_zeroed_customers)
    if report.dry_run:
        report.status = "dry_run"
        return
    if report.guard and not force:
        # Nothing is written, not even the refresh: a glitch must not mark customers Detached.
        report.status = "stopped"
        log.error("sync.guard_stopped", reason=report.guard)
        return
    assert report.refresh is not None
    _save_refresh(app, report.refresh)
    _forget_vanished_lines(app, reads)
    section = app.settings.vendors().get(report.vendor)
    if section is not None and section.approval == "required":
        _hold(app, report, reads)
    else:
        _apply(app, report, {p.id: p for p in reads.products}, progress)
    _record_statements(app, report, reads)


def _read(app: App, report: RunReport) -> _Reads:
    vendor = report.vendor
    with app.store.transaction() as tx:
        rows = tx.list_vendor_customers(vendor)
        every_product = tx.list_managed_products()
        managed_lines = tx.list_managed_lines(vendor=vendor)
        all_line_ids = tx.managed_line_ids()
        billed_before = tx.has_applied_statements(vendor)
    # The vendor and Syncro are read side by side: neither needs the other (the refresh never
    # gives a row a recurring invoice), and the vendor's time would otherwise come on top of
    # Syncro's rate-limited reads.
    source = app.source(vendor)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vendor-read") as pool:
        fetching = pool.submit(contextvars.copy_context().run, source.fetch)
        try:
            products = app.syncro.list_products()
            schedules = _read_schedules(app, rows, managed_lines)
        finally:
            snapshot = fetching.result()  # the vendor's trouble first: it is what failed first
    with app.store.transaction() as tx:
        intents = [i for i in (tx.get_intent(c.key) for c in snapshot.charges) if i is not None]
    report.refresh = plan_refresh(vendor, rows, snapshot.customers, utc_now())
    rows = _after_refresh(rows, report.refresh)
    first_sync = bool(snapshot.statements) and not billed_before
    statements, baseline = split_baseline(snapshot.statements, first_sync=first_sync)
    return _Reads(
        snapshot=snapshot, rows=rows,
        managed_products={p.sku: p for p in every_product if p.vendor == vendor},
        owned_elsewhere=frozenset(p.syncro_product_id for p in every_product
                                  if p.vendor != vendor),
        managed_lines=managed_lines, all_line_ids=all_line_ids,
        products=products, schedules=schedules,
        statements=statements, baseline=baseline,
        settled=frozenset(i.key for i in intents if i.status == "settled"),
        pending=frozenset(i.key for i in intents if i.status == "pending"),
    )


def _plan(app: App, vendor: str, reads: _Reads) -> Plan:
    """Products, then recurring lines, then one-time charges: a pure function of the reads."""
    snapshot = reads.snapshot
    taxable = app.settings.products.new_products_taxable
    if vendor == "cloudiq" and app.settings.cloudiq is not None:
        taxable = app.settings.cloudiq.new_products_taxable
    product_changes, targets = plan_products(
        snapshot.products, reads.managed_products, reads.products,
        ProductRules(app.settings.products.prefix, taxable),
        owned_elsewhere=reads.owned_elsewhere)
    skipped = snapshot.customers_with_problems()
    line_changes, line_notices, seats = plan_lines(LineInputs(
        mappings=reads.rows, usages=snapshot.usages, skipped=skipped, products=targets,
        managed_lines=reads.managed_lines, all_managed_line_ids=reads.all_line_ids,
        schedules=reads.schedules))
    applying = {s.id for s in reads.statements}
    charge_changes, charge_notices = plan_charges(ChargeInputs(
        mappings=reads.rows, skipped=skipped, products=targets, schedules=reads.schedules,
        charges=[c for c in snapshot.charges if c.statement_id in applying],
        settled=reads.settled, pending=reads.pending))
    notices = [*_problem_notices(snapshot), *_price_notices(product_changes), *line_notices,
               *charge_notices]
    if reads.baseline:
        notices.append(Notice(
            "warning", "baseline",
            f"first sync: {len(reads.baseline)} older statement(s) recorded as already billed "
            f"without their one-time charges ({', '.join(s.id for s in reads.baseline)})"))
    return Plan(vendor, (*product_changes, *line_changes, *charge_changes), tuple(notices),
                seats)


def _record_statements(app: App, report: RunReport, reads: _Reads) -> None:
    """Record the statements this pass finished (and the first sync's baseline) as applied.

    Exactly-once billing does not depend on this record: every charge has its own settled
    write-ahead intent. The record stops later passes from reading the statement again.
    """
    with app.store.transaction() as tx:
        settled = {key for key in (c.key for c in reads.snapshot.charges)
                   if (intent := tx.get_intent(key)) is not None and intent.status == "settled"}
        done = completed_statements(
            reads.statements, reads.snapshot.charges,
            mapped={(r.vendor_customer_id, r.billing_motion) for r in reads.rows
                    if r.status == "mapped"},
            skipped=reads.snapshot.customers_with_problems(), settled=settled)
        for statement in [*reads.baseline, *done]:
            tx.mark_statement_applied(report.vendor, statement.id, report.run_id)
    for statement in reads.statements:
        if statement not in done:
            log.warning("statement.kept_open", statement_id=statement.id,
                        billing_motion=statement.billing_motion)


def _apply(app: App, report: RunReport, products: dict[int, Product],
           progress: Progress | None) -> None:
    assert report.plan is not None
    with app.store.transaction() as tx:
        superseded = supersede(tx, report.vendor, by=report.run_id)
    if superseded:
        log.info("plan.superseded", plans=superseded)
    applier = Applier(app.syncro, app.store, run_id=report.run_id, vendor=report.vendor,
                      products=products)
    applier.apply_all(report.plan.changes, report.applied, workers=app.syncro.concurrency,
                      progress=progress)
    failed = any(a.error for a in report.applied) or any(
        n.level == "error" for n in report.plan.notices)
    report.status = "partial" if failed else "succeeded"


def _hold(app: App, report: RunReport, reads: _Reads) -> None:
    """Store the plan for approval instead of applying it (`approval = "required"`)."""
    assert report.plan is not None
    view = SyncroView({p.id: p for p in reads.products}, reads.schedules)
    with app.store.transaction() as tx:
        if report.plan.changes:
            superseded = hold_plan(tx, report.run_id, report.plan, view)
        else:
            superseded = supersede(tx, report.vendor, by=report.run_id)
    if superseded:
        log.info("plan.superseded", plans=superseded)
    if not report.plan.changes:
        report.status = "partial" if any(n.level == "error" for n in report.plan.notices) \
            else "succeeded"
        return
    report.status = "pending"
    log.warning("plan.pending", changes=len(report.plan.changes),
                approve=f"sync-daemon plan approve {report.run_id}")


def _read_schedules(app: App, rows: Sequence[VendorCustomer],
                    managed: Sequence[ManagedLine]) -> dict[int, Schedule | None]:
    """Each schedule the plan needs, read once (several in flight, under the one rate limit);
    a schedule gone from Syncro reads as None."""
    wanted = {r.schedule_id for r in rows if r.status != "not_mapped" and r.schedule_id}
    wanted |= {line.schedule_id for line in managed}
    return app.syncro.get_schedules(wanted) if wanted else {}


def _after_refresh(rows: Sequence[VendorCustomer], refresh: Refresh) -> list[VendorCustomer]:
    by_key = {(r.vendor_customer_id, r.billing_motion): r for r in rows}
    for row in refresh.upserts:
        by_key[(row.vendor_customer_id, row.billing_motion)] = row
    for row in refresh.removals:
        by_key.pop((row.vendor_customer_id, row.billing_motion), None)
    return list(by_key.values())


def _save_refresh(app: App, refresh: Refresh) -> None:
    with app.store.transaction() as tx:
        if refresh.seen_at is not None:
            tx.touch_vendor_customers(refresh.vendor, refresh.seen, refresh.seen_at)
        for row in refresh.upserts:
            tx.put_vendor_customer(row)
        for row in refresh.removals:
            tx.delete_vendor_customer(row.vendor, row.vendor_customer_id, row.billing_motion)


def _forget_vanished_lines(app: App, reads: _Reads) -> None:
    """Stop owning the lines of recurring invoices that are gone from Syncro.

    Syncro deletes a recurring invoice's lines with it, so the records would only claim
    lines that no longer exist (and keep a gone invoice read every pass). The customer's
    `schedule_missing` error stays until it is mapped again; if the invoice ever came back,
    its lines of the daemon's products would be adopted, not duplicated.
    """
    gone = [line for line in reads.managed_lines
            if line.schedule_id in reads.schedules and reads.schedules[line.schedule_id] is None]
    if not gone:
        return
    with app.store.transaction() as tx:
        for line in gone:
            tx.delete_managed_line(line.syncro_line_id)
    for line in gone:
        log.warning("line.forgotten", line_id=line.syncro_line_id, schedule_id=line.schedule_id,
                    vendor_customer_id=line.vendor_customer_id, sku=line.sku,
                    reason="its recurring invoice no longer exists in Syncro")


def _price_notices(changes: Sequence[ProductChange]) -> list[Notice]:
    """Billing Sync warns about every price change; so do we (it is also in the changes)."""
    return [Notice("warning", "price_change",
                   f"{c.name}: cost {c.cost_before} → {c.cost_after}, "
                   f"retail {c.retail_before} → {c.retail_after}")
            for c in changes if isinstance(c, UpdateProductPrice)]


def _problem_notices(snapshot: Snapshot) -> list[Notice]:
    return [Notice("error", "vendor_data", p.message, customer=p.customer)
            for p in snapshot.problems]


def _finish(app: App, report: RunReport) -> None:
    final = {"succeeded", "partial", "failed", "stopped", "interrupted", "pending"}
    status = report.status if report.status in final else "failed"
    message = report.error or report.guard
    with app.store.transaction() as tx:
        tx.finish_run(report.run_id, status, report.counts(), message)  # type: ignore[arg-type]
