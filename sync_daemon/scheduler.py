"""`sync-daemon run`, the long-running service; the only module that imports APScheduler.

One job per enabled vendor fires on the vendor's `schedule` (crontab, read in `[daemon]
timezone`) and runs one pass, `run_vendor(..., trigger="schedule")`, with a fresh `App`. A run
the service missed while it was down runs once at start-up (`[daemon] catch_up`). SIGTERM or
SIGINT stops new work and gives the pass in flight `shutdown_timeout_s` to finish.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from sync_daemon import logs
from sync_daemon.app import App
from sync_daemon.connectors.http import RateLimiter
from sync_daemon.errors import ConfigError, InvariantError, LockedError, SyncError
from sync_daemon.jobs import run_vendor
from sync_daemon.settings import Settings
from sync_daemon.state import StateStore, utc_now

log = logs.get_logger()
Clock = Callable[[], datetime]
PassRunner = Callable[[str, str], object]  # (vendor, run_id): one pass; raises what it raises

_TICK_S = 0.1  # how often the main thread looks for a stop request and at passes in flight
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbers them 0-6 (and 7)


# -- cron: pure functions of the expression, the time zone and the clock ------------------


def check_cron(expression: str) -> None:
    """Raise `ValueError`, saying what is wrong, unless `expression` is a crontab we run."""
    _trigger(expression, UTC)


def next_run_at(expression: str, zone: tzinfo, now: datetime) -> datetime:
    """When the cron, read in `zone`, next fires at or after `now`; in UTC."""
    fire: datetime = _trigger(expression, zone).get_next_fire_time(None, now)
    return fire.astimezone(UTC)


def missed_run_at(expression: str, zone: tzinfo, last_started_at: datetime | None,
                  now: datetime) -> datetime | None:
    """The first time the cron fired after the last run started and not after `now`.

    That is a run the service missed (it was down, or the pass could not start); None when
    none was missed, or when the vendor never ran (a first start does not sync at once).
    """
    if last_started_at is None:
        return None
    after = last_started_at + timedelta(microseconds=1)
    fire: datetime | None = _trigger(expression, zone).get_next_fire_time(None, after)
    return fire.astimezone(UTC) if fire is not None and fire <= now else None


def _trigger(expression: str, zone: tzinfo) -> CronTrigger:
    """APScheduler's trigger for a crontab expression, with crontab's meaning kept."""
    fields = expression.split()
    if len(fields) != len(("minute", "hour", "day", "month", "day_of_week")):
        raise ValueError("expected a 5-field cron expression such as '0 6 * * *'")
    minute, hour, day, month, day_of_week = fields
    if not day.startswith("*") and not day_of_week.startswith("*"):
        # crontab runs on days matching either field; APScheduler only on days matching both.
        raise ValueError("restrict the day of the month or the day of the week, not both")
    return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                       day_of_week=_day_of_week(day_of_week), timezone=zone)


def _day_of_week(field: str) -> str:
    """Crontab's day-of-week field in APScheduler 3's terms, as day names.

    Crontab numbers Sunday 0 (and 7); APScheduler 3 takes 0 for Monday (its issue 286), so
    every day is spelled out by name: `1-5` becomes `mon,tue,wed,thu,fri`.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, slash, step_text = part.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            raise ValueError(f"day of week {part!r}: the step must be a positive number")
        step = int(step_text) if slash else 1
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            start, _, end = span.partition("-")
            first, last = _day(start), _day(end)
        else:
            first = _day(span)
            last = 6 if slash else first  # `1/2`: Monday to Saturday, every other day
        if first > last:
            raise ValueError(f"day of week {part!r}: the range runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_DAYS[day] for day in sorted(days))


def _day(token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token.lower() in _DAYS:
        return _DAYS.index(token.lower())
    raise ValueError(f"day of week {token!r}: expected 0-7 (0 and 7 are Sunday) or sun-sat")


# -- the service ---------------------------------------------------------------------------


class JobScheduler(Protocol):
    """The part of APScheduler's scheduler the daemon uses; tests may pass a manual one."""

    @property
    def running(self) -> bool:
        """Whether it was started and not shut down."""

    def add_job(self, func: Callable[..., object], trigger: Any, **options: Any) -> Any:
        """Schedule `func` on `trigger` (APScheduler's `add_job` options)."""

    def get_job(self, job_id: str) -> Any:
        """The job with this id (its `next_run_time`), or None."""

    def start(self, paused: bool = False) -> None:
        """Start, optionally paused until `resume()`."""

    def resume(self) -> None:
        """Start firing jobs."""

    def shutdown(self, wait: bool = True) -> None:
        """Fire nothing more; with `wait`, also wait for jobs in flight."""


@dataclass(frozen=True, slots=True)
class Pass:
    """A pass the daemon is running: its vendor, run id and start (monotonic seconds)."""

    vendor: str
    run_id: str
    started: float


@dataclass(frozen=True, slots=True)
class Shutdown:
    """How the service stopped: the passes still running at the deadline (now `interrupted`)."""

    abandoned: tuple[Pass, ...] = ()

    @property
    def clean(self) -> bool:
        """True when no pass was left running (the process may exit normally)."""
        return not self.abandoned


class Daemon:
    """Schedules and runs passes until told to stop; `serve()` is `sync-daemon run`.

    `clock` decides catch-up, `scheduler` (not yet started) replaces the APScheduler
    BackgroundScheduler, and `run_pass(vendor, run_id)` replaces the real pass: all for tests.
    """

    def __init__(self, settings: Settings, config_path: Path, *, clock: Clock = utc_now,
                 scheduler: JobScheduler | None = None, run_pass: PassRunner | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._config_path = config_path
        self._clock = clock
        self._monotonic = monotonic
        self._vendors = {name: section.schedule
                         for name, section in settings.vendors().items() if section.enabled}
        self._scheduler = scheduler or _background_scheduler(settings, len(self._vendors))
        self._run_pass = run_pass or self._run_vendor
        # Passes of several vendors may run at once; together they keep Syncro's limit.
        self._syncro_limiter = RateLimiter(settings.syncro.requests_per_minute)
        self._lock = threading.Lock()
        self._in_flight: dict[str, Pass] = {}
        self._stopping = False
        self._stop_requests = 0
        self._stop_reason = "requested"
        self._store: StateStore | None = None

    def serve(self) -> Shutdown:
        """Start, run until SIGTERM or SIGINT (a second one cuts the wait short), stop."""
        handled = (signal.SIGTERM, signal.SIGINT)
        previous = {number: signal.signal(number, self._on_signal) for number in handled}
        try:
            self.start()
            while not self._stop_requests:
                time.sleep(_TICK_S)
            return self.shutdown()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def start(self) -> list[dict[str, Any]]:
        """Open the state database, add one job per enabled vendor and start the scheduler.

        Returns the jobs as logged in `daemon.started`.

        Raises:
            ConfigError: no vendor is enabled, or the state database cannot be opened.
        """
        if not self._vendors:
            raise ConfigError(f"{self._config_path}: no vendor is enabled; nothing to schedule")
        self._store = StateStore.open(self._settings.state.url)
        daemon, now = self._settings.daemon, self._clock()
        missed: dict[str, datetime | None] = {}
        for vendor, schedule in self._vendors.items():
            with self._store.transaction() as tx:
                last = next(iter(tx.list_runs(vendor, limit=1)), None)
            missed[vendor] = missed_run_at(schedule, daemon.zone,
                                           last.started_at if last else None, now)
            catch_up = {"next_run_time": now} if missed[vendor] and daemon.catch_up else {}
            self._scheduler.add_job(
                self._job, _trigger(schedule, daemon.zone), args=[vendor], id=vendor,
                name=f"sync {vendor}", coalesce=True, max_instances=1,
                misfire_grace_time=None, replace_existing=True, **catch_up)
        # Paused until logged, so `daemon.started` comes before any pass's lines.
        self._scheduler.start(paused=True)
        jobs = [{"vendor": vendor, "schedule": schedule,
                 "next_run_at": self._next_run_time(vendor),
                 "missed_run_at": when.isoformat() if when else None,
                 "catch_up": bool(when and daemon.catch_up)}
                for (vendor, schedule), when in zip(self._vendors.items(), missed.values(),
                                                    strict=True)]
        log.info("daemon.started", timezone=daemon.timezone, catch_up=daemon.catch_up,
                 shutdown_timeout_s=daemon.shutdown_timeout_s, jobs=jobs)
        self._scheduler.resume()
        return jobs

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the service to stop; asking again while it stops stops waiting for passes.

        Only counts and records: a signal handler may call it whatever the thread holds.
        """
        self._stop_reason = reason
        self._stop_requests += 1

    def shutdown(self) -> Shutdown:
        """Take no new work, wait up to `shutdown_timeout_s` for the passes in flight, and
        record the ones still running then as `interrupted`."""
        with self._lock:
            self._stopping = True
            running = list(self._in_flight.values())
        timeout = self._settings.daemon.shutdown_timeout_s
        log.info("daemon.stopping", reason=self._stop_reason, timeout_s=timeout,
                 in_flight=[{"vendor": p.vendor, "run_id": p.run_id} for p in running])
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)  # no new firings; passes in flight go on
        deadline, asked = self._monotonic() + timeout, self._stop_requests
        while True:
            with self._lock:
                left = tuple(self._in_flight.values())
            if not left or self._monotonic() >= deadline or self._stop_requests > asked:
                break
            time.sleep(_TICK_S)
        for abandoned in left:
            self._interrupt(abandoned, timeout)
        if self._store is not None:
            self._store.close()
        log.info("daemon.stopped", interrupted=[p.run_id for p in left])
        return Shutdown(left)

    # -- jobs ------------------------------------------------------------------------------

    def _job(self, vendor: str) -> None:
        """One scheduled pass. Nothing may escape it: one bad run must not end the service."""
        run_id = uuid.uuid4().hex
        with self._tracked(vendor, run_id) as accepted:
            if not accepted:
                log.info("sync.skipped", vendor=vendor, reason="the daemon is stopping")
                return
            try:
                self._run_pass(vendor, run_id)
            except LockedError as locked:
                log.warning("sync.skipped", vendor=vendor, reason=str(locked),
                            holder_run_id=locked.run_id)
            except SyncError:
                return  # `run_vendor` logged `sync.failed` and recorded the run
            except Exception:  # the daemon's one catch-all: a bug here must not end the service
                log.exception("sync.crashed", vendor=vendor, run_id=run_id)

    def _run_vendor(self, vendor: str, run_id: str) -> None:
        app = App(settings=self._settings, config_path=self._config_path,
                  syncro_limiter=self._syncro_limiter)
        try:
            run_vendor(app, vendor, trigger="schedule", run_id=run_id)
        finally:
            app.close()

    @contextmanager
    def _tracked(self, vendor: str, run_id: str) -> Iterator[bool]:
        """Register a pass as in flight, unless the daemon is stopping (yields False)."""
        with self._lock:
            if self._stopping:
                accepted = False
            else:
                accepted = True
                self._in_flight[run_id] = Pass(vendor, run_id, self._monotonic())
        try:
            yield accepted
        finally:
            with self._lock:
                self._in_flight.pop(run_id, None)

    def _interrupt(self, abandoned: Pass, timeout: float) -> None:
        assert self._store is not None
        message = (f"interrupted: the daemon stopped ({self._stop_reason}) and the pass had "
                   f"not finished within {timeout:g} s")
        try:
            with self._store.transaction() as tx:
                tx.finish_run(abandoned.run_id, "interrupted", {}, message)
        except InvariantError:
            return  # it finished just now, or never got as far as recording itself
        except SyncError as error:
            log.error("sync.interrupt_failed", vendor=abandoned.vendor,
                      run_id=abandoned.run_id, error=str(error))
            return
        log.warning("sync.interrupted", vendor=abandoned.vendor, run_id=abandoned.run_id,
                    running_s=round(self._monotonic() - abandoned.started, 3))

    def _next_run_time(self, vendor: str) -> str | None:
        job = self._scheduler.get_job(vendor)
        when: datetime | None = job.next_run_time if job is not None else None
        return when.astimezone(UTC).isoformat() if when is not None else None

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self.request_stop(signal.Signals(number).name)


def _background_scheduler(settings: Settings, vendors: int) -> JobScheduler:
    """A scheduler thread, one worker per vendor, its log lines going through structlog."""
    scheduler: JobScheduler = BackgroundScheduler(
        timezone=settings.daemon.zone,
        executors={"default": ThreadPoolExecutor(max_workers=max(vendors, 1))},
        logger=logs.library_logger("apscheduler"),
    )
    return scheduler
