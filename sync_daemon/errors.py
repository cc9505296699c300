"""The daemon's error tree, sorted by who must act.

    SyncError
    ├── ConfigError          the operator must fix something (bad TOML, missing secret, 401)
    │   └── UsageError       a command's arguments name nothing, or several things
    ├── TransientError       try again later (network, 429, 5xx); carries retry_after
    ├── RejectedError        the remote refused this one request (4xx/422); skip that item
    │   └── NotFoundError    the remote has no such object (404)
    ├── AmbiguousWriteError  a write may have landed; reconcile before retrying
    └── InvariantError       our assumptions broke; stop the run loudly
"""

from __future__ import annotations

from collections.abc import Sequence


class SyncError(Exception):
    """Base of every error the daemon raises on purpose."""


class ConfigError(SyncError):
    """The operator must change the configuration or the credentials."""


class UsageError(ConfigError):
    """A command's arguments do not name exactly one thing; the message lists candidates."""


class TransientError(SyncError):
    """A failure that may pass by itself; `retry_after` is the server's hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RejectedError(SyncError):
    """The remote refused one request; `messages` are its reasons, normalised to a list."""

    def __init__(self, message: str, *, status: int, messages: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.messages = list(messages)


class NotFoundError(RejectedError):
    """The remote answered 404: the object is gone or never existed."""


class AmbiguousWriteError(SyncError):
    """A write left the client but its outcome is unknown; read the remote before retrying."""


class InvariantError(SyncError):
    """Data broke an assumption the daemon relies on; the run must stop."""
