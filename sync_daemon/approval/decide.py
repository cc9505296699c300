"""`approve_plan()` and `reject_plan()`: a person's decision on a plan kept for approval.

An approval is a pass of its own (trigger `approval`, under the vendor's run lock): it reads
Syncro again and applies each chosen change whose fingerprint still matches.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sync_daemon.app import App
from sync_daemon.apply import Applied, Applier
from sync_daemon.approval.pending import (
    SyncroView,
    decode_change,
    fingerprint,
    schedules_needed,
    select,
)
from sync_daemon.errors import PlanClosedError, UsageError
from sync_daemon.jobs import Progress, RunReport, recorded_pass
from sync_daemon.logs import get_logger
from sync_daemon.plan import Change, Plan, SeatTotals, describe
from sync_daemon.recovery import recover_level_writes
from sync_daemon.state import PlannedChange, StoredPlan, utc_now

log = get_logger()
REPLAN = "Syncro changed since the plan was made; run `sync-daemon sync` to plan again"


def approve_plan(app: App, plan_run_id: str, *, only: Sequence[str] = (),
                 progress: Progress | None = None) -> RunReport:
    """Apply the stored plan of pass `plan_run_id` (or, with `only`, those customers' part).

    Runs as a pass of its own (trigger `approval`) holding the vendor's run lock. Syncro is
    read again first, and a change whose Syncro objects moved since planning is refused, not
    applied. The plan is `approved` once none of its changes is pending.

    Raises:
        UsageError: no plan has this run id, or `only` names a customer it does not change.
        PlanClosedError: the plan was approved, rejected or superseded.
        LockedError: a pass of the plan's vendor is running.
    """
    stored = find_plan(app, plan_run_id)
    _check_open(app, stored)  # a closed plan is refused even while a pass runs
    plan_run_id = stored.run_id
    report = RunReport(run_id=uuid.uuid4().hex, vendor=stored.vendor, dry_run=False)
    with app.store.run_lock(stored.vendor, report.run_id, wait=False):
        # Read again under the lock: another approval may have run meanwhile.
        stored = find_plan(app, plan_run_id)
        _check_open(app, stored)
        with app.store.transaction() as tx:
            rows = tx.list_planned_changes(plan_run_id)
        chosen = select([(row, decode_change(row.change)) for row in rows
                         if row.status == "pending"], only)

        def work() -> None:
            log.info("plan.approving", plan_run_id=plan_run_id, changes=len(chosen),
                     only=list(only) or None)
            # A write an interrupted pass or approval left unrecorded is recorded first, so
            # that the fingerprints below are compared with a state the daemon knows.
            recover_level_writes(app.syncro, app.store, stored.vendor)
            _approve(app, report, stored, chosen, progress)

        recorded_pass(app, report, work, trigger="approval")
    return report


def reject_plan(app: App, plan_run_id: str) -> StoredPlan:
    """Discard the stored plan of pass `plan_run_id`; nothing is written to Syncro.

    Raises:
        UsageError: no plan has this run id.
        PlanClosedError: the plan was already approved, rejected or superseded.
        LockedError: a pass of the plan's vendor (an approval, say) is running.
    """
    stored = find_plan(app, plan_run_id)
    _check_open(app, stored)
    plan_run_id = stored.run_id
    with app.store.run_lock(stored.vendor, uuid.uuid4().hex, wait=False):
        _check_open(app, find_plan(app, plan_run_id))
        with app.store.transaction() as tx:
            tx.close_plan(plan_run_id, "rejected", message="rejected by the operator")
            closed = tx.get_plan(plan_run_id)
    assert closed is not None
    log.info("plan.rejected", plan_run_id=plan_run_id, vendor=stored.vendor)
    return closed


def _approve(app: App, report: RunReport, stored: StoredPlan,
             chosen: Sequence[tuple[PlannedChange, Change]],
             progress: Progress | None) -> None:
    changes = [change for _, change in chosen]
    seats = SeatTotals(int(stored.seats.get("before", 0)), int(stored.seats.get("after", 0)))
    report.plan = Plan(stored.vendor, tuple(changes), (), seats)
    view = SyncroView({p.id: p for p in app.syncro.list_products()},
                      app.syncro.get_schedules(schedules_needed(changes)))
    applier = Applier(app.syncro, app.store, run_id=report.run_id, vendor=stored.vendor,
                      products=view.products)
    with app.store.transaction() as tx:
        # Products an earlier approval of this plan created, for the lines that bill them.
        applier.product_ids.update({p.sku: p.syncro_product_id
                                    for p in tx.list_managed_products(stored.vendor)})
    for done, (row, change) in enumerate(chosen, start=1):
        if fingerprint(change, view) != row.fingerprint:
            outcome = Applied(change, error=REPLAN)
            report.refused.append(outcome)
            for described in describe(change):
                log.warning("plan.change_refused", action=described.action,
                            target=described.target, customer=described.customer,
                            reason=REPLAN)
            status = "refused"
        else:
            outcome = applier.apply(change)
            report.applied.append(outcome)
            status = "applied" if outcome.error is None else "failed"
        with app.store.transaction() as tx:
            tx.decide_planned_change(stored.run_id, row.seq, status,  # type: ignore[arg-type]
                                     applied_run_id=report.run_id, message=outcome.error)
        if progress is not None:
            progress(done, len(chosen))
    with app.store.transaction() as tx:
        if all(row.status != "pending" for row in tx.list_planned_changes(stored.run_id)):
            tx.close_plan(stored.run_id, "approved")
    trouble = report.refused or any(a.error for a in report.applied)
    report.status = "partial" if trouble else "succeeded"


def find_plan(app: App, run_id: str) -> StoredPlan:
    """The stored plan of pass `run_id`, or of the one pass whose id starts with it (at least
    6 characters, as summaries print 8).

    Raises:
        UsageError: no plan, or several, match.
    """
    with app.store.transaction() as tx:
        stored = tx.get_plan(run_id)
        candidates = [] if stored is not None or len(run_id) < 6 else [
            plan for plan in tx.list_plans(limit=None) if plan.run_id.startswith(run_id)]
    if stored is None and len(candidates) == 1:
        stored = candidates[0]
    if stored is None:
        many = f": {', '.join(p.run_id for p in candidates)}" if candidates else ""
        raise UsageError(f"{'several stored plans' if candidates else 'no stored plan'} "
                         f"match run id {run_id!r}{many} "
                         "(`sync-daemon plan show` lists the pending ones)")
    return stored


def _check_open(app: App, stored: StoredPlan) -> None:
    """Refuse a plan that is closed, or older than its vendor's next scheduled run.

    Raises:
        PlanClosedError: the plan cannot be approved or rejected any more.
    """
    # Imported here: the scheduler imports this module (it runs the passes).
    from sync_daemon.scheduler import next_run_at  # noqa: PLC0415

    section = app.settings.vendors().get(stored.vendor)
    if stored.status == "pending" and section is not None and section.enabled:
        due = next_run_at(section.schedule, app.settings.daemon.zone, stored.created_at)
        if due <= utc_now():
            with app.store.transaction() as tx:
                tx.close_plan(stored.run_id, "superseded",
                              message=f"superseded by the scheduled run due {due.isoformat()}")
            raise PlanClosedError(
                f"plan {stored.run_id} was superseded: {stored.vendor}'s scheduled run was due "
                f"{due:%Y-%m-%d %H:%M %Z} after it was made; run `sync-daemon sync` to plan again")
    if stored.status != "pending":
        raise PlanClosedError(f"plan {stored.run_id} is {stored.status}"
                              + (f" (on {stored.decided_at:%Y-%m-%d %H:%M} UTC)"
                                 if stored.decided_at else "")
                              + "; run `sync-daemon sync` to plan again")

