"""The HTTP layer on its own: classification, retries, JSON money, paging, Retry-After."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from sync_daemon.connectors.http import (
    HttpApi,
    Page,
    RateLimiter,
    decode_json,
    encode_json,
    messages_from_body,
    paginate,
    retry_after_seconds,
    tls_context,
)
from sync_daemon.errors import (
    AmbiguousWriteError,
    ConfigError,
    InvariantError,
    NotFoundError,
    RejectedError,
    TransientError,
)

Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests from a list of responses or exceptions, in order, and records them."""

    def __init__(self, *steps: httpx.Response | Exception) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def make_api(slept: list[float]) -> Iterator[Callable[[Handler], HttpApi]]:
    made: list[HttpApi] = []

    def make(handler: Handler) -> HttpApi:
        api = HttpApi(name="test", base_url="https://api.example/v1",
                      transport=httpx.MockTransport(handler), sleep=slept.append, max_attempts=4)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


def json_response(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=encode_json(body), headers=headers)


def test_ok_response_is_returned_and_decoded_with_decimals(
    make_api: Callable[[Handler], HttpApi],
) -> None:
    script = Script(httpx.Response(200, content=b'{"price": 19.80, "n": 3}'))
    body = make_api(script).get_json("items", params={"page": 2})
    assert body == {"price": Decimal("19.80"), "n": 3}
    assert isinstance(body["price"], Decimal)
    assert str(script.requests[0].url) == "https://api.example/v1/items?page=2"


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, ConfigError), (403, ConfigError), (404, NotFoundError), (422, RejectedError),
     (400, RejectedError)],
)
def test_client_errors_are_classified_and_not_retried(
    make_api: Callable[[Handler], HttpApi], status: int, error: type[Exception]
) -> None:
    script = Script(json_response(status, {"error": ["Name can't be blank"]}))
    with pytest.raises(error):
        make_api(script).get_json("items")
    assert len(script.requests) == 1


def test_rejection_carries_normalised_messages(make_api: Callable[[Handler], HttpApi]) -> None:
    script = Script(json_response(422, {"success": False, "message": ["A", "B"]}))
    with pytest.raises(RejectedError) as caught:
        make_api(script).request("POST", "items", json_body={"x": 1})
    assert caught.value.messages == ["A", "B"]
    assert caught.value.status == 422


def test_429_with_retry_after_waits_exactly_that_long(
    make_api: Callable[[Handler], HttpApi], slept: list[float]
) -> None:
    script = Script(httpx.Response(429, text="Retry later", headers={"Retry-After": "7"}),
                    json_response(200, {"ok": True}))
    assert make_api(script).get_json("items") == {"ok": True}
    assert slept == [7.0]


def test_429_without_retry_after_backs_off_exponentially(
    make_api: Callable[[Handler], HttpApi], slept: list[float]
) -> None:
    script = Script(*[httpx.Response(429, text="Retry later")] * 3,
                    json_response(200, {"ok": True}))
    make_api(script).get_json("items")
    assert len(slept) == 3
    # Exponential with jitter: each wait at least the base of its step (1, 2, 4 s).
    assert [s >= base for s, base in zip(slept, [1, 2, 4], strict=True)] == [True] * 3


def test_retry_after_beyond_the_cap_fails_without_waiting(
    make_api: Callable[[Handler], HttpApi], slept: list[float]
) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}))
    with pytest.raises(TransientError, match="try again later"):
        make_api(script).get_json("items")
    assert slept == []


def test_5xx_on_reads_is_retried_until_the_attempts_run_out(
    make_api: Callable[[Handler], HttpApi],
) -> None:
    script = Script(*[httpx.Response(503)] * 4)
    with pytest.raises(TransientError, match="server error 503"):
        make_api(script).get_json("items")
    assert len(script.requests) == 4


def test_timeout_on_a_read_is_retried(make_api: Callable[[Handler], HttpApi]) -> None:
    script = Script(httpx.ReadTimeout("slow"), json_response(200, []))
    assert make_api(script).get_json("items") == []
    assert len(script.requests) == 2


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("reset"), httpx.Response(500),
     httpx.Response(502)],
)
def test_a_creating_post_that_may_have_landed_is_never_resent(
    make_api: Callable[[Handler], HttpApi], failure: httpx.Response | Exception
) -> None:
    script = Script(failure, json_response(200, {}))
    with pytest.raises(AmbiguousWriteError):
        make_api(script).request("POST", "items", json_body={"name": "x"})
    assert len(script.requests) == 1


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ConnectTimeout("t/o")])
def test_a_post_that_never_left_is_resent(
    make_api: Callable[[Handler], HttpApi], failure: Exception
) -> None:
    script = Script(failure, json_response(200, {"id": 1}))
    assert make_api(script).request("POST", "items", json_body={"name": "x"}) == {"id": 1}
    assert len(script.requests) == 2


