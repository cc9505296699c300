"""`plan show|approve|reject`: the plans passes keep for approval under `approval = "required"`."""

from __future__ import annotations

import json
import sys

import click

from sync_daemon import report
from sync_daemon.approval.decide import approve_plan, find_plan, reject_plan
from sync_daemon.cli.base import EXIT_PARTIAL, FORMAT, Context, cli, handles_errors, progress_bars


@cli.group()
def plan() -> None:
    """Review, approve or reject the changes a pass keeps for approval."""


@plan.command()
@click.argument("run_id", required=False)
@click.option("--format", "format_", type=FORMAT, default="text", show_default=True)
@click.pass_obj
@handles_errors
def show(obj: Context, run_id: str | None, *, format_: str) -> None:
    """Print the plan of pass RUN_ID, or every plan waiting for approval."""
    app = obj.app()
    try:
        with app.store.transaction() as tx:
            plans = ([find_plan(app, run_id)] if run_id
                     else tx.list_plans(status="pending", limit=None))
            shown = [(p, tx.list_planned_changes(p.run_id)) for p in plans]
    finally:
        app.close()
    if format_ == "json":
        data = [report.plan_as_dict(p, rows) for p, rows in shown]
        click.echo(json.dumps(data[0] if run_id else data, indent=2, ensure_ascii=False))
    elif shown:
        click.echo("\n\n".join(report.plan_as_text(p, rows) for p, rows in shown))
    else:
        click.echo("No plan is waiting for approval.")


@plan.command()
@click.argument("run_id")
@click.option("--only", "only", multiple=True, metavar="CUSTOMER",
              help="Apply only this customer's changes (vendor id, vendor name or Syncro "
                   "name; repeat for more). The rest stays pending.")
@click.option("--format", "format_", type=FORMAT, default="text", show_default=True)
@click.pass_obj
@handles_errors
def approve(obj: Context, run_id: str, *, only: tuple[str, ...], format_: str) -> None:
    """Apply the plan of pass RUN_ID, refusing every change whose Syncro state moved."""
    app = obj.app()
    try:
        with progress_bars() as bar:
            outcome = approve_plan(app, run_id, only=only, progress=bar("approval"))
    finally:
        app.close()
    click.echo(report.as_json(outcome) if format_ == "json" else report.as_text(outcome))
    if outcome.status != "succeeded":
        sys.exit(EXIT_PARTIAL)


@plan.command()
@click.argument("run_id")
@click.pass_obj
@handles_errors
def reject(obj: Context, run_id: str) -> None:
    """Discard the plan of pass RUN_ID; nothing is written to Syncro."""
    app = obj.app()
    try:
        closed = reject_plan(app, run_id)
    finally:
        app.close()
    click.echo(f"Rejected plan {closed.run_id} ({closed.vendor}); nothing was written to "
               "Syncro. The next pass plans again.")
