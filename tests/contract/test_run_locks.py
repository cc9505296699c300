"""The run-lock contract, on SQLite and PostgreSQL: one pass per vendor, whoever asks.

Every test locks its own vendor name, so a lock a failing test leaves behind on the session's
PostgreSQL server cannot make another test fail.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, insert, inspect, select
from sqlalchemy.engine import Connection
from structlog.testing import capture_logs

from sync_daemon.errors import LockedError
from sync_daemon.state import (
    LockPolicy,
    RunLock,
    StateStore,
    VendorCustomer,
    VendorCustomerStatus,
)
from sync_daemon.state.locks import advisory_key, holder_name
from sync_daemon.state.store import alembic_config
from sync_daemon.state.tables import run_locks, sync_runs

FAST = LockPolicy(heartbeat_s=0.05, poll_s=0.05)
T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


class Clock:
    """A clock that stands still until moved."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _engine_work(url: str, work: Callable[[Connection], Any]) -> Any:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            return work(connection)
    finally:
        engine.dispose()


def _try(store: StateStore, vendor: str, run_id: str) -> RunLock | LockedError:
    """Take and release at once: the lock record, or the refusal."""
    try:
        with store.run_lock(vendor, run_id) as lock:
            return lock
    except LockedError as refused:
        return refused


def _eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.02)


