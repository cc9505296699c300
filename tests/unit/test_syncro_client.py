"""SyncroClient behaviours a cassette cannot express: network faults, give-ups, concurrency.

Requests go to an `httpx.MockTransport` (never mixed with vcrpy, which patches it too); time is
virtual, so retries and the rate limiter record their waits instead of sleeping.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sync_daemon.connectors.http import RateLimiter
from sync_daemon.connectors.syncro import LineDraft, ProductDraft, SyncroClient
from sync_daemon.errors import AmbiguousWriteError, InvariantError, NotFoundError, TransientError

BASE_URL = "https://acme.syncromsp.com/api/v1"
TOKEN = "unit-test-token"  # a fake credential for a fake server

Handler = Callable[[httpx.Request], httpx.Response]


class VirtualClock:
    """Monotonic time that moves only when a thread sleeps or spends time; one line per thread.

    Each thread keeps its own timeline, so a thread that sleeps does not push the others'
    clocks: like real threads sleeping side by side.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        value: float = getattr(self._local, "now", 0.0)
        return value

    def advance(self, seconds: float) -> None:
        self._local.now = self.now() + seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
        self.advance(seconds)


@dataclass
class Harness:
    """A client talking to `handler`, the requests it sent and the clock it waited on."""

    client: SyncroClient
    clock: VirtualClock
    requests: list[httpx.Request] = field(default_factory=list)

    def sent(self, method: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method]


@pytest.fixture
def connect() -> Iterator[Callable[..., Harness]]:
    made: list[SyncroClient] = []

    def make(handler: Handler, *, max_attempts: int = 6,
             requests_per_minute: int = 180) -> Harness:
        clock = VirtualClock()
        requests: list[httpx.Request] = []
        lock = threading.Lock()

        def recording(request: httpx.Request) -> httpx.Response:
            with lock:
                requests.append(request)
            return handler(request)

        client = SyncroClient.connect(
            BASE_URL, TOKEN, transport=httpx.MockTransport(recording), sleep=clock.sleep,
            clock=clock.now, max_attempts=max_attempts, requests_per_minute=requests_per_minute,
        )
        made.append(client)
        return Harness(client=client, clock=clock, requests=requests)

    yield make
    for client in made:
        client.close()


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body)


def product(id: int, name: str) -> dict[str, Any]:  # noqa: A002  Syncro's field name
    return {"id": id, "name": name, "description": name, "price_cost": 1.5,
            "price_retail": 3.0, "taxable": True, "disabled": False, "maintain_stock": False}


def line(id: int, product_id: int) -> dict[str, Any]:  # noqa: A002  Syncro's field name
    return {"id": id, "schedule_id": 4100002, "product_id": product_id,
            "name": "Proofpoint Essentials Business Plus", "quantity": "5.0",
            "retail_cents": 420, "cost_cents": 210, "taxable": True}


def schedule(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schedule": {"id": 4100002, "customer_id": 1500002, "name": "Monthly",
                         "frequency": "Monthly", "paused": False, "next_run": "2026-12-01",
                         "lines": lines}}


DRAFT = ProductDraft(name="PC_PPE-ADVANCED", description="Proofpoint Essentials Advanced",
                     price_cost=Decimal("2.40"), price_retail=Decimal("4.80"), taxable=True)
LINE_DRAFT = LineDraft(product_id=15000002, name="Proofpoint Essentials Business Plus",
                       quantity=Decimal(5), retail=Decimal("4.20"), cost=Decimal("2.10"),
                       taxable=True)


# ------------------------------------------------------------------------ network faults


def test_a_read_timeout_on_a_get_is_retried(connect: Callable[..., Harness]) -> None:
    answers: list[httpx.Response | Exception] = [httpx.ReadTimeout("timed out"),
                                                 ok(schedule([line(88000001, 15000001)]))]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    h = connect(handler)
    assert [x.id for x in h.client.get_schedule(4100002).lines] == [88000001]
    assert len(h.sent("GET")) == 2
    [wait] = h.clock.sleeps
    assert 1 <= wait <= 2


