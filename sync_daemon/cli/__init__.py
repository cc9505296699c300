"""The `sync-daemon` command line. Exit codes, for every command: 0 success; 1 partly failed;
2 configuration or usage error; 3 stopped by a safety guard before applying anything.
Results go to stdout, logs to stderr.
"""

from __future__ import annotations

import sys

import click

from sync_daemon import logs
from sync_daemon.cli import commands, mapping, plans, service
from sync_daemon.cli.base import EXIT_PARTIAL, cli

__all__ = ["cli", "commands", "main", "mapping", "plans", "service"]


def main() -> None:
    """Console-script entry point; a bug still ends in one line on stderr, not a traceback."""
    try:
        cli.main(prog_name="sync-daemon")
    except Exception as exc:  # noqa: BLE001  the last guard between a bug and the user's terminal
        logs.get_logger().exception("cli.crashed")
        click.echo(f"internal error: {type(exc).__name__}: {logs.redact(str(exc))} "
                   "(details in the log)", err=True)
        sys.exit(EXIT_PARTIAL)
