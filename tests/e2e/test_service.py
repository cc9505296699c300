"""Running as a service, end to end: the run lock between `sync` processes, `run` (the
scheduler) under SIGTERM, and `status`.

The real CLI runs as subprocesses against the Syncro and Proofpoint sandboxes on SQLite. A
gate on Syncro's `GET /products` (read early by every pass, after it took the run lock) holds
a pass in the middle for as long as a story needs, so nothing here depends on timing. The
stories run side by side once per module; the tests after them read their outcomes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sync_daemon.sandbox import SyncroSandbox
from sync_daemon.sandbox.http import Request, Response
from sync_daemon.state import StateStore, SyncRun
from tests.e2e.conftest import Customer, Line, World, concurrently, parse_json
from tests.support.cli import Result

VENDOR = "proofpoint"
ZONE = ZoneInfo("Europe/Oslo")
Event = dict[str, Any]


# -- helpers ----------------------------------------------------------------------------------


class Gate:
    """Holds every `GET /products` Syncro receives until `open()`."""

    def __init__(self, sandbox: SyncroSandbox) -> None:
        self.reached = threading.Event()
        self._opened = threading.Event()
        self._patch = pytest.MonkeyPatch()
        passing = sandbox.handle

        def handle(request: Request) -> Response:
            if request.method == "GET" and request.path.endswith("/products"):
                self.reached.set()
                self._opened.wait(60)
            return passing(request)

        self._patch.setattr(sandbox, "handle", handle)

    def open(self) -> None:
        """Let held and later requests through."""
        self._opened.set()
        self._patch.undo()


class Cli:
    """A `sync-daemon` subprocess whose stderr log lines are read as they come."""

    def __init__(self, config: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNC_DAEMON_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sync_daemon", "--config", str(config), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self._lines: list[str] = []
        self._stdout: list[str] = []
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(pipe, sink), daemon=True)
                         for pipe, sink in ((self.process.stderr, self._lines),
                                            (self.process.stdout, self._stdout))]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe: Any, sink: list[str]) -> None:
        for line in pipe:
            with self._changed:
                sink.append(line)
                self._changed.notify_all()

    def events(self) -> list[Event]:
        """The JSON log lines so far."""
        with self._changed:
            lines = list(self._lines)
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_for(self, event: str, timeout: float = 30) -> Event:
        """The first log line of `event`, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self.events() if e["event"] == event]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    break
                self._changed.wait(min(left, 0.1))
        result = self.finish(kill=True)
        pytest.fail(f"no {event} (exit {result.code}):\n{result.stderr[-3000:]}")

    def signal(self, number: signal.Signals) -> None:
        """Send a signal."""
        self.process.send_signal(number)

    def finish(self, timeout: float = 30, *, kill: bool = False) -> Result:
        """Wait for the exit (or kill first); the exit code and everything it printed."""
        if kill:
            self.process.kill()
        try:
            code = self.process.wait(timeout)
        finally:
            for reader in self._readers:
                reader.join(timeout)
            for pipe in (self.process.stdout, self.process.stderr):
                if pipe is not None:
                    pipe.close()
        return Result(code, "".join(self._stdout), "".join(self._lines))


def first_to_exit(*clis: Cli, timeout: float = 30) -> Cli:
    """The first of several processes to end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for cli in clis:
            if cli.process.poll() is not None:
                return cli
        time.sleep(0.02)
    pytest.fail("no process ended")


def events(result: Result, name: str) -> list[Event]:
    """One event's log lines from a finished process."""
    return [e for e in result.log_events() if e["event"] == name]


def runs(world: World) -> list[SyncRun]:
    """Every recorded run, newest first."""
    with world.store() as tx:
        return tx.list_runs(VENDOR, limit=50)


def seed_run(world: World, started_at: datetime) -> None:
    """A finished scheduled run that started at `started_at`."""
    with StateStore.open(world.state_url, clock=lambda: started_at) as store, \
            store.transaction() as tx:
        run = tx.start_run(VENDOR, "schedule")
        tx.finish_run(run.run_id, "succeeded", {})


def seed_customers(world: World) -> Customer:
    """Alder Dental mapped (12 users on Business), Birch Law not mapped; returns Alder's
    Syncro customer."""
    alder = world.customer("Alder Dental")
    world.map((world.org("Alder Dental", users=12), alder))
    world.not_mapped(world.org("Birch Law", users=5))
    return alder


