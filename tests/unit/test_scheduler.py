"""The service's decisions: crontab meaning, next runs, catch-up, one bad pass, stopping.

Cron and catch-up are pure functions of a clock the tests set. The daemon runs with a manual
scheduler (the test fires each job on a thread of its own, as APScheduler's pool would) and a
fake pass, over a real SQLite state database; one test runs the real APScheduler.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from sync_daemon.errors import ConfigError, LockedError, TransientError
from sync_daemon.scheduler import Daemon, check_cron, missed_run_at, next_run_at
from sync_daemon.settings import Settings, load_settings
from sync_daemon.state import StateStore, SyncRun
from tests.support.cli import write_config

OSLO = ZoneInfo("Europe/Oslo")
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday


def at(text: str) -> datetime:
    """`2026-03-04 06:00` as an aware UTC time."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- crontab, as crontab means it -----------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "zone", "now", "expected"),
    [
        ("0 6 * * *", UTC, "2026-03-04 05:59", "2026-03-04 06:00"),
        ("0 6 * * *", UTC, "2026-03-04 06:00", "2026-03-04 06:00"),  # at or after now
        ("0 6 * * *", UTC, "2026-03-04 06:00:01", "2026-03-05 06:00"),
        ("*/15 * * * *", UTC, "2026-03-04 12:01", "2026-03-04 12:15"),
        ("0 6 * * *", OSLO, "2026-01-10 00:00", "2026-01-10 05:00"),  # CET, UTC+1
        ("0 6 * * *", OSLO, "2026-07-10 00:00", "2026-07-10 04:00"),  # CEST, UTC+2
        # 02:30 does not exist on the night clocks go forward: the run comes an hour late.
        ("30 2 * * *", OSLO, "2026-03-28 12:00", "2026-03-29 01:30"),
        # ... and happens twice on the night they go back (documented in docs/decisions.md).
        ("30 2 * * *", OSLO, "2026-10-25 00:31", "2026-10-25 01:30"),
        # Crontab numbers days from Sunday = 0 (APScheduler 3 alone would take 0 for Monday).
        ("0 6 * * 1-5", UTC, "2026-02-28 12:00", "2026-03-02 06:00"),  # Saturday → Monday
        ("0 6 * * 0", UTC, "2026-03-02 12:00", "2026-03-08 06:00"),  # → Sunday
        ("0 6 * * 7", UTC, "2026-03-02 12:00", "2026-03-08 06:00"),  # 7 is Sunday too
        ("0 6 * * 5-7", UTC, "2026-03-02 12:00", "2026-03-06 06:00"),  # Friday to Sunday
        ("0 6 * * */2", UTC, "2026-03-02 12:00", "2026-03-03 06:00"),  # Sun, Tue, Thu, Sat
        ("0 6 * * 1/2", UTC, "2026-03-03 12:00", "2026-03-04 06:00"),  # Mon, Wed, Fri
        ("0 6 * * SAT,sun", UTC, "2026-03-02 12:00", "2026-03-07 06:00"),
        ("0 6 1 * *", UTC, "2026-03-02 12:00", "2026-04-01 06:00"),
    ],
)
def test_next_run(expression: str, zone: Any, now: str, expected: str) -> None:
    assert next_run_at(expression, zone, at(now)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("0 6 * *", "5-field"),
        ("0 25 * * *", "higher than the maximum"),
        ("x 6 * * *", "Unrecognized expression"),
        ("0 6 * * 8", "0 and 7 are Sunday"),
        ("0 6 * * 5-1", "runs backwards"),
        ("0 6 * * */0", "positive number"),
        # Crontab runs on days matching either field, APScheduler on days matching both.
        ("0 6 1 * 1", "not both"),
    ],
)
def test_a_cron_it_would_misread_is_refused(expression: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_cron(expression)


def test_a_bad_schedule_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path / "sync-daemon.toml",
                        sections(tmp_path, cloudiq={"schedule": "0 5 1 * mon"}))
    with pytest.raises(ConfigError, match=r"sync-daemon\.toml: cloudiq\.schedule: .*not both"):
        load_settings(path)


# -- catch-up: was a scheduled run missed? ---------------------------------------------------


@pytest.mark.parametrize(
    ("last_started", "now", "missed"),
    [
        (None, "2026-03-04 12:00", None),  # never ran: wait for the schedule
        ("2026-03-03 06:00:04", "2026-03-04 05:59", None),  # today's run is still ahead
        ("2026-03-03 06:00:04", "2026-03-04 06:00", "2026-03-04 06:00"),
        ("2026-03-03 06:00:04", "2026-03-04 12:00", "2026-03-04 06:00"),  # down at 06:00
        ("2026-02-25 06:00:04", "2026-03-04 12:00", "2026-02-26 06:00"),  # a week: once
        ("2026-03-04 06:00:00", "2026-03-04 12:00", None),  # that run was the 06:00 one
        ("2026-03-04 07:30:00", "2026-03-04 12:00", None),  # a manual run after it counts
    ],
)
def test_a_missed_run(last_started: str | None, now: str, missed: str | None) -> None:
    started = at(last_started) if last_started else None
    expected = at(missed) if missed else None
    assert missed_run_at("0 6 * * *", UTC, started, at(now)) == expected


