"""Independent Syncro reads overlap (issue 7): the results and errors are those of reading one
by one, several requests are in flight at once, and log context follows every request."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator

import httpx
import pytest

from sync_daemon.connectors.http import overlapped
from sync_daemon.connectors.syncro import SyncroClient
from sync_daemon.errors import ConfigError

BASE_URL = "https://acme.syncromsp.com/api/v1"
TOKEN = "unit-test-token"  # a fake credential for a fake server
RUN_ID: contextvars.ContextVar[str] = contextvars.ContextVar("run_id", default="")


def test_overlapped_keeps_the_order_and_overlaps_up_to_the_workers() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def call(item: int) -> int:
        if item < 3:
            barrier.wait()  # only returns when three calls are in flight together
        return item * 10

    assert overlapped(call, range(8), workers=3) == [0, 10, 20, 30, 40, 50, 60, 70]


def test_overlapped_raises_the_first_failure_in_item_order() -> None:
    def call(item: int) -> int:
        if item in (2, 5):
            raise ValueError(f"item {item}")
        return item

    with pytest.raises(ValueError, match="item 2"):
        overlapped(call, range(8), workers=4)


def test_overlapped_runs_each_call_in_the_callers_context() -> None:
    RUN_ID.set("run-7")
    assert overlapped(lambda _: RUN_ID.get(), range(4), workers=2) == ["run-7"] * 4


def test_one_worker_or_one_item_runs_inline() -> None:
    caller = threading.get_ident()
    assert overlapped(lambda _: threading.get_ident(), range(3), workers=1) == [caller] * 3
    assert overlapped(lambda _: threading.get_ident(), [1], workers=4) == [caller]


def _schedule(schedule_id: int) -> dict[str, object]:
    return {"schedule": {"id": schedule_id, "customer_id": 1500000 + schedule_id,
                         "name": "Monthly", "frequency": "Monthly", "paused": False,
                         "next_run": "2026-12-01", "lines": [
                             {"id": 88000000 + schedule_id, "product_id": 15000001,
                              "quantity": "5.0", "retail_cents": 420, "cost_cents": 210}]}}


@pytest.fixture
def in_flight() -> Iterator[tuple[SyncroClient, dict[str, int]]]:
    """A client whose server answers schedules 1-9 (4 is gone) and records the most requests
    it held at once."""
    lock = threading.Lock()
    state = {"now": 0, "most": 0}
    gate = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            if state["now"] >= 4:
                gate.set()
        gate.wait(timeout=2)  # hold the first requests until four are in flight
        with lock:
            state["now"] -= 1
        schedule_id = int(request.url.path.rsplit("/", 1)[1])
        if schedule_id == 4:
            return httpx.Response(404)
        return httpx.Response(200, json=_schedule(schedule_id))

    client = SyncroClient.connect(BASE_URL, TOKEN, requests_per_minute=100_000,
                                  transport=httpx.MockTransport(handler))
    yield client, state
    client.close()


def test_get_schedules_reads_each_once_in_flight_together_and_gone_is_none(
    in_flight: tuple[SyncroClient, dict[str, int]],
) -> None:
    client, server = in_flight
    schedules = client.get_schedules([9, 1, 4, 2, 3, 5, 6, 7, 8])
    assert list(schedules) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert schedules[4] is None
    found = schedules[7]
    assert found is not None
    assert found.id == 7
    assert found.lines[0].id == 88000007
    assert client.api.stats.reads == 9
    assert server["most"] == client.concurrency == 4


def test_get_schedules_fails_like_a_single_read() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/3"):
            return httpx.Response(401, json={"error": "Not authorized."})
        return httpx.Response(200, json=_schedule(int(request.url.path.rsplit("/", 1)[1])))

    with SyncroClient.connect(BASE_URL, TOKEN, requests_per_minute=100_000,
                              transport=httpx.MockTransport(handler)) as client, \
            pytest.raises(ConfigError, match="Recurring Invoices - List"):
        client.get_schedules(range(1, 7))
