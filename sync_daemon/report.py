"""Run summaries for people (text) and scripts (JSON), from a `RunReport`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sync_daemon.approval.pending import decode_change
from sync_daemon.jobs import RunReport
from sync_daemon.plan import describe
from sync_daemon.state import PlannedChange, StoredPlan

SYMBOLS = {"created": "+", "adopted": "=", "deleted": "-"}
APPROVE = "sync-daemon plan approve {run_id}"


def as_dict(report: RunReport) -> dict[str, Any]:
    """The summary as JSON-ready data: every change, warning and error, and the counts."""
    applied = {id(a.change): a for a in report.applied}
    refused = {id(a.change): a for a in report.refused}
    changes: list[dict[str, Any]] = []
    for change in report.plan.changes if report.plan else ():
        outcome = applied.get(id(change)) or refused.get(id(change))
        state = ("planned" if outcome is None else "refused" if id(change) in refused
                 else "failed" if outcome.error else "applied")
        changes.extend({
            "action": row.action, "customer": row.customer, "target": row.target,
            "field": row.field, "before": row.before, "after": row.after,
            "reason": row.reason, "status": state, "error": outcome.error if outcome else None,
        } for row in describe(change, target=outcome.target if outcome else None))
    notices = [{"kind": n.kind, "customer": n.customer, "message": n.message}
               for n in report.notices]
    seats = report.plan.seats if report.plan else None
    return {
        "run_id": report.run_id,
        "vendor": report.vendor,
        "status": report.status,
        "dry_run": report.dry_run,
        "changes": changes,
        "warnings": [n for n, src in zip(notices, report.notices, strict=True)
                     if src.level == "warning"],
        "errors": [n for n, src in zip(notices, report.notices, strict=True)
                   if src.level == "error"] + ([{"kind": "run", "customer": None,
                                                 "message": report.error}]
                                               if report.error else []),
        "guard": report.guard,
        "approve": APPROVE.format(run_id=report.run_id) if report.status == "pending" else None,
        "seats": {"before": seats.before, "after": seats.after} if seats else None,
        "mapping": _mapping(report),
        "counts": report.counts(),
        "requests": report.requests,
        "duration_s": report.duration_s,
    }


def as_json(report: RunReport) -> str:
    """`as_dict` serialised."""
    return json.dumps(as_dict(report), indent=2, ensure_ascii=False)


def as_text(report: RunReport) -> str:
    """A readable summary: changes, warnings and errors, then one line of counts."""
    data = as_dict(report)
    title = f"{report.vendor}: run {report.run_id[:8]}"
    title += " (dry run: nothing applied)" if report.dry_run else f" {report.status}"
    lines = [title]
    if report.guard:
        lines.append(f"STOPPED by the safety guard before applying anything: {report.guard}")
        lines.append("  (re-run with --force to apply it anyway)")
    if data["approve"]:
        lines.append("WAITING FOR APPROVAL: nothing was written to Syncro. Review it with "
                     f"`sync-daemon plan show {report.run_id}`, then `{data['approve']}` "
                     "(or `plan reject`).")
    mapping = data["mapping"]
    if mapping and any(mapping.values()):
        lines.append("Mapping table: " + "; ".join(f"{k}: {', '.join(v)}"
                                                  for k, v in mapping.items() if v))
    lines.append(f"Changes ({len(data['changes'])}):" if data["changes"] else "No changes.")
    lines.extend("  " + _change_line(row) for row in data["changes"])
    for title_, key, mark in (("Warnings", "warnings", "!"), ("Errors", "errors", "x")):
        if data[key]:
            lines.append(f"{title_} ({len(data[key])}):")
            lines += [f"  {mark} {(n['customer'] + ': ') if n['customer'] else ''}{n['message']}"
                      for n in data[key]]
    counts = data["counts"]
    seats = data["seats"]
    lines.append(
        f"{counts['changes_applied']} applied, {counts['changes_failed']} failed, "
        + (f"{counts['changes_refused']} refused, " if counts["changes_refused"] else "")
        + f"{counts['warnings']} warnings, {counts['errors']} errors"
        + (f"; billed seats {seats['before']} → {seats['after']}" if seats else "")
        + f"; {report.requests.get('reads', 0)} Syncro reads, "
          f"{report.requests.get('writes', 0)} writes in {report.duration_s:.1f}s")
    return "\n".join(lines)


def _change_line(row: dict[str, Any]) -> str:
    verb = row["action"].split(".")[1]
    mark = SYMBOLS.get(verb, "~")
    who = f"{row['customer']}: " if row["customer"] else ""
    what = row["field"] or row["target"]
    if row["before"] is not None and row["after"] is not None:
        delta = f"{row['before']} → {row['after']}"
    else:
        delta = row["after"] or row["before"] or ""
    status = "" if row["status"] in ("applied", None) else f" [{row['status']}]"
    error = f" ({row['error']})" if row["error"] else ""
    return f"{mark} {who}{verb.replace('_', ' ')} {what} {delta} ({row['reason']}){status}{error}"


def _mapping(report: RunReport) -> dict[str, list[str]]:
    refresh = report.refresh
    if refresh is None:
        return {}
    return {"new (not mapped)": list(refresh.appeared), "detached": list(refresh.detached),
            "returned": list(refresh.returned)}


def plan_as_dict(stored: StoredPlan, rows: Sequence[PlannedChange]) -> dict[str, Any]:
    """A plan kept for approval as JSON-ready data: every change with its status."""
    changes: list[dict[str, Any]] = []
    for row in rows:
        change = decode_change(row.change)
        changes.extend({
            "seq": row.seq, "status": row.status, "customer_id": row.customer,
            "action": field.action, "customer": field.customer, "target": field.target,
            "field": field.field, "before": field.before, "after": field.after,
            "reason": field.reason, "error": row.message, "applied_run_id": row.applied_run_id,
        } for field in describe(change))
    return {
        "run_id": stored.run_id,
        "vendor": stored.vendor,
        "status": stored.status,
        "created_at": stored.created_at.isoformat(),
        "decided_at": stored.decided_at.isoformat() if stored.decided_at else None,
        "pending": sum(1 for row in rows if row.status == "pending"),
        "changes": changes,
        "warnings": [n for n in stored.notices if n.get("level") == "warning"],
        "errors": [n for n in stored.notices if n.get("level") == "error"],
        "seats": dict(stored.seats),
        "approve": APPROVE.format(run_id=stored.run_id) if stored.status == "pending" else None,
    }


def plan_as_text(stored: StoredPlan, rows: Sequence[PlannedChange]) -> str:
    """A plan kept for approval, for the person deciding on it."""
    data = plan_as_dict(stored, rows)
    lines = [(f"{stored.vendor}: plan {stored.run_id} {stored.status}, made "
              f"{stored.created_at:%Y-%m-%d %H:%M} UTC; {len(rows)} changes, "
              f"{data['pending']} pending")]
    lines.extend("  " + _change_line(row) for row in data["changes"])
    for title, key, mark in (("Warnings", "warnings", "!"), ("Errors", "errors", "x")):
        if data[key]:
            lines.append(f"{title} ({len(data[key])}):")
            lines += [f"  {mark} {(n['customer'] + ': ') if n.get('customer') else ''}"
                      f"{n['message']}" for n in data[key]]
    seats = data["seats"]
    if seats:
        lines.append(f"Billed seats {seats.get('before')} → {seats.get('after')} if applied.")
    if data["approve"]:
        lines.append(f"Approve: {data['approve']} [--only CUSTOMER ...]; "
                     f"reject: sync-daemon plan reject {stored.run_id}")
    return "\n".join(lines)
