"""Run locks: one sync pass per vendor at a time, across processes and machines.

PostgreSQL: a session-level advisory lock on a key derived from the vendor name, held on a
dedicated connection for the whole pass; the server drops it when the process or its
connection dies. The `run_locks` row there only names the holder. SQLite: the `run_locks` row
is the lock, taken by an atomic insert-or-steal under SQLite's write lock; a row whose holder
process is gone from this host, or whose heartbeat is older than `LockPolicy.stale_after`, is
taken over. Either way a background thread refreshes the holder's heartbeat, and a takeover
marks the previous holder's run `interrupted`.

This module lets SQLAlchemy's errors through; `StateStore` turns them into the daemon's.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from sync_daemon.errors import LockedError, SyncError
from sync_daemon.logs import get_logger
from sync_daemon.state.records import RunLock
from sync_daemon.state.tables import run_locks, sync_runs

log = get_logger()
Clock = Callable[[], datetime]

_HOSTNAME_MAX = 240  # `holder` is String(255): the host name, ":" and a pid
_RECORD_RETRIES = 20  # PostgreSQL: how often to look for a new holder's row, 50 ms apart


@dataclass(frozen=True, slots=True)
class LockPolicy:
    """How run locks behave: when a silent holder counts as dead, how often to beat and poll.

    `stale_after` must be well above `heartbeat_s`: a holder that misses a few beats (a long
    garbage collection, a busy database) must not lose its lock.
    """

    stale_after: timedelta = timedelta(minutes=10)
    heartbeat_s: float = 30.0
    poll_s: float = 1.0


def holder_name() -> str:
    """This process, as `run_locks.holder` names it: `hostname:pid`."""
    return f"{socket.gethostname()[:_HOSTNAME_MAX]}:{os.getpid()}"


def stale_reason(lock: RunLock, now: datetime, policy: LockPolicy) -> str | None:
    """Why the holder of `lock` counts as dead, or None while it may still be running."""
    host, _, pid = lock.holder.rpartition(":")
    if host == socket.gethostname()[:_HOSTNAME_MAX] and pid.isdigit() and not _alive(int(pid)):
        return f"its process {lock.holder} is gone"
    age = now - lock.heartbeat_at
    if age > policy.stale_after:
        return (f"its heartbeat is {_minutes(age)} old, more than the "
                f"{_minutes(policy.stale_after)} allowed")
    return None


def advisory_key(vendor: str) -> int:
    """The PostgreSQL advisory-lock key of a vendor's runs: a stable signed 64-bit hash."""
    digest = hashlib.blake2b(f"sync-daemon:run:{vendor}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class HeldLock(Protocol):
    """A lock this process holds, until `release()`."""

    lock: RunLock

    def beat(self) -> bool:
        """Refresh the heartbeat; False when the lock is no longer ours."""

    def release(self) -> bool:
        """Give the lock up; False when it was no longer ours."""


class LockBackend(Protocol):
    """How one kind of database takes, inspects and releases run locks."""

    def try_acquire(self, vendor: str, run_id: str) -> HeldLock:
        """Take the vendor's lock for `run_id` now, or raise `LockedError` naming the holder."""

    def holder(self, vendor: str) -> RunLock | None:
        """The pass holding the vendor's lock, or None when nobody (alive) holds it."""


def acquire(backend: LockBackend, vendor: str, run_id: str, *, wait: bool,
            policy: LockPolicy, sleep: Callable[[float], None] = time.sleep) -> HeldLock:
    """Take the lock, or with `wait` poll every `policy.poll_s` until it is free."""
    waiting = False
    while True:
        try:
            held = backend.try_acquire(vendor, run_id)
        except LockedError as locked:
            if not wait:
                raise
            if not waiting:
                log.info("lock.waiting", vendor=vendor, run_id=run_id,
                         holder_run_id=locked.run_id, holder=locked.holder, since=locked.since)
                waiting = True
            sleep(policy.poll_s)
            continue
        if waiting:
            log.info("lock.acquired", vendor=vendor, run_id=run_id)
        return held


class Heartbeat:
    """A daemon thread that refreshes a held lock's heartbeat every `every_s` seconds."""

    def __init__(self, held: HeldLock, every_s: float) -> None:
        self._held = held
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"run-lock-heartbeat:{held.lock.vendor}")
        self._thread.start()

    def stop(self) -> None:
        """Stop beating; returns once the thread has ended."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        lock = self._held.lock
        while not self._stop.wait(self._every_s):
            try:
                ours = self._held.beat()
            except (SQLAlchemyError, SyncError) as error:
                # A busy or briefly unreachable database: the next beat may pass, and the
                # stale limit is many beats long.
                log.warning("lock.heartbeat_failed", vendor=lock.vendor, run_id=lock.run_id,
                            error=str(error))
                continue
            if not ours:
                log.error("lock.lost", vendor=lock.vendor, run_id=lock.run_id,
                          detail="another process took the run lock over; this pass is no "
                                 "longer the only one")
                return


# -- SQLite: the row is the lock ----------------------------------------------------------


class SqliteLocks:
    """Run locks as `run_locks` rows, taken under SQLite's database-wide write lock."""

    def __init__(self, engine: Engine, clock: Clock, policy: LockPolicy) -> None:
        self._engine = engine
        self._clock = clock
        self._policy = policy

    def try_acquire(self, vendor: str, run_id: str) -> HeldLock:
        """Insert the row, or steal it from a dead or silent holder; else `LockedError`."""
        with self._engine.connect() as connection:
            # BEGIN IMMEDIATE takes the write lock before the read: two processes can never
            # both find the row missing (or stale) and both take it. Leaving the block without
            # a commit rolls back.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            previous = _read(connection, vendor)
            now = self._clock()
            reason = None
            if previous is not None:
                reason = stale_reason(previous, now, self._policy)
                if reason is None:
                    raise _locked_by(previous)
                _interrupt(connection, previous, reason, run_id, now)
            lock = RunLock(vendor=vendor, run_id=run_id, holder=holder_name(),
                           acquired_at=now, heartbeat_at=now)
            _upsert(connection, lock)
            connection.commit()
        if previous is not None:
            _log_takeover(previous, lock, reason)
        return _SqliteHeld(self._engine, self._clock, lock)

    def holder(self, vendor: str) -> RunLock | None:
        """The row's holder unless it is dead or silent (the next pass would take it over)."""
        with self._engine.connect() as connection:
            current = _read(connection, vendor)
        if current is None or stale_reason(current, self._clock(), self._policy):
            return None
        return current


