"""`Applier.apply_all`: products first, then recurring invoices side by side, each in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from sync_daemon.apply import Applied, Applier
from sync_daemon.connectors.syncro import ScheduleLine, SyncroClient
from sync_daemon.errors import TransientError
from sync_daemon.plan import Change, CreateLine, CreateProduct, CustomerRef, DeleteLine, UpdateLine
from sync_daemon.state import StateStore
from tests.support.builders import D, line, product

VENDOR = "proofpoint"
RUN = "r" * 32
SCHEDULES = (1, 2, 3, 4)


def changes_for(schedule_id: int) -> list[Change]:
    ref = CustomerRef(f"org-{schedule_id}", f"Org {schedule_id}", f"Customer {schedule_id}")
    return [DeleteLine(ref, schedule_id, 100 + schedule_id, "OLD", D(3), "package changed"),
            CreateLine(ref, schedule_id, "A", None, "PC_A", 5, D("3.10"), D("1.55"), True, (),
                       "new for this customer"),
            UpdateLine(ref, schedule_id, 200 + schedule_id, "B", "count", D(4),
                       quantity_after=6)]


PLAN: list[Change] = [
    *changes_for(1),
    CreateProduct("A", "PC_A", "Package A", D("1.55"), D("3.10"), True, "new SKU"),
    *(change for schedule_id in SCHEDULES[1:] for change in changes_for(schedule_id)),
]


@dataclass
class SlowSyncro:
    """Records every write (schedule, what) and how many were in flight at once."""

    failing_schedule: int | None = None
    writes: list[tuple[int | None, str]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_id: int = 900

    def _write(self, schedule_id: int | None, what: str) -> int:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.writes.append((schedule_id, what))
            self.next_id += 1
            made = self.next_id
        time.sleep(0.02)  # a round trip
        with self.lock:
            self.in_flight -= 1
        if schedule_id is not None and schedule_id == self.failing_schedule:
            raise TransientError("syncro: unreachable")
        return made

    def create_product(self, draft: Any) -> Any:
        return product(self._write(None, "product"), draft.name)

    def create_schedule_line(self, schedule_id: int, draft: Any, *,
                             known_line_ids: Any = ()) -> ScheduleLine:
        return line(self._write(schedule_id, "create"), schedule_id, draft.product_id)

    def update_schedule_line(self, schedule_id: int, line_id: int, **_: Any) -> None:
        self._write(schedule_id, "update")

    def delete_schedule_line(self, schedule_id: int, line_id: int) -> None:
        self._write(schedule_id, "delete")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        with opened.transaction() as tx:
            tx.start_run(VENDOR, "manual", run_id=RUN)
        yield opened


def apply_all(store: StateStore, syncro: SlowSyncro, *, workers: int,
              progress: list[tuple[int, int]] | None = None) -> list[Applied]:
    with store.transaction() as tx:  # a run of its own: level writes are keyed by run
        run_id = tx.start_run(VENDOR, "manual").run_id
    applier = Applier(cast(SyncroClient, syncro), store, run_id=run_id, vendor=VENDOR,
                      products={})
    outcomes: list[Applied] = []
    applier.apply_all(PLAN, outcomes, workers=workers,
                      progress=None if progress is None else
                      lambda done, total: progress.append((done, total)))
    return outcomes


def test_products_go_first_then_each_invoice_in_plan_order(store: StateStore) -> None:
    syncro = SlowSyncro()
    progress: list[tuple[int, int]] = []
    outcomes = apply_all(store, syncro, workers=4, progress=progress)

    assert syncro.writes[0] == (None, "product")
    for schedule_id in SCHEDULES:
        assert [what for s, what in syncro.writes if s == schedule_id] == [
            "delete", "create", "update"]
    assert [o.change for o in outcomes] == PLAN  # outcomes in plan order
    assert all(o.error is None for o in outcomes)
    assert progress == [(done, len(PLAN)) for done in range(1, len(PLAN) + 1)]
    with store.transaction() as tx:
        assert len(tx.list_audit(limit=100)) == len(PLAN)


def test_invoices_overlap_up_to_the_workers(store: StateStore, tmp_path: Path) -> None:
    together, alone = SlowSyncro(), SlowSyncro()
    apply_all(store, together, workers=4)
    with StateStore.open(f"sqlite:///{tmp_path / 'other.db'}") as other:
        apply_all(other, alone, workers=1)
    assert together.most_in_flight == 4
    assert alone.most_in_flight == 1


def test_a_failure_still_reports_what_was_applied(store: StateStore) -> None:
    syncro = SlowSyncro(failing_schedule=3)
    applier = Applier(cast(SyncroClient, syncro), store, run_id=RUN, vendor=VENDOR,
                      products={})
    outcomes: list[Applied] = []
    with pytest.raises(TransientError):
        applier.apply_all(PLAN, outcomes, workers=4)
    applied = {o.change for o in outcomes}
    assert PLAN[3] in applied  # the product
    assert not any(isinstance(c, DeleteLine) and c.schedule_id == 3 for c in applied)
    assert [o.change for o in outcomes] == [c for c in PLAN if c in applied]