def quantities(world: World, customer: Customer) -> list[tuple[str | None, int]]:
    """The daemon's lines on the customer's recurring invoice: (product, quantity)."""
    lines: list[Line] = world.vendor_lines(customer.schedule_id)
    return [(line.product, int(line.quantity)) for line in lines]


# -- two `sync` processes at once --------------------------------------------------------------


@dataclass
class Race:
    world: World
    customer: Customer
    winner: Result
    loser: Result


def build_race(world: World) -> Race:
    """Two syncs started together; the winner is held until the loser has ended."""
    customer = seed_customers(world)
    config = world.config()
    gate = Gate(world.syncro)
    both = [Cli(config, "sync", "--vendor", VENDOR, "--format", "json") for _ in range(2)]
    first = first_to_exit(*both)
    loser = first.finish()
    gate.open()
    (other,) = [cli for cli in both if cli is not first]
    return Race(world, customer, other.finish(), loser)


@dataclass
class Waiting:
    world: World
    customer: Customer
    first: Result
    second: Result
    waiting: Event


def build_waiting(world: World) -> Waiting:
    """A sync holds the lock; `sync --wait` starts, waits, then runs once it is free."""
    customer = seed_customers(world)
    config = world.config()
    gate = Gate(world.syncro)
    first = Cli(config, "sync", "--vendor", VENDOR, "--format", "json")
    first.wait_for("sync.started")
    second = Cli(config, "sync", "--vendor", VENDOR, "--wait", "--format", "json")
    waiting = second.wait_for("lock.waiting")
    gate.open()
    return Waiting(world, customer, first.finish(), second.finish(), waiting)


# -- `run` -----------------------------------------------------------------------------------


@dataclass
class Service:
    world: World
    customer: Customer
    result: Result
    missed_at: datetime
    status_text: Result
    status_json: Result


def build_service(world: World) -> Service:
    """The service was down for two days: `run` catches up once, then stops on SIGTERM."""
    customer = seed_customers(world)
    missed_at = datetime.now(UTC) - timedelta(days=2)
    seed_run(world, missed_at)
    config = world.config(daemon={"timezone": "Europe/Oslo"})
    daemon = Cli(config, "run")
    daemon.wait_for("sync.finished")
    daemon.signal(signal.SIGTERM)
    result = daemon.finish()
    status_text, status_json = world.cli_many(("status",), ("status", "--format", "json"))
    return Service(world, customer, result, missed_at, status_text, status_json)


@dataclass
class InFlight:
    world: World
    pid: int
    result: Result
    status_while_running: Result
    released_after_signal: bool


def build_in_flight(world: World) -> InFlight:
    """SIGTERM during a pass: the pass finishes, then the service exits."""
    seed_customers(world)
    seed_run(world, datetime.now(UTC) - timedelta(days=2))
    config = world.config()
    gate = Gate(world.syncro)
    daemon = Cli(config, "run")
    daemon.wait_for("sync.started")
    assert gate.reached.wait(30)
    status = world.cli("status", "--format", "json")
    daemon.signal(signal.SIGTERM)
    daemon.wait_for("daemon.stopping")
    still_running = daemon.process.poll() is None
    gate.open()
    return InFlight(world, daemon.process.pid, daemon.finish(), status, still_running)


@dataclass
class Deadline:
    world: World
    result: Result
    status: Result
    next_sync: Result


def build_deadline(world: World) -> Deadline:
    """SIGTERM during a pass that outlives `shutdown_timeout_s`: recorded interrupted; the
    next sync takes the dead service's lock over."""
    seed_customers(world)
    seed_run(world, datetime.now(UTC) - timedelta(days=2))
    config = world.config(daemon={"shutdown_timeout_s": 0.5})
    gate = Gate(world.syncro)
    daemon = Cli(config, "run")
    daemon.wait_for("sync.started")
    assert gate.reached.wait(30)
    daemon.signal(signal.SIGTERM)
    result = daemon.finish()
    gate.open()
    status = world.cli("status", "--format", "json")
    return Deadline(world, result, status, world.cli("sync", "--vendor", VENDOR))


@pytest.fixture(scope="module")
def scenarios(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[Any]]]:
    with concurrently(request, tmp_path_factory, {
        "service": build_service, "deadline": build_deadline, "in_flight": build_in_flight,
        "race": build_race, "waiting": build_waiting,
    }, workers=5) as futures:
        yield futures