def test_a_missed_run_is_judged_in_the_daemon_time_zone() -> None:
    # 06:00 in Oslo is 05:00 UTC in March: a run started 05:30 UTC came after it.
    assert missed_run_at("0 6 * * *", OSLO, at("2026-03-04 05:30"), NOW) is None
    assert missed_run_at("0 6 * * *", UTC, at("2026-03-04 05:30"), NOW) == at("2026-03-04 06:00")


# -- the daemon, with a manual scheduler ------------------------------------------------------


def sections(tmp_path: Path, **overrides: dict[str, Any]) -> dict[str, Any]:
    """Config sections for both vendors (Proofpoint at 06:00, Cloud-iQ at 05:00)."""
    found: dict[str, dict[str, Any]] = {
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "syncro": {"base_url": "https://acme.syncromsp.example/api/v1", "api_token": "t"},
        "daemon": {"shutdown_timeout_s": 5},
        "proofpoint": {"base_url": "https://us1.proofpoint.example/api/v1", "username": "u",
                       "password": "p", "partner_domain": "msp.example",
                       "schedule": "0 6 * * *"},
        "cloudiq": {"client_id": "c", "client_secret": "s", "username": "u", "password": "p",
                    "organization_id": 1, "schedule": "0 5 * * *"},
    }
    for name, values in overrides.items():
        found.setdefault(name, {}).update(values)
    return found


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNC_DAEMON_CONFIG", raising=False)
    for key in ("STATE__URL", "SYNCRO__API_TOKEN", "DAEMON__TIMEZONE"):
        monkeypatch.delenv(f"SYNC_DAEMON_{key}", raising=False)


@dataclass
class ManualJob:
    func: Callable[..., object]
    trigger: Any
    args: list[Any]
    options: dict[str, Any]
    next_run_time: datetime


