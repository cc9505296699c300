"""Run summaries for people (text) and scripts (JSON), from a `RunReport`."""

from __future__ import annotations

import json
from typing import Any

from sync_daemon.jobs import RunReport
from sync_daemon.plan import describe

SYMBOLS = {"created": "+", "adopted": "=", "deleted": "-"}


def as_dict(report: RunReport) -> dict[str, Any]:
    """The summary as JSON-ready data: every change, warning and error, and the counts."""
    applied = {id(a.change): a for a in report.applied}
    changes: list[dict[str, Any]] = []
    for change in report.plan.changes if report.plan else ():
        outcome = applied.get(id(change))
        state = ("planned" if outcome is None else "failed" if outcome.error else "applied")
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
        f"{counts['warnings']} warnings, {counts['errors']} errors"
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
    status = "" if row["status"] == "applied" else f" [{row['status']}]"
    error = f" ({row['error']})" if row["error"] else ""
    return f"{mark} {who}{verb.replace('_', ' ')} {what} {delta} ({row['reason']}){status}{error}"


def _mapping(report: RunReport) -> dict[str, list[str]]:
    refresh = report.refresh
    if refresh is None:
        return {}
    return {"new (not mapped)": list(refresh.appeared), "detached": list(refresh.detached),
            "returned": list(refresh.returned)}