class _SqliteHeld:
    def __init__(self, engine: Engine, clock: Clock, lock: RunLock) -> None:
        self._engine = engine
        self._clock = clock
        self.lock = lock

    def beat(self) -> bool:
        with self._engine.begin() as connection:
            return _beat(connection, self.lock, self._clock())

    def release(self) -> bool:
        with self._engine.begin() as connection:
            return _delete(connection, self.lock)


# -- PostgreSQL: a session-level advisory lock ---------------------------------------------


class PostgresLocks:
    """Run locks as advisory locks; the `run_locks` row says who holds one."""

    def __init__(self, engine: Engine, clock: Clock, policy: LockPolicy) -> None:
        self._engine = engine
        self._clock = clock
        self._policy = policy

    def try_acquire(self, vendor: str, run_id: str) -> HeldLock:
        """`pg_try_advisory_lock` on a connection kept for the pass; else `LockedError`."""
        key = advisory_key(vendor)
        # Autocommit: the connection idles between heartbeats, and an open transaction would
        # hold back vacuum (or be cut by idle_in_transaction_session_timeout, lock and all).
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            taken = connection.execute(select(func.pg_try_advisory_lock(key))).scalar_one()
        except BaseException:
            _drop(connection)
            raise
        if not taken:
            connection.close()
            raise self._locked(vendor)
        try:
            # A row here belongs to a holder whose session ended without releasing: we could
            # not hold the advisory lock otherwise.
            previous = _read(connection, vendor)
            now = self._clock()
            reason = "its database session ended without releasing the lock"
            if previous is not None:
                _interrupt(connection, previous, reason, run_id, now)
            lock = RunLock(vendor=vendor, run_id=run_id, holder=holder_name(),
                           acquired_at=now, heartbeat_at=now)
            _upsert(connection, lock)
        except BaseException:
            _drop(connection)
            raise
        if previous is not None:
            _log_takeover(previous, lock, reason)
        return _PostgresHeld(connection, self._clock, lock, key)

    def holder(self, vendor: str) -> RunLock | None:
        """Who holds the advisory lock, from `pg_locks` (never by taking it, even briefly)."""
        unsigned = advisory_key(vendor) & 0xFFFF_FFFF_FFFF_FFFF
        # A bigint key shows in pg_locks as classid (high half), objid (low half), objsubid 1.
        query = text(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
        )
        with self._engine.connect() as connection:
            held = connection.execute(query, {"high": unsigned >> 32,
                                              "low": unsigned & 0xFFFF_FFFF}).first()
        if held is None:
            return None
        return self._recorded(vendor) or RunLock(
            vendor=vendor, run_id="", holder="", acquired_at=self._clock(),
            heartbeat_at=self._clock())

    def _locked(self, vendor: str) -> LockedError:
        current = self._recorded(vendor)
        if current is None:
            return LockedError(vendor, run_id=None, since=None)
        return _locked_by(current)

    def _recorded(self, vendor: str) -> RunLock | None:
        """The holder's row; a new holder writes it just after taking the lock, so wait a
        little for it rather than name a previous, dead holder."""
        current = None
        for attempt in range(_RECORD_RETRIES):
            if attempt:
                time.sleep(0.05)
            with self._engine.connect() as connection:
                current = _read(connection, vendor)
            if current is not None and not self._is_silent(current):
                return current
        return current

    def _is_silent(self, lock: RunLock) -> bool:
        return self._clock() - lock.heartbeat_at > self._policy.stale_after


