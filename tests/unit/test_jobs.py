"""`run_vendor` and the run lock: a pass holds it throughout, a refused pass leaves no trace,
and a pass that ends in a bug or Ctrl-C is recorded as ended, its lock released.

In process, over a SQLite state database, with a vendor source that stops the pass before
anything would reach Syncro.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sync_daemon.app import App
from sync_daemon.errors import LockedError, TransientError
from sync_daemon.jobs import run_vendor
from sync_daemon.settings import Settings
from sync_daemon.state import RunLock
from sync_daemon.vendor import Snapshot, VendorSource

VENDOR = "proofpoint"


@dataclass
class StoppingSource:
    """A vendor source whose fetch looks at the run lock, then raises what it is given."""

    app: App | None = None
    error: BaseException = field(default_factory=lambda: TransientError("vendor is down"))
    seen: list[RunLock | None] = field(default_factory=list)
    name: str = VENDOR

    def fetch(self) -> Snapshot:
        assert self.app is not None
        self.seen.append(self.app.store.lock_holder(VENDOR))
        raise self.error

    def check(self) -> str:
        return "fake"

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class FakeSourceApp(App):
    """The real App, except for the vendor source."""

    fake: StoppingSource = field(default_factory=StoppingSource)

    def source(self, vendor: str) -> VendorSource:
        return self.fake


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[[], FakeSourceApp]]:
    settings = Settings(
        state={"url": f"sqlite:///{tmp_path / 'state.db'}"},
        syncro={"base_url": "https://acme.syncromsp.example/api/v1", "api_token": "t"},
    )
    made: list[FakeSourceApp] = []

    def make() -> FakeSourceApp:
        app = FakeSourceApp(settings=settings, config_path=tmp_path / "sync-daemon.toml")
        app.fake.app = app
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


def test_a_pass_holds_the_lock_under_its_own_run_id(make_app: Callable[[], FakeSourceApp]) -> None:
    app = make_app()
    with pytest.raises(TransientError):
        run_vendor(app, VENDOR, trigger="schedule", run_id="a" * 32)
    (holder,) = app.fake.seen
    assert holder is not None
    assert holder.run_id == "a" * 32
    assert app.store.lock_holder(VENDOR) is None  # released at the end
    with app.store.transaction() as tx:
        run = tx.get_run("a" * 32)
    assert run is not None
    assert (run.trigger, run.status, run.message) == ("schedule", "failed", "vendor is down")


def test_a_refused_pass_does_nothing_and_records_nothing(
    make_app: Callable[[], FakeSourceApp],
) -> None:
    app, other = make_app(), make_app()
    with app.store.run_lock(VENDOR, "h" * 32), pytest.raises(LockedError) as refused:
        run_vendor(other, VENDOR)
    assert refused.value.run_id == "h" * 32
    assert other.fake.seen == []  # the vendor was never read
    with other.store.transaction() as tx:
        assert tx.list_runs() == []


def test_a_dry_run_takes_no_lock(make_app: Callable[[], FakeSourceApp]) -> None:
    app, other = make_app(), make_app()
    with app.store.run_lock(VENDOR, "h" * 32), pytest.raises(TransientError):
        run_vendor(other, VENDOR, dry_run=True)  # got as far as reading the vendor
    assert [lock.run_id if lock else None for lock in other.fake.seen] == ["h" * 32]


@pytest.mark.parametrize(
    ("error", "status"),
    [(RuntimeError("a bug"), "failed"), (KeyboardInterrupt(), "interrupted")],
)
def test_a_pass_ended_by_a_bug_or_ctrl_c_is_recorded_and_lets_go(
    make_app: Callable[[], FakeSourceApp], error: BaseException, status: str,
) -> None:
    app = make_app()
    app.fake.error = error
    with pytest.raises(type(error)):
        run_vendor(app, VENDOR, run_id="b" * 32)
    with app.store.transaction() as tx:
        run = tx.get_run("b" * 32)
    assert run is not None
    assert run.status == status
    assert run.message is not None
    assert run.message.startswith(type(error).__name__)
    assert app.store.lock_holder(VENDOR) is None