def test_a_read_timeout_on_a_creating_post_reads_back_instead_of_posting_again(
    connect: Callable[..., Harness],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            raise httpx.ReadTimeout("timed out")  # Syncro created it; the answer was lost
        assert request.url.params["name"] == "PC_PPE-ADVANCED"
        return ok({"products": [product(15000007, "PC_PPE-ADVANCED-PLUS"),
                                product(15000008, "PC_PPE-ADVANCED")],
                   "meta": {"total_pages": 1, "total_entries": 2, "per_page": 25, "page": 1}})

    h = connect(handler)
    assert h.client.create_product(DRAFT).id == 15000008
    assert len(h.sent("POST")) == 1
    assert len(h.sent("GET")) == 1


def test_a_read_timeout_on_a_line_post_reads_the_schedule_instead_of_posting_again(
    connect: Callable[..., Harness],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            raise httpx.ReadTimeout("timed out")
        return ok(schedule([line(88000001, 15000002), line(88000004, 15000002)]))

    h = connect(handler)
    landed = h.client.create_schedule_line(4100002, LINE_DRAFT, known_line_ids={88000001})
    assert landed.id == 88000004
    assert len(h.sent("POST")) == 1


@pytest.mark.parametrize("failure", [httpx.ReadTimeout("timed out"),
                                     httpx.RemoteProtocolError("reset"),
                                     httpx.Response(502, text="Bad Gateway"),
                                     httpx.Response(504, text="Gateway Timeout")])
def test_an_unanswered_post_not_found_when_read_back_is_not_sent_again(
    connect: Callable[..., Harness], failure: httpx.Response | Exception,
) -> None:
    # It may still be on its way into Syncro: a second POST could land beside it.
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            if isinstance(failure, Exception):
                raise failure
            return failure
        return ok(schedule([line(88000001, 15000002)]))

    h = connect(handler)
    with pytest.raises(AmbiguousWriteError, match="not sent again: the next sync settles it"):
        h.client.create_schedule_line(4100002, LINE_DRAFT, known_line_ids={88000001})
    assert [r.method for r in h.requests] == ["POST", "GET"]


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"),
                                     httpx.ConnectTimeout("no route")])
def test_a_post_that_never_left_is_simply_sent_again(
    connect: Callable[..., Harness], failure: Exception,
) -> None:
    answers: list[httpx.Response | Exception] = [
        failure, ok({"schedule_line_item": line(88000004, 15000002)})]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    h = connect(handler)
    assert h.client.create_schedule_line(4100002, LINE_DRAFT, known_line_ids=()).id == 88000004
    assert len(h.sent("POST")) == 2
    assert h.sent("GET") == []  # nothing to reconcile: the first POST never reached Syncro
    assert h.sent("POST")[0].content == h.sent("POST")[1].content


# --------------------------------------------------------------------------- giving up


def test_retries_exhausted_fail_with_a_transient_error_naming_the_request(
    connect: Callable[..., Harness],
) -> None:
    h = connect(lambda _request: httpx.Response(503, text="Service Unavailable"),
                max_attempts=3)
    with pytest.raises(TransientError) as caught:
        h.client.list_customers()
    assert str(caught.value) == "syncro: GET /customers: server error 503: Service Unavailable"
    assert len(h.requests) == 3
    first, second = h.clock.sleeps
    assert 1 <= first <= 2
    assert 2 <= second <= 3