class _PostgresHeld:
    def __init__(self, connection: Connection, clock: Clock, lock: RunLock, key: int) -> None:
        self._connection = connection
        self._clock = clock
        self._key = key
        self.lock = lock

    def beat(self) -> bool:
        # Also proves the session, and so the advisory lock, is still alive.
        try:
            return _beat(self._connection, self.lock, self._clock())
        except SQLAlchemyError:
            if self._connection.invalidated:  # the session is gone, and the lock with it
                return False
            raise

    def release(self) -> bool:
        try:
            _delete(self._connection, self.lock)
            unlocked = self._connection.execute(
                select(func.pg_advisory_unlock(self._key))).scalar_one()
        except BaseException:
            _drop(self._connection)
            raise
        self._connection.close()
        return bool(unlocked)


def _drop(connection: Connection) -> None:
    """Close the session itself, not just return it to the pool: that releases its locks."""
    connection.invalidate()
    connection.close()


# -- shared SQL ----------------------------------------------------------------------------


def _read(connection: Connection, vendor: str) -> RunLock | None:
    row = connection.execute(select(run_locks).filter_by(vendor=vendor)).first()
    return None if row is None else RunLock(**row._mapping)


def _upsert(connection: Connection, lock: RunLock) -> None:
    values = {"vendor": lock.vendor, "run_id": lock.run_id, "holder": lock.holder,
              "acquired_at": lock.acquired_at, "heartbeat_at": lock.heartbeat_at}
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(run_locks).values(values)
    connection.execute(statement.on_conflict_do_update(
        index_elements=["vendor"], set_={k: v for k, v in values.items() if k != "vendor"}))


def _beat(connection: Connection, lock: RunLock, now: datetime) -> bool:
    mine = (run_locks.c.vendor == lock.vendor) & (run_locks.c.run_id == lock.run_id)
    changed = connection.execute(update(run_locks).where(mine).values(heartbeat_at=now))
    return changed.rowcount == 1


def _delete(connection: Connection, lock: RunLock) -> bool:
    mine = (run_locks.c.vendor == lock.vendor) & (run_locks.c.run_id == lock.run_id)
    return connection.execute(delete(run_locks).where(mine)).rowcount == 1


def _interrupt(connection: Connection, previous: RunLock, reason: str, run_id: str,
               now: datetime) -> None:
    """The previous holder's run cannot finish any more: record it as interrupted."""
    connection.execute(
        update(sync_runs)
        .where(sync_runs.c.run_id == previous.run_id, sync_runs.c.status == "running")
        .values(status="interrupted", finished_at=now,
                message=f"interrupted: {reason}; run {run_id} took the lock over"))


def _locked_by(holder: RunLock) -> LockedError:
    return LockedError(holder.vendor, run_id=holder.run_id, since=holder.acquired_at,
                       holder=holder.holder)


def _log_takeover(previous: RunLock, lock: RunLock, reason: str | None) -> None:
    log.warning("lock.taken_over", vendor=lock.vendor, run_id=lock.run_id,
                previous_run_id=previous.run_id, previous_holder=previous.holder,
                previous_heartbeat_at=previous.heartbeat_at.isoformat(), reason=reason)


def _alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (signal 0 checks, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists but belongs to another user
        return True
    return True


def _minutes(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"
