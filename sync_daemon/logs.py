"""The only structlog setup: JSON lines on stderr for services, readable colour for people.

Every event carries `timestamp`, `level` and `event`; inside a sync run `run_id` and `vendor` are
bound through contextvars. Known secrets are scrubbed from every value before rendering.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "***"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class SecretScrubber:
    """A processor that replaces any occurrence of a known secret with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        if not self.secrets:
            return event_dict
        return {key: self.scrub(value) for key, value in event_dict.items()}

    def scrub(self, value: Any) -> Any:
        """`value` (text, or mappings and lists of it) with every secret replaced."""
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, MutableMapping):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value


class _CurrentStderr:
    """Whatever `sys.stderr` is at each write, so that a progress bar that takes stderr over
    (rich redirects it while the bar is drawn) prints log lines above the bar."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(
    *,
    format: str = "json",  # noqa: A002  the config key is called `format`
    level: str = "info",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for the process; call once, from the CLI."""
    global _scrubber  # noqa: PLW0603  one configuration per process, like structlog's own
    _scrubber = SecretScrubber(secrets)
    out = stream if stream is not None else cast(TextIO, _CurrentStderr())
    renderer: Processor
    if format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(default=str)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrubber,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def redact(text: str) -> str:
    """`text` with every configured secret replaced, for what is printed outside the logs."""
    scrubbed: str = _scrubber.scrub(text)
    return scrubbed


_scrubber = SecretScrubber()


def get_logger() -> structlog.typing.FilteringBoundLogger:
    """A lazy logger: safe to create at import time, it follows the later configuration.

    Events are named `area.what` (`http.retry`, `sync.finished`), so no logger name is needed.
    """
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger()
    return logger


class _ToStructlog(logging.Handler):
    """Re-emits a library's stdlib log records as `library.log` events, so stderr stays JSON."""

    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            fields["exc_info"] = record.exc_info
        get_logger().log(record.levelno, "library.log", **fields)


def library_logger(name: str, level: str = "warning") -> logging.Logger:
    """The stdlib logger `name` (a library's), sending `level` and above through structlog only."""
    logger = logging.getLogger(name)
    logger.setLevel(_LEVELS[level])
    logger.propagate = False  # never also through the root logger's plain-text last resort
    if not any(isinstance(h, _ToStructlog) for h in logger.handlers):
        logger.addHandler(_ToStructlog())
    return logger


def bind_run(**values: Any) -> None:
    """Bind `run_id`, `vendor` and friends to every event of the current run."""
    structlog.contextvars.bind_contextvars(**values)


def unbind_run(*keys: str) -> None:
    """Forget values bound with `bind_run`."""
    structlog.contextvars.unbind_contextvars(*keys)
