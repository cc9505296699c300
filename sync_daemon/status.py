"""`status`: per configured vendor, its last run, its next scheduled one, whether a pass runs
now, a plan waiting for approval, and how many customers are not mapped or detached. Reads the
state database only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sync_daemon.scheduler import next_run_at
from sync_daemon.settings import Settings
from sync_daemon.state import RunLock, StateStore, SyncRun, VendorCustomerStatus


@dataclass(frozen=True, slots=True)
class VendorStatus:
    """One vendor's line of `status`; `next_run_at` is None when the vendor is disabled."""

    vendor: str
    enabled: bool
    schedule: str
    next_run_at: datetime | None
    last_run: SyncRun | None
    running: RunLock | None
    customers: Mapping[VendorCustomerStatus, int]
    pending_plan: tuple[str, int] | None = None  # run id, changes still pending


def vendor_statuses(settings: Settings, store: StateStore, now: datetime) -> list[VendorStatus]:
    """The status of every vendor with a section in the config, in sync order."""
    found = []
    for vendor, section in settings.vendors().items():
        with store.transaction() as tx:
            last = next(iter(tx.list_runs(vendor, limit=1)), None)
            customers = tx.count_vendor_customers(vendor)
            plan = next(iter(tx.list_plans(vendor, status="pending", limit=1)), None)
            pending = None if plan is None else (plan.run_id, sum(
                1 for c in tx.list_planned_changes(plan.run_id) if c.status == "pending"))
        upcoming = (next_run_at(section.schedule, settings.daemon.zone, now)
                    if section.enabled else None)
        found.append(VendorStatus(vendor=vendor, enabled=section.enabled,
                                  schedule=section.schedule, next_run_at=upcoming,
                                  last_run=last, running=store.lock_holder(vendor),
                                  customers=customers, pending_plan=pending))
    return found


def as_dict(status: VendorStatus, zone: tzinfo) -> dict[str, Any]:
    """One vendor's status as JSON-ready data; times are ISO 8601 in UTC."""
    run, lock = status.last_run, status.running
    return {
        "vendor": status.vendor,
        "enabled": status.enabled,
        "schedule": status.schedule,
        "timezone": str(zone),
        "next_run_at": _iso(status.next_run_at),
        "last_run": None if run is None else {
            "run_id": run.run_id, "trigger": run.trigger, "status": run.status,
            "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at),
            "duration_s": _duration(run), "counts": dict(run.counts), "message": run.message,
        },
        "running": None if lock is None else {
            "run_id": lock.run_id or None, "since": _iso(lock.acquired_at),
            "holder": lock.holder or None, "heartbeat_at": _iso(lock.heartbeat_at),
        },
        "pending_plan": None if status.pending_plan is None else {
            "run_id": status.pending_plan[0], "changes": status.pending_plan[1]},
        "customers": dict(status.customers),
    }


def as_text(status: VendorStatus, zone: tzinfo) -> str:
    """One vendor's status for people; times in the daemon's time zone."""
    rows = [("last run", _last_run(status.last_run, zone))]
    if status.last_run is not None and status.last_run.status != "running":
        rows.append(("result", _result(status.last_run)))
    rows += [("next run", _next_run(status, zone)),
             ("running now", _running(status.running, zone)),
             *([("approval", _pending(status.pending_plan))] if status.pending_plan else []),
             ("customers", ", ".join(f"{count} {name.replace('_', ' ')}"
                                     for name, count in status.customers.items()))]
    return "\n".join([status.vendor, *(f"  {label:<12} {text}" for label, text in rows)])


def _last_run(run: SyncRun | None, zone: tzinfo) -> str:
    if run is None:
        return "never"
    took = _duration(run)
    ended = run.status + (f" in {took:g} s" if took is not None else "")
    return f"{_local(run.started_at, zone)}, {ended} ({run.trigger}, run {run.run_id})"


def _result(run: SyncRun) -> str:
    counts = run.counts
    numbers = (f"{_plural(counts.get('changes_applied', 0), 'change')} applied, "
               f"{counts.get('changes_failed', 0)} failed"
               + (f", {counts['changes_refused']} refused" if counts.get("changes_refused")
                  else "")
               + "; "
               f"{_plural(counts.get('warnings', 0), 'warning')}, "
               f"{_plural(counts.get('errors', 0), 'error')}")
    return f"{numbers} ({run.message})" if run.message else numbers


def _next_run(status: VendorStatus, zone: tzinfo) -> str:
    if status.next_run_at is None:
        return f"none (disabled; schedule {status.schedule})"
    return f"{_local(status.next_run_at, zone)} (schedule {status.schedule})"


def _running(lock: RunLock | None, zone: tzinfo) -> str:
    if lock is None:
        return "no"
    if not lock.run_id:
        return "yes (its run id is not recorded yet)"
    return f"yes, since {_local(lock.acquired_at, zone)} (run {lock.run_id} on {lock.holder})"


def _pending(plan: tuple[str, int]) -> str:
    run_id, changes = plan
    return f"plan {run_id} waiting, {_plural(changes, 'change')} (`sync-daemon plan show`)"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _local(when: datetime, zone: tzinfo) -> str:
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _duration(run: SyncRun) -> float | None:
    if run.finished_at is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), 3)