def test_a_create_that_never_lands_gives_up_as_ambiguous_after_three_tries(
    connect: Callable[..., Harness],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(500, json={"status": 500, "error": "Internal Server Error"})
        return ok({"products": []})

    h = connect(handler)
    with pytest.raises(AmbiguousWriteError, match="creating product 'PC_PPE-ADVANCED' kept"):
        h.client.create_product(DRAFT)
    assert [r.method for r in h.requests] == ["POST", "GET"] * 3


# --------------------------------------------------------------------- broken invariants


def test_a_repeated_page_is_an_invariant_error(connect: Callable[..., Harness]) -> None:
    # A server that ignores `page` and has no meta would otherwise be read forever.
    h = connect(lambda _request: ok({"customers": [{"id": 1500001, "business_name": "Acme"}]}))
    with pytest.raises(InvariantError, match="page 2 repeated page 1"):
        h.client.list_customers()
    assert len(h.requests) == 2


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.create_schedule_line(
            4100002, LineDraft(product_id=15000002, name="x", quantity=Decimal(1),
                               retail=Decimal("4.205"), cost=Decimal("2.10"), taxable=True),
            known_line_ids=()), id="create-retail"),
        pytest.param(lambda c: c.update_schedule_line(4100002, 88000002, cost=Decimal("0.001")),
                     id="update-cost"),
    ],
)
def test_a_sub_cent_amount_is_an_invariant_error_before_anything_is_sent(
    connect: Callable[..., Harness], call: Callable[[SyncroClient], object],
) -> None:
    h = connect(lambda _request: ok({}))
    with pytest.raises(InvariantError, match="fractions of a cent"):
        call(h.client)
    assert h.requests == []


# ------------------------------------------------------------------- paging and pacing


def test_paging_stops_at_the_last_page_meta_announces(connect: Callable[..., Harness]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])  # would answer any page: meta must stop it
        return ok({"products": [product(15000000 + 2 * page - 1, f"P{page}a"),
                                product(15000000 + 2 * page, f"P{page}b")],
                   "meta": {"total_pages": 2, "total_entries": 4, "per_page": 2,
                            "page": page}})

    h = connect(handler)
    assert [p.id for p in h.client.list_products()] == [15000001, 15000002, 15000003, 15000004]
    assert [r.url.params["page"] for r in h.requests] == ["1", "2"]


def test_the_rate_limiter_never_admits_more_than_the_limit_into_any_minute_across_threads(
    connect: Callable[..., Harness],
) -> None:
    limit, calls, threads = 30, 120, 8
    arrivals: list[float] = []
    h: Harness

    def handler(request: httpx.Request) -> httpx.Response:
        arrivals.append(h.clock.now())  # list.append is atomic
        h.clock.advance(0.05)  # the request takes a little time on its thread
        return ok({"user_id": 3001})

    h = connect(handler, requests_per_minute=limit)
    with ThreadPoolExecutor(threads) as pool:
        users = list(pool.map(lambda _n: h.client.me(), range(calls)))
    assert len(users) == calls
    arrivals.sort()
    # Any limit + 1 consecutive arrivals span at least a minute: no window holds more.
    assert min(arrivals[i + limit] - arrivals[i] for i in range(calls - limit)) >= 60
    # ... and the limiter is not needlessly slow either: even spacing, no more.
    assert arrivals[-1] <= (calls - 1) * 60 / limit * (1 + RateLimiter.MARGIN) + 1e-6


# ------------------------------------------------------- transient faults, shared limiter


def test_a_200_html_page_on_a_read_is_retried_like_any_transient_fault(
    connect: Callable[..., Harness],
) -> None:
    answers = [httpx.Response(200, text="<html><body>Bad gateway</body></html>"),
               ok({"user_id": 3001, "subdomain": "acme"})]
    h = connect(lambda _request: answers.pop(0))
    assert h.client.me().user_id == 3001
    assert len(h.requests) == 2


def test_a_refused_long_retry_after_does_not_make_the_next_request_sleep_for_it(
    connect: Callable[..., Harness],
) -> None:
    answers = [httpx.Response(429, text="Retry later", headers={"Retry-After": "3600"}),
               ok({"user_id": 3001})]
    h = connect(lambda _request: answers.pop(0))
    with pytest.raises(TransientError, match="try again later"):
        h.client.me()
    with contextlib.suppress(TransientError):  # failing fast would be fine too
        h.client.me()
    assert max(h.clock.sleeps, default=0.0) <= 120.0  # HttpApi's default max_retry_wait


