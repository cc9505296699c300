"""What every command shares: exit codes, the config context, error handling, output."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from sync_daemon import __version__, logs
from sync_daemon.app import App
from sync_daemon.errors import ConfigError, SyncError
from sync_daemon.jobs import Progress
from sync_daemon.settings import insecure_permissions_warning, load_settings, resolve_config_path

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_CONFIG = 2
EXIT_GUARD = 3

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Context:
    """What the group passes to its commands: the config path, loaded on demand."""

    config_option: str | None

    def app(self, *, max_attempts: int = 6) -> App:
        """Load settings, configure logging and build the application."""
        path = resolve_config_path(self.config_option)
        settings = load_settings(path)
        logs.configure(format=settings.log.format, level=settings.log.level,
                       secrets=settings.secrets())
        warning = insecure_permissions_warning(path)
        if warning:
            logs.get_logger().warning("config.insecure_permissions", detail=warning)
        return App(settings=settings, config_path=path, max_attempts=max_attempts)


def handles_errors(func: F) -> F:
    """Turn the daemon's errors into a message on stderr and the contract's exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        except SyncError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_PARTIAL)

    return cast(F, wrapper)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_option", metavar="PATH", envvar=None,
              help="Config file (default: $SYNC_DAEMON_CONFIG, else ./sync-daemon.toml).")
@click.version_option(__version__, prog_name="sync-daemon")
@click.pass_context
def cli(ctx: click.Context, config_option: str | None) -> None:
    """Keep Syncro recurring invoices in step with vendor licence counts and statements."""
    ctx.obj = Context(config_option=config_option)



VENDOR = click.Choice(["proofpoint", "cloudiq"])
FORMAT = click.Choice(["text", "json"])


def print_table(columns: Sequence[str], rows: Sequence[Sequence[object]], *, empty: str) -> None:
    """A table on stdout (plain when stdout is not a terminal, so scripts can read it)."""
    if not rows:
        click.echo(empty)
        return
    table = Table(*columns, box=None, pad_edge=False, show_edge=False)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        # Piped output is read whole or by scripts: never wrap a cell into several lines.
        console = Console(soft_wrap=True, width=400)
    console.print(table)


@contextmanager
def progress_bars() -> Iterator[Callable[[str], Progress | None]]:
    """Per pass, a progress bar on stderr, or None when stderr is not a terminal.

    The bar pulses while the pass reads and plans, then counts the changes applied; it is
    removed when done. Log lines print above it.
    """
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda _label: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with RichProgress(*columns, console=console, transient=True) as bars:
        def for_pass(label: str) -> Progress:
            task = bars.add_task(f"{label}: reading and planning", total=None)

            def advance(done: int, total: int) -> None:
                bars.update(task, description=f"{label}: applying changes", completed=done,
                            total=total)

            return advance

        yield for_pass
