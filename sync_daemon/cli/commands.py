"""The top-level commands: `check`, `sync`, `history`. They parse, call and print."""

from __future__ import annotations

import json
import sys

import click

from sync_daemon import report
from sync_daemon.checks import check_connections
from sync_daemon.cli.base import (
    EXIT_CONFIG,
    EXIT_GUARD,
    EXIT_PARTIAL,
    FORMAT,
    VENDOR,
    Context,
    cli,
    handles_errors,
    progress_bars,
)
from sync_daemon.errors import ConfigError, LockedError
from sync_daemon.jobs import RunReport, run_vendor


@cli.command()
@click.pass_obj
@handles_errors
def check(obj: Context) -> None:
    """Test every enabled connection and print one line per connection."""
    app = obj.app(max_attempts=2)
    try:
        statuses = check_connections(app)
    finally:
        app.close()
    width = max(len(s.name) for s in statuses)
    for status in statuses:
        state = "connected" if status.connected else "not connected"
        click.echo(f"{status.name:<{width}}  {state}: {status.detail}")
    if all(s.connected for s in statuses):
        return
    sys.exit(EXIT_CONFIG if any(s.operator_must_act for s in statuses) else EXIT_PARTIAL)


@cli.command()
@click.option("--vendor", type=VENDOR, help="Only this vendor (default: every enabled one).")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing anywhere.")
@click.option("--force", is_flag=True, help="Apply even what the safety guard would stop.")
@click.option("--wait", is_flag=True,
              help="If a pass of the vendor is running elsewhere, wait for it, then run.")
@click.option("--format", "format_", type=FORMAT, default="text", show_default=True)
@click.pass_obj
@handles_errors
def sync(obj: Context, *, vendor: str | None, dry_run: bool, force: bool, wait: bool,
         format_: str) -> None:
    """Refresh customers, plan and apply, once, for one vendor or all enabled ones."""
    app = obj.app()
    reports: list[RunReport] = []
    locked: list[LockedError] = []
    try:
        vendors = [vendor] if vendor else app.enabled_vendors()
        if not vendors:
            raise ConfigError(f"{app.config_path}: no vendor is enabled")
        with progress_bars() as bar:
            for name in vendors:
                try:
                    reports.append(run_vendor(app, name, dry_run=dry_run, force=force,
                                              wait=wait, progress=bar(name)))
                except LockedError as error:  # another pass of this vendor runs: the others
                    locked.append(error)
    finally:
        app.close()
    if reports and format_ == "json":
        click.echo(json.dumps([report.as_dict(r) for r in reports] if len(reports) > 1
                              else report.as_dict(reports[0]), indent=2, ensure_ascii=False))
    elif reports:
        click.echo("\n\n".join(report.as_text(r) for r in reports))
    for refused in locked:
        click.echo(f"error: {refused}", err=True)
    if any(r.status == "stopped" for r in reports):
        sys.exit(EXIT_GUARD)
    if locked or any(r.status in {"partial", "failed"} for r in reports):
        sys.exit(EXIT_PARTIAL)


@cli.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--vendor", type=VENDOR)
@click.option("--format", "format_", type=FORMAT, default="text", show_default=True)
@click.pass_obj
@handles_errors
def history(obj: Context, *, limit: int, vendor: str | None, format_: str) -> None:
    """Show the audit log of changes applied to Syncro, newest first."""
    app = obj.app()
    try:
        with app.store.transaction() as tx:
            entries = tx.list_audit(limit=limit, vendor=vendor)
    finally:
        app.close()
    rows = [{"at": e.at.isoformat(), "run_id": e.run_id, "vendor": e.vendor,
             "action": e.action, "target": e.target, "customer": e.customer, "field": e.field,
             "before": e.before, "after": e.after, "reason": e.reason} for e in entries]
    if format_ == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("The audit log is empty.")
    for e in entries:
        change = (f"{e.before} → {e.after}" if e.before is not None and e.after is not None
                  else e.after or e.before or "")
        who = f"{e.customer}: " if e.customer else ""
        field = f"{e.field} " if e.field else ""
        click.echo(f"{e.at:%Y-%m-%d %H:%M:%S}Z {e.vendor} {e.action} {e.target} {who}{field}"
                   f"{change} ({e.reason})")
