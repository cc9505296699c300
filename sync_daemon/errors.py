"""The daemon's error tree, sorted by who must act.

    SyncError
    ├── ConfigError          the operator must fix something (bad TOML, missing secret, 401)
    │   └── UsageError       a command's arguments name nothing, or several things
    ├── TransientError       try again later (network, 429, 5xx); carries retry_after
    ├── LockedError          another pass of this vendor is running; carries its run_id, since
    ├── PlanClosedError      a stored plan was already approved, rejected or superseded
    ├── RejectedError        the remote refused this one request (4xx/422); skip that item
    │   └── NotFoundError    the remote has no such object (404)
    ├── AmbiguousWriteError  a write may have landed; reconcile before retrying
    └── InvariantError       our assumptions broke; stop the run loudly
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime


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


class LockedError(SyncError):
    """Another pass of the same vendor holds the run lock (here or on another machine).

    `run_id` and `since` describe the holder; either is None when the holder has taken the
    lock but not yet recorded who it is.
    """

    def __init__(self, vendor: str, *, run_id: str | None, since: datetime | None,
                 holder: str | None = None) -> None:
        when = f" since {since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if since is not None else ""
        who = f", run id {run_id}" if run_id else " (its run id is not recorded yet)"
        super().__init__(f"{vendor}: already running{when}{who}")
        self.vendor = vendor
        self.run_id = run_id
        self.since = since
        self.holder = holder


class PlanClosedError(SyncError):
    """A plan kept for approval can no longer be approved or rejected; plan again."""


class RejectedError(SyncError):
    """The remote refused one request; `messages` are its reasons, normalised to a list."""

    def __init__(self, message: str, *, status: int, messages: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.messages = list(messages)


class NotFoundError(RejectedError):
    """The remote answered 404: the object is gone or never existed."""


class AmbiguousWriteError(SyncError):
    """A write left the client but its outcome is unknown; read the remote before retrying.

    `finished` is True when the server answered for itself (e.g. 500, 503): it is done with
    the request, so a read that does not find the write proves it did not land. Without an
    answer (timeout, reset, 502/504 from a proxy) the request may still be in flight.
    """

    def __init__(self, message: str, *, finished: bool = False) -> None:
        super().__init__(message)
        self.finished = finished


class InvariantError(SyncError):
    """Data broke an assumption the daemon relies on; the run must stop."""