@contextmanager
def _held_in_thread(store: StateStore, vendor: str, run_id: str) -> Iterator[threading.Event]:
    """Hold the lock on another thread until the block ends; yields the 'release' event."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.run_lock(vendor, run_id):
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(10)
    try:
        yield release
    finally:
        release.set()
        thread.join(10)


# -- migrations ---------------------------------------------------------------------------


def test_upgrading_from_0001_adds_run_locks_and_keeps_the_data(database_url: str) -> None:
    def at_0001(connection: Connection) -> list[str]:
        command.upgrade(alembic_config(connection), "0001_initial")
        connection.execute(insert(sync_runs).values(
            run_id="r" * 32, vendor="proofpoint", trigger="manual", status="succeeded",
            started_at=T0, counts={"changes_applied": 2}))
        return inspect(connection).get_table_names()

    assert "run_locks" not in _engine_work(database_url, at_0001)
    with StateStore.open(database_url) as store:
        assert store.schema_version() == "0003_plans"
        with store.transaction() as tx:
            run = tx.get_run("r" * 32)
        assert run is not None
        assert run.counts == {"changes_applied": 2}
        assert isinstance(_try(store, "upgrade-vendor", "a" * 32), RunLock)

    def downgrade(connection: Connection) -> list[str]:
        command.downgrade(alembic_config(connection), "0001_initial")
        return inspect(connection).get_table_names()

    left = _engine_work(database_url, downgrade)
    assert "run_locks" not in left
    assert "sync_runs" in left


# -- one holder ---------------------------------------------------------------------------


def test_a_held_lock_refuses_others_and_names_its_holder(store_url: str) -> None:
    clock = Clock()
    with StateStore.open(store_url, clock=clock, locks=FAST) as store, \
            StateStore.open(store_url, clock=clock, locks=FAST) as other:
        assert store.lock_holder("held") is None
        with store.run_lock("held", "1" * 32) as lock:
            assert (lock.vendor, lock.run_id, lock.holder) == ("held", "1" * 32, holder_name())
            assert lock.acquired_at == T0
            refused = _try(other, "held", "2" * 32)
            assert isinstance(refused, LockedError)
            assert (refused.run_id, refused.since, refused.holder) == ("1" * 32, T0,
                                                                        holder_name())
            assert str(refused) == (f"held: already running since 2026-03-01 06:00:00 UTC, "
                                    f"run id {'1' * 32}")
            assert isinstance(_try(other, "another-vendor", "3" * 32), RunLock)
            holder = other.lock_holder("held")
            assert holder is not None
            assert holder.run_id == "1" * 32
        assert other.lock_holder("held") is None
        assert isinstance(_try(other, "held", "4" * 32), RunLock)
        with store.transaction() as tx:
            assert tx.list_runs() == []  # taking a lock records no run


@pytest.mark.parametrize("start", ["threads", "processes"])
def test_of_racing_contenders_exactly_one_wins(store_url: str, start: str) -> None:
    vendor = f"race-{start}"
    fork = multiprocessing.get_context("fork")
    contenders = 4
    results = fork.Queue()
    ready = fork.Barrier(contenders) if start == "processes" else threading.Barrier(contenders)
    done = fork.Event() if start == "processes" else threading.Event()
    spawn = fork.Process if start == "processes" else threading.Thread
    workers = [spawn(target=_contend, args=(store_url, vendor, f"{n:032d}",
                                            (ready, done, results)), daemon=True)
               for n in range(contenders)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=20) for _ in range(contenders - 1)]  # the losers answer
    done.set()  # now the winner may let go
    outcomes.append(results.get(timeout=20))
    for worker in workers:
        worker.join(20)
    winners = [run_id for kind, run_id, _ in outcomes if kind == "won"]
    assert len(winners) == 1, outcomes
    assert sorted(holder for kind, _, holder in outcomes if kind == "refused") == \
        [winners[0]] * (contenders - 1)


def _contend(url: str, vendor: str, run_id: str, sync: tuple[Any, Any, Any]) -> None:
    """Wait for the others, try the lock, hold it until told (if won), report."""
    ready, done, results = sync
    with StateStore.open(url, locks=FAST) as store:
        ready.wait(timeout=20)
        try:
            with store.run_lock(vendor, run_id):
                done.wait(20)  # hold until every loser has been refused
                results.put(("won", run_id, None))
        except LockedError as refused:
            results.put(("refused", run_id, refused.run_id))


# -- dead and silent holders --------------------------------------------------------------


def _hold_and_die(url: str, vendor: str, run_id: str, ready: Any) -> None:
    with StateStore.open(url, locks=FAST) as store, store.run_lock(vendor, run_id):
        with store.transaction() as tx:
            tx.start_run(vendor, "schedule", run_id=run_id)
        ready.set()
        time.sleep(60)  # killed long before


def test_a_killed_holders_lock_is_taken_over_and_its_run_interrupted(store_url: str) -> None:
    vendor, dead, alive = "killed", "d" * 32, "e" * 32
    fork = multiprocessing.get_context("fork")
    ready = fork.Event()
    holder = fork.Process(target=_hold_and_die, args=(store_url, vendor, dead, ready),
                          daemon=True)
    holder.start()
    assert ready.wait(20)
    with StateStore.open(store_url, locks=FAST) as store:
        assert isinstance(_try(store, vendor, alive), LockedError)
        os.kill(holder.pid or 0, signal.SIGKILL)
        holder.join(10)  # reaped: its pid no longer exists on this host
        with capture_logs() as logs:
            # PostgreSQL drops the lock once it sees the session end, a moment after.
            _eventually(lambda: isinstance(_try(store, vendor, alive), RunLock))
        with store.transaction() as tx:
            run = tx.get_run(dead)
    assert run is not None
    assert run.status == "interrupted"
    assert run.finished_at is not None
    assert alive in (run.message or "")
    (taken,) = [e for e in logs if e["event"] == "lock.taken_over"]
    assert (taken["previous_run_id"], taken["run_id"]) == (dead, alive)
    assert taken["previous_holder"].endswith(f":{holder.pid}")


def test_a_silent_holder_on_another_host_is_taken_over_once_stale(
    store_url: str, backend: str
) -> None:
    vendor, silent = "silent", "s" * 32
    clock = Clock()
    with StateStore.open(store_url, clock=clock, locks=FAST) as store:
        with store.transaction() as tx:
            tx.start_run(vendor, "schedule", run_id=silent)
        _engine_work(store_url, lambda c: c.execute(insert(run_locks).values(
            vendor=vendor, run_id=silent, holder="other-host.example:4242",
            acquired_at=T0 - timedelta(hours=1), heartbeat_at=T0 - timedelta(minutes=9))))
        if backend == "sqlite":  # the row is the lock: it holds until its heartbeat is stale
            refused = _try(store, vendor, "a" * 32)
            assert isinstance(refused, LockedError)
            assert refused.holder == "other-host.example:4242"
            assert store.lock_holder(vendor) is not None
            clock.now = T0 + timedelta(minutes=1, seconds=1)
            assert store.lock_holder(vendor) is None  # `status` no longer shows it running
        # PostgreSQL: a row without the advisory lock is a dead session's leftover.
        with capture_logs() as logs:
            assert isinstance(_try(store, vendor, "b" * 32), RunLock)
        with store.transaction() as tx:
            run = tx.get_run(silent)
    assert run is not None
    assert run.status == "interrupted"
    (taken,) = [e for e in logs if e["event"] == "lock.taken_over"]
    assert taken["previous_holder"] == "other-host.example:4242"
    if backend == "sqlite":
        assert "heartbeat is 10 min 1 s old" in taken["reason"]


def test_the_heartbeat_keeps_a_long_pass_from_going_stale(store_url: str) -> None:
    vendor, long_pass = "beating", "b" * 32
    clock = Clock()
    with StateStore.open(store_url, clock=clock, locks=FAST) as store, \
            store.run_lock(vendor, long_pass):
        # As if held from another host, so only the heartbeat can show it is alive.
        _engine_work(store_url, lambda c: c.execute(
            run_locks.update().values(holder="other-host.example:1")))
        clock.now = T0 + timedelta(hours=1)

        def heartbeat_at(connection: Connection) -> datetime:
            value: datetime = connection.execute(
                select(run_locks.c.heartbeat_at).filter_by(vendor=vendor)).scalar_one()
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value

        _eventually(lambda: _engine_work(store_url, heartbeat_at) == clock.now)
        refused = _try(store, vendor, "c" * 32)
        assert isinstance(refused, LockedError)  # not stale: it beat a moment ago
        assert refused.since == T0


def test_a_holder_whose_lock_was_taken_over_says_so(tmp_path: Any) -> None:
    # Only SQLite can lose a lock to a takeover while alive (a heartbeat stalled too long).
    url = f"sqlite:///{tmp_path / 'state.db'}"
    clock = Clock()
    slow = LockPolicy(heartbeat_s=3600)  # this holder never gets to beat
    with StateStore.open(url, clock=clock, locks=slow) as first, \
            StateStore.open(url, clock=clock, locks=FAST) as second, capture_logs() as logs, \
            first.run_lock("lost", "f" * 32):
        clock.now = T0 + timedelta(minutes=11)
        _engine_work(url, lambda c: c.execute(
            run_locks.update().values(holder="elsewhere:1")))  # alive, but silent
        with second.run_lock("lost", "g" * 32):
            pass
    assert [e["event"] for e in logs if e["event"].startswith("lock.")] == [
        "lock.taken_over", "lock.lost"]


# -- waiting ------------------------------------------------------------------------------


def test_wait_polls_until_the_holder_is_done(store_url: str) -> None:
    vendor = "waiting"
    with StateStore.open(store_url, locks=FAST) as store, ExitStack() as stack:
        release = stack.enter_context(_held_in_thread(store, vendor, "h" * 32))
        acquired = threading.Event()
        waited_for: list[str] = []

        def wait_then_run() -> None:
            with store.run_lock(vendor, "w" * 32, wait=True) as lock:
                waited_for.append(lock.run_id)
                acquired.set()

        with capture_logs() as logs:
            waiter = threading.Thread(target=wait_then_run, daemon=True)
            waiter.start()
            _eventually(lambda: any(e["event"] == "lock.waiting" for e in logs))
            time.sleep(FAST.poll_s * 4)  # several polls while the lock is held
            assert not acquired.is_set()
            release.set()
            assert acquired.wait(5)
            waiter.join(5)
    assert waited_for == ["w" * 32]
    waiting = [e for e in logs if e["event"] == "lock.waiting"]
    assert len(waiting) == 1  # said once, not once per poll
    assert waiting[0]["holder_run_id"] == "h" * 32


# -- what `status` reads ------------------------------------------------------------------


def test_customers_are_counted_by_status(store: StateStore) -> None:
    with store.transaction() as tx:
        statuses: list[VendorCustomerStatus] = ["mapped", "mapped", "not_mapped", "detached"]
        for n, status in enumerate(statuses):
            tx.put_vendor_customer(VendorCustomer(vendor="proofpoint", vendor_customer_id=str(n),
                                                  name=f"C{n}", status=status))
        tx.put_vendor_customer(VendorCustomer(vendor="cloudiq", vendor_customer_id="x",
                                              name="X", status="mapped"))
    with store.transaction() as tx:
        assert tx.count_vendor_customers("proofpoint") == {
            "mapped": 2, "not_mapped": 1, "detached": 1}
        assert tx.count_vendor_customers("nobody") == {
            "mapped": 0, "not_mapped": 0, "detached": 0}


def test_a_run_can_be_started_with_the_id_its_lock_holds(store: StateStore) -> None:
    with store.transaction() as tx:
        run = tx.start_run("proofpoint", "schedule", run_id="9" * 32)
    assert run.run_id == "9" * 32


def test_advisory_keys_are_stable_and_distinct() -> None:
    assert advisory_key("proofpoint") == advisory_key("proofpoint")
    assert advisory_key("proofpoint") != advisory_key("cloudiq")
    assert -(2**63) <= advisory_key("cloudiq") < 2**63