@pytest.fixture
def race(scenarios: dict[str, Future[Any]]) -> Race:
    built: Race = scenarios["race"].result()
    return built


@pytest.fixture
def waiting(scenarios: dict[str, Future[Any]]) -> Waiting:
    built: Waiting = scenarios["waiting"].result()
    return built


@pytest.fixture
def service(scenarios: dict[str, Future[Any]]) -> Service:
    built: Service = scenarios["service"].result()
    return built


@pytest.fixture
def in_flight(scenarios: dict[str, Future[Any]]) -> InFlight:
    built: InFlight = scenarios["in_flight"].result()
    return built


@pytest.fixture
def deadline(scenarios: dict[str, Future[Any]]) -> Deadline:
    built: Deadline = scenarios["deadline"].result()
    return built


# == the run lock between processes ============================================================


def test_of_two_syncs_at_once_exactly_one_applies(race: Race) -> None:
    assert race.winner.code == 0, race.winner.stderr
    summary = parse_json(race.winner)
    assert [c["status"] for c in summary["changes"]] == ["applied", "applied"]  # product, line
    assert quantities(race.world, race.customer) == [("PC_PPE-BUSINESS", 12)]
    assert [run.run_id for run in runs(race.world)] == [summary["run_id"]]


def test_the_refused_sync_exits_1_naming_the_running_pass(race: Race) -> None:
    summary = parse_json(race.winner)
    assert race.loser.code == 1
    assert race.loser.stdout == ""
    (line,) = race.loser.stderr.splitlines()
    assert line.startswith("error: proofpoint: already running since ")
    assert line.endswith(f" UTC, run id {summary['run_id']}")


def test_sync_wait_waits_for_the_running_pass_then_runs(waiting: Waiting) -> None:
    assert (waiting.first.code, waiting.second.code) == (0, 0), waiting.second.stderr
    first, second = parse_json(waiting.first), parse_json(waiting.second)
    assert waiting.waiting["holder_run_id"] == first["run_id"]
    assert len(first["changes"]) == 2
    assert second["changes"] == []  # the first pass had applied everything
    (first_end,) = events(waiting.first, "sync.finished")
    (second_start,) = events(waiting.second, "sync.started")
    assert second_start["timestamp"] > first_end["timestamp"]
    assert quantities(waiting.world, waiting.customer) == [("PC_PPE-BUSINESS", 12)]
    assert [r.status for r in runs(waiting.world)] == ["succeeded", "succeeded"]


# == `run` ====================================================================================


def test_run_catches_up_the_missed_run_and_exits_0_on_sigterm(service: Service) -> None:
    assert service.result.code == 0, service.result.stderr[-3000:]
    (started,) = events(service.result, "daemon.started")
    assert started["timezone"] == "Europe/Oslo"
    (job,) = started["jobs"]
    assert (job["vendor"], job["schedule"], job["catch_up"]) == (VENDOR, "0 6 * * *", True)
    assert datetime.fromisoformat(job["missed_run_at"]) > service.missed_at
    assert datetime.fromisoformat(job["next_run_at"]) <= datetime.now(UTC)  # at once
    (sync_started,) = events(service.result, "sync.started")
    assert sync_started["trigger"] == "schedule"
    (finished,) = events(service.result, "sync.finished")
    assert (finished["status"], finished["changes_applied"]) == ("succeeded", 2)
    (stopping,) = events(service.result, "daemon.stopping")
    assert stopping["reason"] == "SIGTERM"
    # `sync.finished` is logged just before the run is recorded: it may still be in flight.
    assert [p["run_id"] for p in stopping["in_flight"]] in ([], [finished["run_id"]])
    (stopped,) = events(service.result, "daemon.stopped")
    assert stopped["interrupted"] == []
    names = [e["event"] for e in service.result.log_events()]
    assert names.index("daemon.started") < names.index("sync.started")
    assert names[-1] == "daemon.stopped"


def test_run_records_the_scheduled_run_and_applies_it(service: Service) -> None:
    newest = runs(service.world)[0]
    (finished,) = events(service.result, "sync.finished")
    assert (newest.run_id, newest.trigger, newest.status) == (
        finished["run_id"], "schedule", "succeeded")
    assert newest.counts["changes_applied"] == 2
    assert quantities(service.world, service.customer) == [("PC_PPE-BUSINESS", 12)]