# ------------------------------------------------------------ nulls and vanished objects


def test_nulls_the_daemon_can_default_are_read_and_noted(connect: Callable[..., Harness]) -> None:
    nulled = {**line(88000001, 15000002), "quantity": None, "retail_cents": None,
              "name": None, "taxable": None, "one_time_charge": None}
    body = {"products": [{**product(15000002, "PC_X"), "taxable": None, "disabled": None,
                          "maintain_stock": None, "price_cost": None, "description": None}],
            "meta": {"total_pages": 1, "page": 1}}

    def handler(request: httpx.Request) -> httpx.Response:
        return ok(body if request.url.path.endswith("/products") else schedule([nulled]))

    harness = connect(handler)
    (found,) = harness.client.list_products()
    assert (found.taxable, found.disabled, found.maintain_stock, found.price_cost,
            found.description) == (None, False, False, Decimal(0), "")
    (read,) = harness.client.get_schedule(4100002).lines
    assert (read.quantity, read.retail, read.name, read.taxable) \
        == (Decimal(0), Decimal(0), None, False)
    assert read.nulls == frozenset({"quantity", "retail_cents"})


@pytest.mark.parametrize(("body", "message"), [
    ({"products": [{**product(15000007, "x"), "name": None}], "meta": {"total_pages": 1}},
     "unexpected product payload: product 15000007: name is null"),
    ({"products": [{**product(15000007, "x"), "id": None}], "meta": {"total_pages": 1}},
     "unexpected product payload: product (no id): id is null"),
    (schedule([line(88000001, 1), {**line(88000002, 1), "id": "x"}]),
     "unexpected schedule payload: schedule 4100002, line x: id: Input should be"),
    (schedule([line(88000001, 1), {**line(88000002, 1), "quantity": "many"}]),
     "unexpected schedule payload: schedule 4100002, line 88000002: quantity"),
    ({"schedule": {**schedule([])["schedule"], "lines": None}},
     "schedule 4100002: lines is missing or null"),
    ({"schedule": {**schedule([])["schedule"], "customer_id": None}},
     "unexpected schedule payload: schedule 4100002: customer_id is null"),
])
def test_a_record_that_cannot_be_read_safely_is_named_with_its_field(
    connect: Callable[..., Harness], body: dict[str, Any], message: str,
) -> None:
    harness = connect(lambda request: ok(body))
    read: Callable[[], object] = (harness.client.list_products if "products" in body
                                  else lambda: harness.client.get_schedule(4100002))
    with pytest.raises(InvariantError) as raised:
        read()
    assert message in str(raised.value)


def test_a_detail_read_without_lines_is_not_taken_for_an_empty_invoice(
    connect: Callable[..., Harness],
) -> None:
    body = {"schedule": {k: v for k, v in schedule([])["schedule"].items() if k != "lines"}}
    harness = connect(lambda request: ok(body))
    with pytest.raises(InvariantError, match="lines is missing or null"):
        harness.client.get_schedule(4100002)


@pytest.mark.parametrize(("schedule_there", "message"), [
    (False, "recurring invoice 4100002 no longer exists"),
    (True, "line 88000001 is no longer on recurring invoice 4100002"),
])
def test_a_write_that_meets_404_says_whether_the_invoice_or_the_line_is_gone(
    connect: Callable[..., Harness], schedule_there: bool, message: str,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and schedule_there:
            return ok(schedule([]))
        return httpx.Response(404)

    harness = connect(handler)
    with pytest.raises(NotFoundError, match=message):
        harness.client.update_schedule_line(4100002, 88000001, quantity=Decimal(3))
    with pytest.raises(NotFoundError, match="4100002"):
        harness.client.create_schedule_line(4100002, LINE_DRAFT, known_line_ids=())
    assert len(harness.sent("PUT")) == 1  # a 404 is not retried
