"""Running as a service: `run` (the scheduler, until SIGTERM) and `status`."""

from __future__ import annotations

import json
import os
import sys

import click

from sync_daemon.cli.base import EXIT_OK, FORMAT, Context, cli, handles_errors
from sync_daemon.scheduler import Daemon
from sync_daemon.state import utc_now
from sync_daemon.status import as_dict, as_text, vendor_statuses


@cli.command()
@click.pass_obj
@handles_errors
def run(obj: Context) -> None:
    """Sync every enabled vendor on its schedule until SIGTERM or SIGINT."""
    app = obj.app()
    shutdown = Daemon(app.settings, app.config_path).serve()
    if not shutdown.clean:
        # A pass is still running in a worker thread, which Python would wait for at exit.
        # Its run is recorded as interrupted; its run lock ends with the process.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_OK)


@cli.command()
@click.option("--format", "format_", type=FORMAT, default="text", show_default=True)
@click.pass_obj
@handles_errors
def status(obj: Context, *, format_: str) -> None:
    """Show each vendor's last run, next scheduled run, running pass and unmapped customers."""
    app = obj.app()
    try:
        statuses = vendor_statuses(app.settings, app.store, utc_now())
    finally:
        app.close()
    zone = app.settings.daemon.zone
    if format_ == "json":
        click.echo(json.dumps([as_dict(s, zone) for s in statuses], indent=2,
                              ensure_ascii=False))
    elif statuses:
        click.echo("\n\n".join(as_text(s, zone) for s in statuses))
    else:
        click.echo("No vendor is configured.")
