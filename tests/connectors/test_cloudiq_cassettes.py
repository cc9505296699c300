"""The Cloud-iQ connector against the Crayon API's wire format, from written cassettes.

Each test opens one cassette from `cassettes/cloudiq/`, drives `CloudiqClient` (or a
`CloudiqSource` on it) through it and checks the parsed records, what the client sent (token
grants, Basic and Bearer headers, form fields, paging) and that every pinned interaction was
played. Time is fake: retries, the rate limiter and the token's expiry run on a recording clock.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import httpx
import pytest
from structlog.testing import capture_logs
from vcr.request import Request

from sync_daemon.connectors.cloudiq import (
    AgreementProduct,
    BillingRecord,
    BillingStatement,
    CloudiqClient,
    CloudiqLogin,
    CloudiqSource,
    CustomerTenant,
    InvoiceProfile,
    MalformedProduct,
    MalformedRecord,
)
from sync_daemon.errors import ConfigError, NotFoundError, RejectedError
from sync_daemon.settings import CloudiqSettings
from sync_daemon.vendor import (
    Charge,
    SourceCustomer,
    SourceProblem,
    SourceProduct,
    Statement,
    Usage,
)
from tests.connectors.conftest import (
    CASSETTE_DIR,
    CLOUDIQ_ACCESS_TOKEN_PLACEHOLDER,
    CLOUDIQ_BASIC_PLACEHOLDER,
    CLOUDIQ_BEARER_PLACEHOLDER,
    CLOUDIQ_IDENTITY_TOKEN_PLACEHOLDER,
    CLOUDIQ_PASSWORD_PLACEHOLDER,
    CLOUDIQ_REFRESH_TOKEN_PLACEHOLDER,
    CLOUDIQ_USER_PLACEHOLDER,
    FakeClock,
    RecordingTransport,
    read_hand_written,
)

BASE_URL = "https://api.crayon.com/api/v1"
ORG = 9001
# Never leave the process: vcrpy answers every request.
CLIENT_ID = "cassette-client-id"
CLIENT_SECRET = "cassette-client-secret"
USERNAME = "cassette-api-user@northwind.example"
PASSWORD = "cassette-password"
SECRETS = (CLIENT_SECRET, PASSWORD, CLOUDIQ_ACCESS_TOKEN_PLACEHOLDER,
           CLOUDIQ_REFRESH_TOKEN_PLACEHOLDER)
D = Decimal


@dataclass
class Replay:
    """A client wired to one cassette, with what it sent and how long it slept."""

    cassette: Any
    clock: FakeClock
    stack: ExitStack = field(repr=False)
    transport: RecordingTransport = field(default_factory=RecordingTransport, repr=False)

    def client(self, *, page_size: int = 50, max_attempts: int = 6) -> CloudiqClient:
        return self.stack.enter_context(CloudiqClient.connect(
            BASE_URL, CLIENT_ID, CLIENT_SECRET, USERNAME, PASSWORD, transport=self.transport,
            sleep=self.clock.sleep, clock=self.clock.monotonic, page_size=page_size,
            max_attempts=max_attempts,
        ))

    @property
    def sent(self) -> list[httpx.Request]:
        return self.transport.sent

    def calls(self) -> list[str]:
        """`POST password`, `POST refresh_token`, `GET /me?...` in the order sent."""
        found = []
        for r in self.sent:
            if r.method == "POST":
                found.append(f"POST {dict(parse_qsl(r.content.decode()))['grant_type']}")
            else:
                path = r.url.path.removeprefix("/api/v1")
                found.append(f"GET {path}" + (f"?{r.url.query.decode()}" if r.url.query else ""))
        return found


@pytest.fixture
def replay(cloudiq_vcr: Any) -> Iterator[Callable[[str], Replay]]:
    with ExitStack() as stack:

        def start(name: str) -> Replay:
            cassette = stack.enter_context(cloudiq_vcr.use_cassette(f"cloudiq/{name}.yaml"))
            return Replay(cassette=cassette, clock=FakeClock(), stack=stack)

        yield start


def form(request: httpx.Request) -> dict[str, list[str]]:
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    return parse_qs(request.content.decode(), keep_blank_values=True)


def basic_credentials(request: httpx.Request) -> str:
    scheme, encoded = request.headers["Authorization"].split(" ", 1)
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode()


# ------------------------------------------------------------------------------- tokens


def test_the_first_request_gets_a_token_with_the_password_grant(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("token_and_me")
    assert r.client().me() == CloudiqLogin(user_id="3f0b8c52-4d1e-4a8b-9f3e-2a6c1d7e5b90",
                                           user_name="billing-sync@northwind.example")
    assert r.cassette.all_played
    grant, me = r.sent
    assert (grant.method, grant.url) == ("POST", httpx.URL(f"{BASE_URL}/connect/token"))
    assert basic_credentials(grant) == f"{CLIENT_ID}:{CLIENT_SECRET}"
    assert form(grant) == {"grant_type": ["password"], "username": [USERNAME],
                           "password": [PASSWORD], "scope": ["CustomerApi"]}
    assert me.headers["Authorization"] == f"Bearer {CLOUDIQ_ACCESS_TOKEN_PLACEHOLDER}"
    assert PASSWORD not in str(me.url)


def test_a_token_close_to_expiry_is_renewed_with_the_refresh_grant_first(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("token_refresh_before_expiry")
    client = r.client()
    client.me()
    r.clock.now += 3600 - 50  # ExpiresIn 3600: inside the renewal margin
    client.me()
    assert r.cassette.all_played
    assert r.calls() == ["POST password", "GET /me", "POST refresh_token", "GET /me"]
    refresh = r.sent[2]
    assert basic_credentials(refresh) == f"{CLIENT_ID}:{CLIENT_SECRET}"
    assert form(refresh) == {"grant_type": ["refresh_token"],
                             "refresh_token": [CLOUDIQ_REFRESH_TOKEN_PLACEHOLDER]}


def test_a_token_that_expires_mid_run_is_refreshed_once_and_the_request_resent(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("token_expired_mid_run")
    with capture_logs() as logs:
        tenants = r.client(page_size=2).list_customer_tenants(ORG)
    assert [t.id for t in tenants] == ["210001", "210002", "210003", "210004", "210005"]
    assert r.cassette.all_played
    page = f"GET /customertenants?organizationId={ORG}&page={{}}&pageSize=2"
    assert r.calls() == ["POST password", page.format(1), page.format(2), "POST refresh_token",
                         page.format(2), page.format(3)]
    # Three pages through the rate limiter; the resend belongs to page 2's request, not a retry.
    assert r.clock.sleeps == [pytest.approx(0.505)] * 2
    rejected = [e for e in logs if e["event"] == "cloudiq.token_rejected"]
    assert rejected == [{"event": "cloudiq.token_rejected", "log_level": "info",
                         "path": "/api/v1/customertenants",
                         "challenge": 'Bearer error="invalid_token"'}]
    assert not any(secret in repr(logs) for secret in SECRETS)


def test_a_refused_refresh_token_falls_back_to_one_password_grant(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("refresh_refused_password_grant")
    assert r.client().me().user_name == "billing-sync@northwind.example"
    assert r.cassette.all_played
    assert r.calls() == ["POST password", "GET /me", "POST refresh_token", "POST password",
                         "GET /me"]


def test_a_fresh_token_refused_again_is_a_config_error_not_a_loop(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("token_rejected_twice")
    with pytest.raises(ConfigError, match=r"refused a freshly issued access token \(401"):
        r.client().me()
    assert r.cassette.all_played
    assert r.calls() == ["POST password", "GET /me", "POST refresh_token", "GET /me"]


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ("invalid_client", "bad client id or secret: check cloudiq.client_id"),
        ("invalid_grant", "bad username or password: check cloudiq.username"),
        ("invalid_scope", "may not request the CustomerApi scope"),
        ("unsupported_grant_type", "does not allow the password grant"),
    ],
)
def test_each_token_error_is_a_config_error_naming_it(
    replay: Callable[[str], Replay], error: str, hint: str,
) -> None:
    r = replay(f"token_{error}")
    with pytest.raises(ConfigError) as caught:
        r.client().me()
    message = str(caught.value)
    assert "password grant" in message
    assert error in message
    assert hint in message
    assert not any(secret in message for secret in (CLIENT_SECRET, PASSWORD, USERNAME))
    assert r.cassette.all_played
    assert r.calls() == ["POST password"]  # never retried: the operator must act


# ------------------------------------------------------------------------------- reads


def test_check_proves_the_token_the_organization_and_the_billing_motions(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("check")
    config = CloudiqSettings(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, username=USERNAME,
                           password=PASSWORD, organization_id=ORG, billing_motions=["monthly"])
    with CloudiqSource(config, is_applied=lambda _: False, client_factory=r.client) as source:
        text = source.check()
    assert text == "as billing-sync@northwind.example for Northwind Cloud Services (9001); Monthly"
    assert r.cassette.all_played


def test_check_names_an_organization_that_does_not_exist(replay: Callable[[str], Replay]) -> None:
    r = replay("organization_not_found")
    config = CloudiqSettings(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, username=USERNAME,
                           password=PASSWORD, organization_id=9999)
    source = CloudiqSource(config, is_applied=lambda _: False, client_factory=r.client)
    with pytest.raises(ConfigError, match=r"organization 9999 is unknown .*organization_id"):
        source.check()
    assert r.cassette.all_played


def test_customer_tenants_are_read_over_three_pages_until_total_hits(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("customer_tenants_three_pages")
    tenants = r.client(page_size=2).list_customer_tenants(ORG)
    monthly, annual = InvoiceProfile(3101, "Monthly"), InvoiceProfile(3102, "Annual")
    assert tenants == [
        CustomerTenant("210001", "Acme Dental Group", "acmedental.onmicrosoft.com", monthly),
        CustomerTenant("210002", "Birch Legal LLP", "birchlegal.onmicrosoft.com", monthly),
        CustomerTenant("210003", "Cedar Veterinary Clinic", "cedarvet.onmicrosoft.com", monthly),
        CustomerTenant("210004", "Delta Logistics", "deltalogistics.onmicrosoft.com", annual),
        CustomerTenant("210005", "Elm Street Bakery", "elmstreetbakery.onmicrosoft.com", None),
    ]
    assert r.cassette.all_played  # and no fourth page: TotalHits said 5
    assert [dict(r.url.params) for r in r.sent[1:]] == [
        {"organizationId": "9001", "page": str(n), "pageSize": "2"} for n in (1, 2, 3)]


def test_the_price_list_has_one_row_per_part_number_term_and_cycle(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("agreement_products")
    rows = r.client().list_agreement_products(ORG)
    assert r.cassette.all_played
    bp = "Microsoft 365 Business Premium"
    assert rows == [
        AgreementProduct("CFQ7TTC0LCHC:0002", bp, "P1M", 1, D("23.76"), D("26.40")),
        AgreementProduct("CFQ7TTC0LCHC:0002", bp, "P1Y", 1, D("19.80"), D("22.00")),
        AgreementProduct("CFQ7TTC0LCHC:0002", bp, "P1Y", 2, D("237.60"), D("264.00")),
        AgreementProduct("CFQ7TTC0LDPB:0001", "Microsoft 365 Business Basic", "P1M", 1,
                         D("7.20"), D("8.00")),
        MalformedProduct(4, "SalesPrice: expected an amount, got None", "CFQ7TTC0LH16:0001"),
        AgreementProduct("DZH318Z0BPS6:0001", "Azure plan", None, 1, D(0), D(0)),
        AgreementProduct("CFQ7TTC0HCS0:0001", "Microsoft Defender for Business", "P3Y", 2,
                         D("648.00"), D("720.00")),
    ]
    skus = [row.sku for row in rows if isinstance(row, AgreementProduct)]
    assert skus == ["CFQ7TTC0LCHC:0002:P1M", "CFQ7TTC0LCHC:0002:P1Y:M", "CFQ7TTC0LCHC:0002:P1Y:A",
                    "CFQ7TTC0LDPB:0001:P1M", "DZH318Z0BPS6:0001", None]
    assert all(isinstance(v, Decimal) for row in rows if isinstance(row, AgreementProduct)
               for v in (row.cost, row.retail))


def test_billing_statements_are_asked_for_a_period_with_the_sdk_defaults(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("billing_statements")
    statements = r.client().list_billing_statements(ORG, from_=date(2025, 11, 1),
                                                    to=date(2026, 11, 23))
    assert r.cassette.all_played
    monthly = InvoiceProfile(3101, "Monthly")
    assert statements[0] == BillingStatement(880101, monthly, date(2026, 10, 1),
                                             date(2026, 10, 31), D("775.09"), 1)
    assert [(s.id, s.provision_type, s.invoice_profile) for s in statements[1:]] == [
        (880102, 2, monthly), (880077, 1, InvoiceProfile(3102, "Annual")), (870101, 1, monthly)]
    assert dict(r.sent[1].url.params) == {
        "organizationId": "9001", "invoiceProfileId": "0", "provisionType": "0",
        "from": "2025-11-01", "to": "2026-11-23", "page": "1", "pageSize": "50"}


def test_the_billing_records_file_is_decoded_and_each_record_parsed_on_its_own(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("billing_records")
    records = r.client().billing_records(880101)
    assert r.cassette.all_played
    assert records[0] == BillingRecord(
        id=880101001, tenant_id="210001", tenant_name="Acme Dental Group",
        tenant_domain="acmedental.onmicrosoft.com", subscription_id=5100001,
        part_number="CFQ7TTC0LCHC:0002", product_name="Microsoft 365 Business Premium",
        start_on=date(2026, 10, 1), end_on=date(2026, 10, 18), quantity=D("20.0"),
        unit_cost=D("23.76"), cost=D("275.92"), unit_retail=D("26.4"), retail=D("306.58"),
        provision_type=1, billing_cycle=1, term="P1M",
    )
    good = [rec for rec in records if isinstance(rec, BillingRecord)]
    assert [(rec.tenant_id, rec.sku, int(rec.quantity)) for rec in good] == [
        ("210001", "CFQ7TTC0LCHC:0002:P1M", 20), ("210001", "CFQ7TTC0LCHC:0002:P1M", 23),
        ("210002", "CFQ7TTC0LCHC:0002:P1Y:M", 10), ("210002", "CFQ7TTC0LDPB:0001:P1M", 5)]
    assert records[4] == MalformedRecord(4, "Amount: missing", record_id=880101005,
                                         tenant_id="210003", tenant_name="Cedar Veterinary Clinic")


def test_a_read_that_fails_with_500_is_retried_and_a_missing_statement_is_not_found(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("server_error_then_ok")
    client = r.client()
    records = client.billing_records(880102)
    assert [rec.id for rec in records if isinstance(rec, BillingRecord)] == [880102001, 880102002]
    with pytest.raises(NotFoundError, match="not found"):
        client.billing_records(880999)
    assert r.cassette.all_played
    assert len(r.clock.sleeps) >= 1  # the back-off before the second attempt


def test_an_organization_the_user_may_not_read_is_a_config_error(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("organization_forbidden")
    with pytest.raises(ConfigError) as caught:
        r.client().list_customer_tenants(9002)
    assert "may not read organization 9002 (403 Forbidden" in str(caught.value)
    assert "You do not have access to organization 9002." in str(caught.value)
    assert r.cassette.all_played


def test_an_api_error_body_gives_its_message_and_object_errors(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("statements_bad_request")
    with pytest.raises(RejectedError) as caught:
        r.client().list_billing_statements(ORG, from_=date(2026, 10, 1), to=date(2026, 9, 1))
    assert caught.value.status == 400
    assert caught.value.messages == ["The request is invalid.",
                                     "PropertyName: To, ErrorMessage: To must not be before From."]
    assert r.cassette.all_played
    assert r.calls()[0] == "POST password"
    assert len(r.calls()) == 2  # a 400 is not retried


# ------------------------------------------------------------------------------- source


def test_a_whole_fetch_turns_october_into_counts_charges_and_statements(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("fetch_october")
    config = CloudiqSettings(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, username=USERNAME,
                           password=PASSWORD, organization_id=ORG)
    source = CloudiqSource(config, is_applied=lambda statement_id: statement_id == "870101",
                           client_factory=r.client, today=lambda: date(2026, 11, 23))
    with source:
        snapshot = source.fetch()
    assert r.cassette.all_played
    assert "GET /billingstatements/870101/billingrecordsfile" not in r.calls()
    bp = "CFQ7TTC0LCHC:0002"
    assert snapshot.statements == (
        Statement("880077", "Annual", date(2026, 10, 1), date(2026, 10, 31), D("2851.20"), 1),
        Statement("880101", "Monthly", date(2026, 10, 1), date(2026, 10, 31), D("775.09"), 1),
        Statement("880102", "Monthly", date(2026, 10, 1), date(2026, 10, 31), D("73.63"), 2),
    )
    assert snapshot.usages == (
        Usage("210001", f"{bp}:P1M", 23, "Monthly", statement_id="880101"),
        Usage("210002", f"{bp}:P1Y:M", 10, "Monthly", statement_id="880101"),
        Usage("210002", "CFQ7TTC0LDPB:0001:P1M", 5, "Monthly", statement_id="880101"),
    )
    assert snapshot.charges == (
        Charge(f"cloudiq:charge:880077:210004:{bp}:P1Y:A:annual:5100010", "880077", "210004",
               "Annual", f"{bp}:P1Y:A", f"{bp}:P1Y:A annual 2026-10-05..2027-10-04 (12 seats)",
               "annual", D(12), D("264.0"), D("237.6")),
        Charge(f"cloudiq:charge:880101:210001:{bp}:P1M:proration:5100001", "880101", "210001",
               "Monthly", f"{bp}:P1M",
               f"{bp}:P1M proration 2026-10-01..2026-10-31 (20 → 23 seats on 2026-10-19)",
               "proration", D(1), D("-45.99"), D("-41.39")),
        Charge("cloudiq:charge:880102:210001:DZH318Z0BPS6:0001:usage", "880102", "210001",
               "Monthly", "DZH318Z0BPS6:0001",
               "DZH318Z0BPS6:0001 usage 2026-10-01..2026-10-31 (Azure plan)", "usage", D(1),
               D("84.68"), D("73.63")),
    )
    assert snapshot.problems == (SourceProblem(
        "statement 880101: record #5 (id 880101005) is unreadable: Amount: missing",
        "210003", "Cedar Veterinary Clinic", billing_motion="Monthly"),)
    assert [(c.id, c.billing_motion) for c in snapshot.customers] == [
        ("210001", "Monthly"), ("210002", "Monthly"), ("210003", "Monthly"),
        ("210004", "Annual")]  # Elm Street Bakery has no invoice profile and no statement yet
    assert snapshot.customers[0] == SourceCustomer(
        "210001", "Acme Dental Group", "Monthly", ("acmedental.onmicrosoft.com",))
    assert [p.sku for p in snapshot.products] == [
        f"{bp}:P1M", f"{bp}:P1Y:A", f"{bp}:P1Y:M", "CFQ7TTC0LDPB:0001:P1M", "DZH318Z0BPS6:0001"]
    assert snapshot.products[0] == SourceProduct(f"{bp}:P1M", "Microsoft 365 Business Premium",
                                                 D("23.76"), D("26.40"))


# ---------------------------------------------------------------------------- cassettes


CASSETTE_FILES = sorted((CASSETTE_DIR / "cloudiq").glob("*.yaml"))


def test_the_cassette_directory_is_not_empty() -> None:
    assert len(CASSETTE_FILES) >= 15


@pytest.mark.parametrize("path", CASSETTE_FILES, ids=lambda p: p.stem)
def test_every_cassette_is_hand_written_cited_and_free_of_secrets(path: Path) -> None:
    cites = ("vendor-apis.md §", "assumed-shapes.md §")
    for request, response in read_hand_written(path, cites=cites):
        assert request["uri"].startswith(BASE_URL + "/")
        if request["uri"] == f"{BASE_URL}/connect/token":
            assert request["headers"]["Authorization"] == [CLOUDIQ_BASIC_PLACEHOLDER]
            assert request["headers"]["Content-Type"] == ["application/x-www-form-urlencoded"]
            fields = dict(parse_qsl(request["body"]))
            assert fields.get("username", CLOUDIQ_USER_PLACEHOLDER) == CLOUDIQ_USER_PLACEHOLDER
            assert fields.get("password", CLOUDIQ_PASSWORD_PLACEHOLDER) == \
                CLOUDIQ_PASSWORD_PLACEHOLDER
            assert fields.get("refresh_token", CLOUDIQ_REFRESH_TOKEN_PLACEHOLDER) == \
                CLOUDIQ_REFRESH_TOKEN_PLACEHOLDER
            token = json.loads(response["body"]["string"])
            assert token["AccessToken"] in (None, CLOUDIQ_ACCESS_TOKEN_PLACEHOLDER)
            assert token["RefreshToken"] in (None, CLOUDIQ_REFRESH_TOKEN_PLACEHOLDER)
        else:
            assert request["headers"]["Authorization"] == [CLOUDIQ_BEARER_PLACEHOLDER]
            assert request["body"] is None
        assert secret_values(json.loads(response["body"]["string"])) <= {
            None, CLOUDIQ_ACCESS_TOKEN_PLACEHOLDER, CLOUDIQ_REFRESH_TOKEN_PLACEHOLDER}


def secret_values(value: Any) -> set[Any]:
    """Values under keys that name a token, password or secret (`TokenType` is neither)."""
    if isinstance(value, dict):
        found = {v for k, v in value.items()
                 if re.search("token|password|secret", k, re.IGNORECASE) and k != "TokenType"}
        return found.union(*(secret_values(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(secret_values(v) for v in value))
    return set()


def test_recording_filters_scrub_the_cloudiq_login_and_tokens(
    cloudiq_vcr: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret, password = "Zq8~client-secret-from-the-portal", "Pa55-w0rd!"
    monkeypatch.setenv("SYNC_DAEMON_CLOUDIQ__CLIENT_SECRET", secret)
    config = cloudiq_vcr.get_merged_config(path="unused.yaml")
    scrub_request: Callable[[Request], Request] = config["before_record_request"]
    scrub_response: Callable[[dict[str, Any]], dict[str, Any]] = config["before_record_response"]
    basic = base64.b64encode(f"real-client:{secret}".encode()).decode()

    grant = scrub_request(Request(
        "POST", f"{BASE_URL}/connect/token",
        f"grant_type=password&username=ops%40real-msp.example&password={password}"
        "&scope=CustomerApi".encode(),
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    ))
    assert grant.headers["Authorization"] == CLOUDIQ_BASIC_PLACEHOLDER
    assert dict(parse_qsl(grant.body.decode())) == {
        "grant_type": "password", "username": CLOUDIQ_USER_PLACEHOLDER,
        "password": CLOUDIQ_PASSWORD_PLACEHOLDER, "scope": "CustomerApi"}
    refresh = scrub_request(Request(
        "POST", f"{BASE_URL}/connect/token", b"grant_type=refresh_token&refresh_token=r-123",
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    ))
    assert refresh.body == b"grant_type=refresh_token&refresh_token=<CLOUDIQ_REFRESH_TOKEN>"
    call = scrub_request(Request("GET", f"{BASE_URL}/me", None,
                                 {"Authorization": "Bearer eyJhbGciOi.real.token"}))
    assert call.headers["Authorization"] == CLOUDIQ_BEARER_PLACEHOLDER

    response = scrub_response({
        "status": {"code": 200, "message": "OK"},
        "headers": {"Content-Type": ["application/json"]},
        "body": {"string": json.dumps({
            "AccessToken": "eyJhbGciOi.real.token", "IdentityToken": "eyJpZCI6.real",
            "Error": None, "ExpiresIn": 3600, "TokenType": "Bearer",
            "RefreshToken": "r-456", "Note": f"client secret {secret}"}).encode()},
    })
    assert json.loads(response["body"]["string"]) == {
        "AccessToken": CLOUDIQ_ACCESS_TOKEN_PLACEHOLDER,
        "IdentityToken": CLOUDIQ_IDENTITY_TOKEN_PLACEHOLDER, "Error": None, "ExpiresIn": 3600,
        "TokenType": "Bearer", "RefreshToken": CLOUDIQ_REFRESH_TOKEN_PLACEHOLDER,
        "Note": "client secret <CLOUDIQ_CLIENT_SECRET>"}
    me = scrub_response({"status": {"code": 200, "message": "OK"}, "headers": {}, "body": {
        "string": json.dumps({"UserName": "ops", "Token": "eyJhbGciOi.real.token"}).encode()}})
    assert json.loads(me["body"]["string"]) == {"UserName": "ops",
                                                "Token": CLOUDIQ_ACCESS_TOKEN_PLACEHOLDER}