def test_a_throttled_post_is_resent_because_throttling_precedes_processing(
    make_api: Callable[[Handler], HttpApi],
) -> None:
    script = Script(httpx.Response(429, text="Retry later"), json_response(200, {"id": 1}))
    make_api(script).request("POST", "items", json_body={"name": "x"})
    assert len(script.requests) == 2


def test_html_with_status_200_is_a_transient_fault(make_api: Callable[[Handler], HttpApi]) -> None:
    script = Script(*[httpx.Response(200, text="<html>Bad gateway</html>")] * 4)
    with pytest.raises(TransientError, match="expected JSON"):
        make_api(script).get_json("items")
    assert len(script.requests) == 4


def test_html_with_status_200_on_a_creating_post_is_ambiguous(
    make_api: Callable[[Handler], HttpApi],
) -> None:
    script = Script(httpx.Response(200, text="<html>Bad gateway</html>"))
    with pytest.raises(AmbiguousWriteError, match="may have landed"):
        make_api(script).request("POST", "items", json_body={"name": "x"})


def test_an_empty_success_body_decodes_to_none(make_api: Callable[[Handler], HttpApi]) -> None:
    assert make_api(Script(httpx.Response(200))).request("DELETE", "items/1") is None


def test_stats_count_reads_and_writes(make_api: Callable[[Handler], HttpApi]) -> None:
    script = Script(json_response(200, {}), json_response(200, {}), json_response(200, {}))
    api = make_api(script)
    api.get_json("a")
    api.request("PUT", "a", json_body={"q": Decimal(1)})
    api.request("DELETE", "a")
    assert (api.stats.reads, api.stats.writes) == (1, 2)


def test_encode_json_writes_decimals_exactly_and_refuses_floats() -> None:
    assert encode_json({"a": Decimal("19.80"), "b": [Decimal("0.0001")], "c": "x\"y"}) == (
        b'{"a":19.80,"b":[0.0001],"c":"x\\"y"}'
    )
    with pytest.raises(TypeError):
        encode_json({"a": 0.1})


def test_decode_json_never_produces_floats() -> None:
    request = httpx.Request("GET", "https://x/")
    body = decode_json(httpx.Response(200, content=b"[0.1, 2, 1e3]", request=request))
    assert body == [Decimal("0.1"), 2, Decimal("1E+3")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"success": False, "message": ["Email is not an email"]}, ["Email is not an email"]),
        ({"error": ["Frequency Must be a valid selection", "Name can't be blank"]},
         ["Frequency Must be a valid selection", "Name can't be blank"]),
        ({"error": "Sorry, unable to read the date, use this format: Y-m-d"},
         ["Sorry, unable to read the date, use this format: Y-m-d"]),
        ({"record": {}, "errors": "Customer can't be blank"}, ["Customer can't be blank"]),
        ({"success": False, "errors": {"appointments": {"summary": ["can't be blank"]}}},
         ["appointments summary can't be blank"]),
        ({"ErrorCode": "404 NotFound", "Message": "Not found"}, ["Not found"]),
        ({}, []),
    ],
)
def test_error_bodies_of_every_shape_become_a_list(body: object, expected: list[str]) -> None:
    assert messages_from_body(body) == expected


def test_retry_after_forms() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    def seconds(value: str) -> float | None:
        return retry_after_seconds(httpx.Response(429, headers={"Retry-After": value}), now=now)

    assert seconds("12") == 12.0
    assert seconds("Sun, 22 Nov 2026 12:00:30 GMT") == 30.0
    assert seconds("soon") is None
    assert retry_after_seconds(httpx.Response(429)) is None


def test_paginate_stops_on_an_empty_page_or_the_announced_last_page() -> None:
    pages = {1: Page([1, 2]), 2: Page([3]), 3: Page([])}
    assert list(paginate(lambda n: pages[n])) == [1, 2, 3]
    announced = {1: Page([1], total_pages=2), 2: Page([2], total_pages=2)}
    assert list(paginate(lambda n: announced[n])) == [1, 2]


def test_paginate_refuses_a_server_that_ignores_the_page_parameter() -> None:
    with pytest.raises(InvariantError, match="page 2 repeated page 1"):
        list(paginate(lambda _n: Page([{"id": 1}])))


def test_rate_limiter_spaces_requests_and_holds_after_throttling() -> None:
    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(60, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire()
    assert waits == [pytest.approx(1.01), pytest.approx(1.01)]
    limiter.hold(10)
    limiter.acquire()
    assert waits[-1] == pytest.approx(10.0)


def test_every_client_verifies_tls_with_one_shared_context() -> None:
    # Shared so that each pass does not reload the CA bundle; it must still verify.
    first = HttpApi(name="a", base_url="https://a.example")
    second = HttpApi(name="b", base_url="https://b.example")
    try:
        contexts = {id(api._client._transport._pool._ssl_context)  # type: ignore[attr-defined]
                    for api in (first, second)}
        context = tls_context()
        assert contexts == {id(context)}
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
    finally:
        first.close()
        second.close()
