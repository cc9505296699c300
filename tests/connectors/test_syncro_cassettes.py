"""The Syncro client against Syncro's wire format, replayed from hand-written cassettes.

Each test opens one cassette from `cassettes/syncro/`, drives `SyncroClient` through it and
checks the parsed records, the bodies the client sent and that every pinned interaction was
played exactly as often as the scenario needs. Time is fake: retries and the rate limiter sleep
on a recording clock, so nothing waits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from structlog.testing import capture_logs
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.request import Request

from sync_daemon.connectors.http import RateLimiter
from sync_daemon.connectors.syncro import (
    Customer,
    LineDraft,
    Product,
    ProductDraft,
    Schedule,
    ScheduleLine,
    SyncroClient,
    SyncroUser,
)
from sync_daemon.errors import ConfigError, NotFoundError, RejectedError
from tests.connectors.conftest import (
    AUTH_PLACEHOLDER,
    CASSETTE_DIR,
    TOKEN_PLACEHOLDER,
    FakeClock,
    RecordingTransport,
    read_hand_written,
)

BASE_URL = "https://acme.syncromsp.com/api/v1"
TEST_TOKEN = "cassette-test-token"  # never leaves the process: vcrpy answers every request
REQUESTS_PER_MINUTE = 180
INTERVAL = 60 / REQUESTS_PER_MINUTE * (1 + RateLimiter.MARGIN)


@dataclass
class Replay:
    """A client wired to one cassette, with what it sent and how long it slept."""

    client: SyncroClient
    cassette: Any
    clock: FakeClock
    transport: RecordingTransport = field(repr=False)

    def sent(self, method: str) -> list[httpx.Request]:
        return [r for r in self.transport.sent if r.method == method]

    def bodies(self, method: str) -> list[Any]:
        """JSON bodies sent with `method`; numbers with a fraction come back as Decimal."""
        return [json.loads(r.content, parse_float=Decimal) for r in self.sent(method)]


@pytest.fixture
def replay(syncro_vcr: Any) -> Iterator[Callable[[str], Replay]]:
    with ExitStack() as stack:

        def start(name: str) -> Replay:
            cassette = stack.enter_context(syncro_vcr.use_cassette(f"syncro/{name}.yaml"))
            clock = FakeClock()
            transport = RecordingTransport()
            client = stack.enter_context(SyncroClient.connect(
                BASE_URL, TEST_TOKEN, sleep=clock.sleep, clock=clock.monotonic,
                transport=transport, requests_per_minute=REQUESTS_PER_MINUTE,
            ))
            return Replay(client=client, cassette=cassette, clock=clock, transport=transport)

        yield start


def json_types(body: dict[str, Any]) -> dict[str, str]:
    return {key: type(value).__name__ for key, value in body.items()}


# ------------------------------------------------------------------------------ reads


def test_me_reads_the_token_owner_with_a_bearer_header(replay: Callable[[str], Replay]) -> None:
    r = replay("me")
    assert r.client.me() == SyncroUser(user_id=3001, user_email="billing-bot@acme-it.example",
                                       user_name="Billing Bot", subdomain="acme")
    assert r.cassette.all_played
    [sent] = r.transport.sent
    assert sent.headers["Authorization"] == f"Bearer {TEST_TOKEN}"
    assert sent.headers["Accept"] == "application/json"
    assert TEST_TOKEN not in str(sent.url)


def test_list_customers_follows_meta_over_three_pages(replay: Callable[[str], Replay]) -> None:
    r = replay("customers_three_pages")
    customers = r.client.list_customers()
    assert [c.id for c in customers] == list(range(1500001, 1500008))
    assert customers[0] == Customer(id=1500001, business_name="Acme Dental Group",
                                    fullname="Priya Raman", email="office@acmedental.example",
                                    disabled=False)
    # A person: no business name, and an empty email that means "none".
    assert customers[4] == Customer(id=1500005, business_name=None, fullname="Maria Chen",
                                    email=None, disabled=False)
    assert customers[4].display_name == "Maria Chen"
    assert [req.url.params["page"] for req in r.sent("GET")] == ["1", "2", "3"]
    assert "include_disabled" not in r.sent("GET")[0].url.params
    assert r.cassette.play_count == 3
    assert r.cassette.all_played
    # Only the limiter's even spacing: no retry waits.
    assert r.clock.sleeps == [pytest.approx(INTERVAL), pytest.approx(INTERVAL)]


def test_list_products_without_meta_stops_on_the_empty_page(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("products_without_meta")
    products = r.client.list_products()
    assert products == [
        Product(id=15000001, name="PC_PPE-BUSINESS",
                description="Proofpoint Essentials Business (per user / month)",
                price_cost=Decimal("1.5"), price_retail=Decimal("3.0"), taxable=True,
                disabled=False, maintain_stock=False),
        Product(id=15000002, name="PC_PPE-BUSINESS-PLUS",
                description="Proofpoint Essentials Business Plus (per user / month)",
                price_cost=Decimal("2.1"), price_retail=Decimal("4.2"), taxable=True,
                disabled=False, maintain_stock=False),
        Product(id=15000003, name="Ubiquiti UniFi U6-Lite access point",
                description="Wi-Fi 6 ceiling access point, PoE",
                price_cost=Decimal("89.0"), price_retail=Decimal("139.99"), taxable=True,
                disabled=False, maintain_stock=True),
        Product(id=15000004, name="PC_PPE-BEGINNER",
                description="Proofpoint Essentials Beginner (per user / month)",
                price_cost=Decimal("0.75"), price_retail=Decimal("1.5"), taxable=True,
                disabled=True, maintain_stock=False),
    ]
    # Exact decimals straight from the JSON text, never through a float.
    assert all(isinstance(p.price_retail, Decimal) for p in products)
    assert str(products[1].price_retail) == "4.2"
    assert str(products[2].price_retail) == "139.99"
    assert [req.url.params["page"] for req in r.sent("GET")] == ["1", "2", "3"]
    assert r.cassette.all_played


def test_list_schedules_of_a_customer_has_no_lines(replay: Callable[[str], Replay]) -> None:
    r = replay("schedules_of_customer")
    assert r.client.list_schedules(customer_id=1500002) == [
        Schedule(id=4100002, customer_id=1500002, name="Managed services - monthly",
                 frequency="Monthly", paused=False, next_run=date(2026, 12, 1), lines=()),
        Schedule(id=4100007, customer_id=1500002, name="Domain renewals",
                 frequency="Annually", paused=True, next_run=date(2027, 3, 15), lines=()),
    ]
    assert dict(r.sent("GET")[0].url.params) == {"customer_id": "1500002", "page": "1"}
    assert r.cassette.all_played


EVERGREEN_LINES = (
    ScheduleLine(id=88000001, schedule_id=4100002, product_id=15000001,
                 name="Proofpoint Essentials Business",
                 description="Proofpoint Essentials Business (per user / month)",
                 quantity=Decimal("15.0"), retail=Decimal("3.00"), cost=Decimal("1.50"),
                 taxable=True, one_time_charge=False, position=1),
    ScheduleLine(id=88000002, schedule_id=4100002, product_id=15000005,
                 name="Microsoft 365 Business Basic",
                 description="Microsoft 365 Business Basic (per user / month, annual commitment)",
                 quantity=Decimal("12.0"), retail=Decimal("7.20"), cost=Decimal("6.00"),
                 taxable=False, one_time_charge=False, position=2),
    ScheduleLine(id=88000003, schedule_id=4100002, product_id=None,
                 name="Offsite backup storage (TB)",
                 description="Cloud backup, billed per started terabyte",
                 quantity=Decimal("2.0"), retail=Decimal("49.99"), cost=Decimal("25.00"),
                 taxable=True, one_time_charge=False, position=3),
)


def test_get_schedule_reads_lines_in_cents_and_decimal_quantities(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("schedule_with_lines")
    schedule = r.client.get_schedule(4100002)
    assert schedule == Schedule(id=4100002, customer_id=1500002,
                                name="Managed services - monthly", frequency="Monthly",
                                paused=False, next_run=date(2026, 12, 1), lines=EVERGREEN_LINES)
    # Cents become currency units with two places; the quantity string stays exact.
    assert [str(line.retail) for line in schedule.lines] == ["3.00", "7.20", "49.99"]
    assert [str(line.quantity) for line in schedule.lines] == ["15.0", "12.0", "2.0"]
    assert r.cassette.all_played


# ----------------------------------------------------------------------------- writes

PROFESSIONAL = ProductDraft(
    name="PC_PPE-PROFESSIONAL", description="Proofpoint Essentials Professional (per user / month)",
    price_cost=Decimal("2.75"), price_retail=Decimal("5.50"), taxable=True,
)
PROFESSIONAL_PRODUCT = Product(
    id=15000006, name="PC_PPE-PROFESSIONAL",
    description="Proofpoint Essentials Professional (per user / month)",
    price_cost=Decimal("2.75"), price_retail=Decimal("5.5"), taxable=True, disabled=False,
    maintain_stock=False,
)
PRODUCT_BODY_TYPES = {"name": "str", "description": "str", "price_cost": "Decimal",
                      "price_retail": "Decimal", "taxable": "bool", "disabled": "bool",
                      "maintain_stock": "bool"}


def test_create_product_sends_prices_as_json_numbers_and_every_flag(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("product_create")
    assert r.client.create_product(PROFESSIONAL) == PROFESSIONAL_PRODUCT
    [body] = r.bodies("POST")
    assert body == {"name": "PC_PPE-PROFESSIONAL",
                    "description": "Proofpoint Essentials Professional (per user / month)",
                    "price_cost": Decimal("2.75"), "price_retail": Decimal("5.50"),
                    "taxable": True, "disabled": False, "maintain_stock": False}
    assert json_types(body) == PRODUCT_BODY_TYPES
    assert r.sent("POST")[0].headers["Content-Type"] == "application/json"
    assert r.cassette.all_played


def test_update_product_sends_maintain_stock_back_as_read(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("product_update")
    product = r.client.get_product(15000003)
    assert product.maintain_stock is True
    updated = r.client.update_product(product, price_retail=Decimal("149.99"))
    [body] = r.bodies("PUT")
    # Partial, except maintain_stock: Syncro resets it to false when it is omitted.
    assert body == {"maintain_stock": True, "price_retail": Decimal("149.99")}
    assert json_types(body) == {"maintain_stock": "bool", "price_retail": "Decimal"}
    assert updated == Product(id=15000003, name="Ubiquiti UniFi U6-Lite access point",
                              description="Wi-Fi 6 ceiling access point, PoE",
                              price_cost=Decimal("89.0"), price_retail=Decimal("149.99"),
                              taxable=True, disabled=False, maintain_stock=True)
    assert r.cassette.all_played


BUSINESS_PLUS_LINE = LineDraft(
    product_id=15000002, name="Proofpoint Essentials Business Plus", quantity=Decimal("5"),
    retail=Decimal("4.20"), cost=Decimal("2.10"), taxable=True,
    description="Upgrade for the partners' mailboxes",
)


def test_create_schedule_line_posts_cents_and_quantity(replay: Callable[[str], Replay]) -> None:
    r = replay("line_create")
    line = r.client.create_schedule_line(4100002, BUSINESS_PLUS_LINE,
                                         known_line_ids={88000001, 88000002, 88000003})
    assert line == ScheduleLine(
        id=88000004, schedule_id=4100002, product_id=15000002,
        name="Proofpoint Essentials Business Plus",
        description="Upgrade for the partners' mailboxes", quantity=Decimal("5.0"),
        retail=Decimal("4.20"), cost=Decimal("2.10"), taxable=True, one_time_charge=False,
        position=4,
    )
    [sent] = r.sent("POST")
    assert sent.url.path == "/api/v1/schedules/4100002/line_items"
    [body] = r.bodies("POST")
    assert body == {"product_id": 15000002, "name": "Proofpoint Essentials Business Plus",
                    "quantity": 5, "retail_cents": 420, "cost_cents": 210, "taxable": True,
                    "one_time_charge": False,
                    "description": "Upgrade for the partners' mailboxes"}
    # Money in integer cents, the quantity a JSON number: never strings, never fractions.
    assert json_types(body) == {"product_id": "int", "name": "str", "quantity": "int",
                                "retail_cents": "int", "cost_cents": "int", "taxable": "bool",
                                "one_time_charge": "bool", "description": "str"}
    assert r.cassette.all_played


def test_update_schedule_line_sends_only_the_given_fields(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("line_update")
    by_quantity = r.client.update_schedule_line(4100002, 88000002, quantity=Decimal("14"))
    assert (by_quantity.quantity, by_quantity.retail, by_quantity.cost) == (
        Decimal("14.0"), Decimal("7.20"), Decimal("6.00"))
    by_price = r.client.update_schedule_line(4100002, 88000002, retail=Decimal("7.50"),
                                             cost=Decimal("6.10"))
    assert (by_price.quantity, by_price.retail, by_price.cost) == (
        Decimal("14.0"), Decimal("7.50"), Decimal("6.10"))
    assert r.bodies("PUT") == [{"quantity": 14}, {"retail_cents": 750, "cost_cents": 610}]
    assert [json_types(b) for b in r.bodies("PUT")] == [
        {"quantity": "int"}, {"retail_cents": "int", "cost_cents": "int"}]
    assert r.cassette.all_played


def test_delete_schedule_line(replay: Callable[[str], Replay]) -> None:
    r = replay("line_delete")
    r.client.delete_schedule_line(4100002, 88000003)
    assert [(q.method, q.url.path) for q in r.transport.sent] == [
        ("DELETE", "/api/v1/schedules/4100002/line_items/88000003")]
    assert r.cassette.all_played


def test_deleting_a_line_already_gone_is_not_an_error(replay: Callable[[str], Replay]) -> None:
    r = replay("line_delete_gone")
    with capture_logs() as logs:
        r.client.delete_schedule_line(4100002, 88000003)
    assert {"event": "syncro.delete_already_gone", "schedule_id": 4100002,
            "line_id": 88000003, "log_level": "info"} in logs
    assert r.cassette.play_count == 1  # a 404 is an answer, not a fault: no retry
    assert r.cassette.all_played


# ----------------------------------------------------------------------------- errors


def _reject_product(client: SyncroClient) -> object:
    return client.create_product(ProductDraft(name="", description="", price_cost=Decimal("2.75"),
                                              price_retail=Decimal("5.50"), taxable=True))


def _reject_unknown_product_line(client: SyncroClient) -> object:
    return client.create_schedule_line(
        4100002, LineDraft(product_id=15009999, name="Proofpoint Essentials Beginner",
                           quantity=Decimal(4), retail=Decimal("1.50"), cost=Decimal("0.75"),
                           taxable=True), known_line_ids=())


def _reject_line_update(client: SyncroClient) -> object:
    return client.update_schedule_line(4100002, 88000002, quantity=Decimal(14))


def _reject_blank_line(client: SyncroClient) -> object:
    return client.create_schedule_line(
        4100002, LineDraft(product_id=15009999, name="", quantity=Decimal(4),
                           retail=Decimal("1.50"), cost=Decimal("0.75"), taxable=True),
        known_line_ids=())


@pytest.mark.parametrize(
    ("cassette", "call", "status", "messages"),
    [
        pytest.param("reject_product_messages", _reject_product, 422,
                     ["Name can't be blank", "Description can't be blank"],
                     id="products-success-false-message-list"),
        pytest.param("reject_line_error_list", _reject_unknown_product_line, 422,
                     ["Product can't be found"], id="line-items-error-list"),
        pytest.param("reject_error_string", _reject_line_update, 400,
                     ["Invalid JSON in request body"], id="error-string"),
        pytest.param("reject_errors_comma_string", _reject_blank_line, 422,
                     ["Name can't be blank, Product can't be found"],
                     id="errors-comma-joined-string"),
    ],
)
def test_rejections_carry_the_messages_of_every_body_shape(
    replay: Callable[[str], Replay],
    cassette: str,
    call: Callable[[SyncroClient], object],
    status: int,
    messages: list[str],
) -> None:
    r = replay(cassette)
    with pytest.raises(RejectedError) as caught:
        call(r.client)
    assert not isinstance(caught.value, NotFoundError)
    assert caught.value.status == status
    assert caught.value.messages == messages
    assert all(m in str(caught.value) for m in messages)
    assert r.cassette.play_count == 1  # refused, not retried
    assert r.cassette.all_played


def test_a_bad_token_is_a_config_error_that_says_so(replay: Callable[[str], Replay]) -> None:
    r = replay("auth_bad_token")
    with pytest.raises(ConfigError, match="bad API token") as caught:
        r.client.me()
    assert "permission" not in str(caught.value)
    assert TEST_TOKEN not in str(caught.value)
    assert r.cassette.all_played


def test_a_missing_permission_is_a_config_error_naming_it(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("auth_missing_permission")
    with pytest.raises(ConfigError, match="'Products - Create'") as caught:
        r.client.create_product(PROFESSIONAL)
    assert "bad API token" not in str(caught.value)
    assert r.cassette.play_count == 1
    assert r.cassette.all_played


# ------------------------------------------------------------------- retries and recovery


def test_plain_text_429_without_retry_after_backs_off_exponentially(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("rate_limited_plain")
    assert [c.id for c in r.client.list_customers()] == [1500001, 1500002]
    assert r.cassette.play_count == 3
    assert r.cassette.all_played
    first, second = r.clock.sleeps  # the retry waits only: the limiter had nothing to add
    assert 1 <= first <= 2
    assert 2 <= second <= 3


def test_429_with_retry_after_waits_exactly_that_long_even_for_a_post(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("rate_limited_retry_after")
    assert r.client.create_product(PROFESSIONAL) == PROFESSIONAL_PRODUCT
    assert r.clock.sleeps == [7.0]
    # Throttling precedes processing, so the create is simply sent again, unchanged.
    first, second = r.bodies("POST")
    assert first == second
    assert r.cassette.all_played


def test_503_on_a_read_is_retried(replay: Callable[[str], Replay]) -> None:
    r = replay("server_error_read")
    assert r.client.get_schedule(4100002).lines == EVERGREEN_LINES
    assert len(r.sent("GET")) == 2
    [wait] = r.clock.sleeps
    assert 1 <= wait <= 2
    assert r.cassette.all_played


def test_a_product_create_answered_500_that_landed_is_found_not_posted_again(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("product_create_500_landed")
    draft = ProductDraft(name="PC_PPE-ADVANCED",
                         description="Proofpoint Essentials Advanced (per user / month)",
                         price_cost=Decimal("2.40"), price_retail=Decimal("4.80"), taxable=True)
    product = r.client.create_product(draft)
    # The name search also matched PC_PPE-ADVANCED-PLUS; only the exact name counts.
    assert (product.id, product.name) == (15000008, "PC_PPE-ADVANCED")
    assert len(r.sent("POST")) == 1
    assert r.sent("GET")[0].url.params["name"] == "PC_PPE-ADVANCED"
    assert r.cassette.play_count == 2
    assert r.cassette.all_played


def test_a_line_create_answered_500_that_landed_is_found_not_posted_again(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("line_create_500_landed")
    draft = LineDraft(product_id=15000002, name="Proofpoint Essentials Business Plus",
                      quantity=Decimal(8), retail=Decimal("4.20"), cost=Decimal("2.10"),
                      taxable=True)
    # 88000013 (a one-time true-up of the same product) was read before planning.
    line = r.client.create_schedule_line(4100005, draft, known_line_ids={88000011, 88000013})
    assert line == ScheduleLine(
        id=88000019, schedule_id=4100005, product_id=15000002,
        name="Proofpoint Essentials Business Plus",
        description="Proofpoint Essentials Business Plus (per user / month)",
        quantity=Decimal("8.0"), retail=Decimal("4.20"), cost=Decimal("2.10"), taxable=True,
        one_time_charge=False, position=3,
    )
    assert len(r.sent("POST")) == 1
    assert r.cassette.play_count == 2
    assert r.cassette.all_played


def test_a_product_create_answered_500_that_did_not_land_is_posted_once_more(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("product_create_500_not_landed")
    draft = ProductDraft(
        name="PC_CFQ7TTC0LDPB:0001",
        description="Microsoft 365 Business Standard (per user / month, annual commitment)",
        price_cost=Decimal("10.50"), price_retail=Decimal("12.60"), taxable=False,
    )
    product = r.client.create_product(draft)
    assert (product.id, product.name, product.price_retail) == (
        15000009, "PC_CFQ7TTC0LDPB:0001", Decimal("12.6"))
    first, second = r.bodies("POST")
    assert first == second
    assert r.sent("GET")[0].url.params["name"] == "PC_CFQ7TTC0LDPB:0001"
    assert r.cassette.play_count == 3
    assert r.cassette.all_played


# ------------------------------------------------------------------ the cassettes themselves


def test_playback_never_reaches_the_network(replay: Callable[[str], Replay]) -> None:
    r = replay("me")
    r.client.me()
    with pytest.raises(CannotOverwriteExistingCassetteException):
        r.client.me()  # the one interaction is used up; nothing may go out for real


CASSETTE_FILES = sorted((CASSETTE_DIR / "syncro").glob("*.yaml"))


def test_the_cassette_directory_is_not_empty() -> None:
    assert len(CASSETTE_FILES) >= 20


@pytest.mark.parametrize("path", CASSETTE_FILES, ids=lambda p: p.stem)
def test_every_cassette_is_hand_written_cited_and_free_of_secrets(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    cites = ("syncro-api.md §", "assumed-shapes.md §")
    for request, response in read_hand_written(path, cites=cites):
        assert request["uri"].startswith(BASE_URL + "/")
        assert request["headers"]["Authorization"] == [AUTH_PLACEHOLDER]
        if request["body"] is not None:
            assert request["headers"]["Content-Type"] == ["application/json"]
            json.loads(request["body"])
        content_type = response["headers"].get("Content-Type", [""])[0]
        body = response["body"]["string"]
        if "json" in content_type:
            json.loads(body)
        else:
            assert not body.lstrip().startswith(("{", "["))
    assert text.count("Bearer ") == text.count(AUTH_PLACEHOLDER)


def test_recording_filters_scrub_the_token_wherever_it_appears(
    syncro_vcr: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = "T1a2b3c4d5e6f7a8-0123456789abcdef0123"
    monkeypatch.setenv("SYNCRO_API_TOKEN", token)
    config = syncro_vcr.get_merged_config(path="unused.yaml")
    scrub_request: Callable[[Request], Request] = config["before_record_request"]
    scrub_response: Callable[[dict[str, Any]], dict[str, Any]] = config["before_record_response"]

    for headers in ({"Authorization": f"Bearer {token}"}, {"Authorization": token}):
        request = scrub_request(Request(
            "POST", f"{BASE_URL}/products?api_key={token}&page=1",
            json.dumps({"name": "PC_X", "note": token, "api_token": "other-secret"}).encode(),
            headers,
        ))
        assert request.headers["Authorization"] == AUTH_PLACEHOLDER
        assert token not in request.uri
        assert dict(parse_qsl(urlsplit(request.uri).query)) == {
            "api_key": TOKEN_PLACEHOLDER, "page": "1"}
        assert token.encode() not in request.body
        assert b"other-secret" not in request.body
        assert json.loads(request.body)["name"] == "PC_X"

    response = scrub_response({
        "status": {"code": 200, "message": "OK"},
        "headers": {"Set-Cookie": ["_syncro_session=abc123; HttpOnly"],
                    "Content-Type": ["application/json; charset=utf-8"]},
        "body": {"string": json.dumps({"user_id": 3001, "api_token": token,
                                       "echo": f"Bearer {token}"}).encode()},
    })
    assert "Set-Cookie" not in response["headers"]
    assert response["headers"]["Content-Type"] == ["application/json; charset=utf-8"]
    assert token.encode() not in response["body"]["string"]
    assert json.loads(response["body"]["string"])["user_id"] == 3001