def test_sigterm_lets_the_pass_in_flight_finish(in_flight: InFlight) -> None:
    assert in_flight.result.code == 0, in_flight.result.stderr[-3000:]
    assert in_flight.released_after_signal  # still running when the pass was let go
    (stopping,) = events(in_flight.result, "daemon.stopping")
    (finished,) = events(in_flight.result, "sync.finished")
    assert [p["run_id"] for p in stopping["in_flight"]] == [finished["run_id"]]
    assert finished["status"] == "succeeded"
    assert runs(in_flight.world)[0].status == "succeeded"
    assert not events(in_flight.result, "sync.interrupted")


def test_a_pass_past_the_shutdown_timeout_is_recorded_interrupted(deadline: Deadline) -> None:
    assert deadline.result.code == 0, deadline.result.stderr[-3000:]
    (interrupted,) = events(deadline.result, "sync.interrupted")
    run = runs(deadline.world)[1]  # the newest is the sync after it
    assert (run.run_id, run.trigger, run.status) == (
        interrupted["run_id"], "schedule", "interrupted")
    assert run.message == ("interrupted: the daemon stopped (SIGTERM) and the pass had not "
                           "finished within 0.5 s")
    assert events(deadline.result, "daemon.stopped")[0]["interrupted"] == [run.run_id]


def test_after_a_hard_stop_the_next_sync_takes_the_lock_over(deadline: Deadline) -> None:
    status = parse_json(deadline.status)[0]
    assert status["running"] is None  # its process is gone
    assert status["last_run"]["status"] == "interrupted"
    assert deadline.next_sync.code == 0, deadline.next_sync.stderr[-3000:]
    (taken,) = [e for e in deadline.next_sync.log_events() if e["event"] == "lock.taken_over"]
    assert taken["previous_run_id"] == runs(deadline.world)[1].run_id
    assert "is gone" in taken["reason"]


# == `status` =================================================================================


def test_status_shows_last_run_next_run_and_customers_as_json(service: Service) -> None:
    assert service.status_json.code == 0
    (status,) = parse_json(service.status_json)
    newest = runs(service.world)[0]
    assert status == {
        "vendor": VENDOR, "enabled": True, "schedule": "0 6 * * *",
        "timezone": "Europe/Oslo", "next_run_at": status["next_run_at"],
        "last_run": {
            "run_id": newest.run_id, "trigger": "schedule", "status": "succeeded",
            "started_at": newest.started_at.isoformat(),
            "finished_at": newest.finished_at.isoformat() if newest.finished_at else None,
            "duration_s": status["last_run"]["duration_s"], "counts": dict(newest.counts),
            "message": None,
        },
        "running": None,
        "pending_plan": None,
        "customers": {"mapped": 1, "not_mapped": 1, "detached": 0},
    }
    next_run = datetime.fromisoformat(status["next_run_at"])
    assert timedelta(0) < next_run - datetime.now(UTC) <= timedelta(days=1)
    assert next_run.astimezone(ZONE).hour == 6


def test_status_as_text(service: Service) -> None:
    assert service.status_text.code == 0
    lines = service.status_text.stdout.splitlines()
    newest = runs(service.world)[0]
    assert lines[0] == VENDOR
    assert lines[1].startswith("  last run     ")
    assert "succeeded in " in lines[1]
    assert f"(schedule, run {newest.run_id})" in lines[1]
    assert lines[2] == "  result       2 changes applied, 0 failed; 1 warning, 0 errors"
    assert lines[3].startswith("  next run     ")
    assert lines[3].endswith(" (schedule 0 6 * * *)")
    assert " CET " in lines[3] or " CEST " in lines[3]  # in the daemon's time zone
    assert lines[4:] == ["  running now  no", "  customers    1 mapped, 1 not mapped, 0 detached"]


def test_status_shows_the_pass_running_now(in_flight: InFlight) -> None:
    assert in_flight.status_while_running.code == 0
    (status,) = parse_json(in_flight.status_while_running)
    (finished,) = events(in_flight.result, "sync.finished")
    assert status["running"]["run_id"] == finished["run_id"]
    assert status["running"]["holder"].endswith(f":{in_flight.pid}")
    assert status["last_run"]["status"] == "running"