class ManualScheduler:
    """Fires nothing by itself; `fire()` runs a job on a new thread, like APScheduler's pool."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.jobs: dict[str, ManualJob] = {}
        self.state = "stopped"
        self.on_release: Callable[[], None] = lambda: None  # called when jobs may fire

    @property
    def running(self) -> bool:
        return self.state != "stopped"

    def add_job(self, func: Callable[..., object], trigger: Any, **options: Any) -> ManualJob:
        when = options.get("next_run_time") or trigger.get_next_fire_time(None, self.now)
        job = ManualJob(func, trigger, list(options.pop("args")), options, when)
        self.jobs[options["id"]] = job
        return job

    def get_job(self, job_id: str) -> ManualJob | None:
        return self.jobs.get(job_id)

    def start(self, paused: bool = False) -> None:
        self.state = "paused"
        if not paused:
            self.resume()

    def resume(self) -> None:
        self.state = "running"
        self.on_release()

    def shutdown(self, wait: bool = True) -> None:
        self.state = "stopped"

    def fire(self, job_id: str) -> threading.Thread:
        job = self.jobs[job_id]
        thread = threading.Thread(target=job.func, args=job.args, daemon=True)
        thread.start()
        return thread


@dataclass
class FakePass:
    """Stands in for `run_vendor`: records a run like it, then does what the test says."""

    url: str
    calls: list[tuple[str, str]] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    block: bool = False
    raises: list[BaseException | None] = field(default_factory=list)

    def __call__(self, vendor: str, run_id: str) -> None:
        self.calls.append((vendor, run_id))
        with StateStore.open(self.url) as store, store.transaction() as tx:
            tx.start_run(vendor, "schedule", run_id=run_id)
        self.started.set()
        if self.block:
            self.release.wait(10)
        error = self.raises.pop(0) if self.raises else None
        if error is not None:
            raise error


@dataclass
class Service:
    """A daemon under test, its manual scheduler and its fake pass."""

    daemon: Daemon
    scheduler: ManualScheduler
    run_pass: FakePass
    url: str

    def run(self, run_id: str) -> SyncRun | None:
        with StateStore.open(self.url) as store, store.transaction() as tx:
            return tx.get_run(run_id)


def seed_run(url: str, vendor: str, started_at: datetime) -> None:
    """A finished run of `vendor` that started at `started_at`."""
    with StateStore.open(url, clock=lambda: started_at) as store, store.transaction() as tx:
        run = tx.start_run(vendor, "schedule")
        tx.finish_run(run.run_id, "succeeded", {})


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    made: list[Service] = []

    def make(**overrides: dict[str, Any]) -> Service:
        settings = Settings(**sections(tmp_path, **overrides))
        scheduler = ManualScheduler(NOW)
        run_pass = FakePass(settings.state.url)
        daemon = Daemon(settings, tmp_path / "sync-daemon.toml", clock=lambda: NOW,
                        scheduler=scheduler, run_pass=run_pass)
        made.append(Service(daemon, scheduler, run_pass, settings.state.url))
        return made[-1]

    yield make
    for service in made:
        service.run_pass.release.set()


def test_start_catches_up_once_only_the_vendors_that_missed_a_run(
    make_service: Callable[..., Service],
) -> None:
    service = make_service()
    seed_run(service.url, "proofpoint", at("2026-02-20 06:00:03"))  # down for two weeks
    seed_run(service.url, "cloudiq", at("2026-03-04 05:00:02"))  # ran this morning
    releases: list[list[str]] = []
    with capture_logs() as logs:
        service.scheduler.on_release = lambda: releases.append([e["event"] for e in logs])
        jobs = service.daemon.start()
    proofpoint, cloudiq = service.scheduler.jobs["proofpoint"], service.scheduler.jobs["cloudiq"]
    assert proofpoint.next_run_time == NOW  # one run now, however many were missed
    assert cloudiq.next_run_time == at("2026-03-05 05:00")
    for job in (proofpoint, cloudiq):
        assert job.options | {"next_run_time": None} == {
            "id": job.args[0], "name": f"sync {job.args[0]}", "coalesce": True,
            "max_instances": 1, "misfire_grace_time": None, "replace_existing": True,
            "next_run_time": None}
    assert jobs == [
        {"vendor": "proofpoint", "schedule": "0 6 * * *", "next_run_at": NOW.isoformat(),
         "missed_run_at": "2026-02-21T06:00:00+00:00", "catch_up": True},
        {"vendor": "cloudiq", "schedule": "0 5 * * *",
         "next_run_at": "2026-03-05T05:00:00+00:00", "missed_run_at": None, "catch_up": False},
    ]
    (started,) = [e for e in logs if e["event"] == "daemon.started"]
    assert started["jobs"] == jobs
    assert started["timezone"] == "UTC"
    # Jobs may fire only once `daemon.started` is out, so it comes before any pass's lines.
    assert releases[0] == ["daemon.started"]
    service.daemon.request_stop()
    assert service.daemon.shutdown().clean


def test_without_catch_up_a_missed_run_waits_for_the_schedule(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(daemon={"catch_up": False})
    seed_run(service.url, "proofpoint", at("2026-02-20 06:00:03"))
    jobs = service.daemon.start()
    assert service.scheduler.jobs["proofpoint"].next_run_time == at("2026-03-05 06:00")
    assert jobs[0]["missed_run_at"] == "2026-02-21T06:00:00+00:00"
    assert jobs[0]["catch_up"] is False
    service.daemon.shutdown()


def test_schedules_are_read_in_the_daemon_time_zone(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(daemon={"timezone": "Europe/Oslo"})
    jobs = service.daemon.start()
    # Neither vendor ever ran: no catch-up; 06:00 and 05:00 in Oslo are 05:00 and 04:00 UTC.
    assert [job["next_run_at"] for job in jobs] == ["2026-03-05T05:00:00+00:00",
                                                    "2026-03-05T04:00:00+00:00"]
    service.daemon.shutdown()


def test_only_enabled_vendors_are_scheduled_and_none_is_an_error(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(cloudiq={"enabled": False})
    assert [job["vendor"] for job in service.daemon.start()] == ["proofpoint"]
    service.daemon.shutdown()
    nothing = make_service(cloudiq={"enabled": False}, proofpoint={"enabled": False})
    with pytest.raises(ConfigError, match="no vendor is enabled"):
        nothing.daemon.start()


def test_a_crashing_pass_is_logged_and_the_service_goes_on(
    make_service: Callable[..., Service],
) -> None:
    service = make_service()
    service.run_pass.raises = [RuntimeError("bug in a planner"), None]
    service.daemon.start()
    with capture_logs() as logs:
        service.scheduler.fire("proofpoint").join(10)
        service.scheduler.fire("proofpoint").join(10)  # the next firing runs as usual
    assert [vendor for vendor, _ in service.run_pass.calls] == ["proofpoint", "proofpoint"]
    (crashed,) = [e for e in logs if e["event"] == "sync.crashed"]
    assert crashed["vendor"] == "proofpoint"
    assert crashed["run_id"] == service.run_pass.calls[0][1]
    assert crashed["exc_info"] is True  # rendered as the traceback by the log setup
    service.daemon.request_stop()
    assert service.daemon.shutdown().clean


def test_a_locked_vendor_is_skipped_and_a_failed_pass_is_not_a_crash(
    make_service: Callable[..., Service],
) -> None:
    service = make_service()
    since = at("2026-03-04 11:58")
    service.run_pass.raises = [LockedError("cloudiq", run_id="h" * 32, since=since),
                               TransientError("syncro: GET /products: 503")]
    service.daemon.start()
    with capture_logs() as logs:
        service.scheduler.fire("cloudiq").join(10)
        service.scheduler.fire("cloudiq").join(10)
    (skipped,) = [e for e in logs if e["event"] == "sync.skipped"]
    assert skipped["log_level"] == "warning"
    assert skipped["holder_run_id"] == "h" * 32
    assert "already running since 2026-03-04 11:58:00 UTC" in skipped["reason"]
    assert not [e for e in logs if e["event"] == "sync.crashed"]
    service.daemon.shutdown()


def test_stopping_lets_the_pass_in_flight_finish(make_service: Callable[..., Service]) -> None:
    service = make_service()
    service.run_pass.block = True
    service.daemon.start()
    firing = service.scheduler.fire("proofpoint")
    assert service.run_pass.started.wait(5)
    threading.Timer(0.3, service.run_pass.release.set).start()
    service.daemon.request_stop("SIGTERM")
    with capture_logs() as logs:
        shutdown = service.daemon.shutdown()
    firing.join(5)
    assert shutdown.clean
    assert service.run_pass.release.is_set()  # it returned only once the pass had finished
    assert not service.scheduler.running
    stopping = next(e for e in logs if e["event"] == "daemon.stopping")
    assert stopping["reason"] == "SIGTERM"
    assert [p["vendor"] for p in stopping["in_flight"]] == ["proofpoint"]
    assert [e["interrupted"] for e in logs if e["event"] == "daemon.stopped"] == [[]]


def test_a_pass_still_running_at_the_deadline_is_recorded_interrupted(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(daemon={"shutdown_timeout_s": 0.3})
    service.run_pass.block = True
    service.daemon.start()
    service.scheduler.fire("cloudiq")
    assert service.run_pass.started.wait(5)
    service.daemon.request_stop("SIGTERM")
    begun = time.monotonic()
    shutdown = service.daemon.shutdown()
    assert 0.3 <= time.monotonic() - begun < 2
    (run_id,) = [p.run_id for p in shutdown.abandoned]
    assert not shutdown.clean
    run = service.run(run_id)
    assert run is not None
    assert run.status == "interrupted"
    assert run.message == ("interrupted: the daemon stopped (SIGTERM) and the pass had not "
                           "finished within 0.3 s")


def test_a_second_stop_request_stops_waiting_for_the_pass(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(daemon={"shutdown_timeout_s": 60})
    service.run_pass.block = True
    service.daemon.start()
    service.scheduler.fire("proofpoint")
    assert service.run_pass.started.wait(5)
    service.daemon.request_stop("SIGINT")
    threading.Timer(0.2, service.daemon.request_stop, args=["SIGINT"]).start()
    begun = time.monotonic()
    shutdown = service.daemon.shutdown()
    assert time.monotonic() - begun < 5
    assert [p.vendor for p in shutdown.abandoned] == ["proofpoint"]


def test_a_firing_that_comes_after_the_stop_runs_nothing(
    make_service: Callable[..., Service],
) -> None:
    service = make_service()
    service.daemon.start()
    service.daemon.request_stop()
    assert service.daemon.shutdown().clean
    with capture_logs() as logs:
        service.scheduler.fire("proofpoint").join(5)  # queued in the pool before the stop
    assert service.run_pass.calls == []
    assert [e["reason"] for e in logs if e["event"] == "sync.skipped"] == [
        "the daemon is stopping"]


# -- the real APScheduler -----------------------------------------------------------------


def test_apscheduler_runs_a_missed_run_once_at_start(tmp_path: Path) -> None:
    settings = Settings(**sections(tmp_path, cloudiq={"enabled": False}))
    seed_run(settings.state.url, "proofpoint", datetime.now(UTC) - timedelta(days=3))
    run_pass = FakePass(settings.state.url)
    daemon = Daemon(settings, tmp_path / "sync-daemon.toml", run_pass=run_pass)
    with capture_logs() as logs:
        daemon.start()
        assert run_pass.started.wait(5)
        time.sleep(0.3)  # a second run of the same catch-up would start at once
        daemon.request_stop()
        assert daemon.shutdown().clean
    assert [vendor for vendor, _ in run_pass.calls] == ["proofpoint"]
    events = [e["event"] for e in logs]
    assert events.index("daemon.started") < events.index("daemon.stopping")
    assert "library.log" not in events  # APScheduler had nothing to warn about
