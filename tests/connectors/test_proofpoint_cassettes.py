"""The Proofpoint Essentials connector against the vendor's wire format, from written cassettes.

Each test opens one cassette from `cassettes/proofpoint/`, drives `ProofpointClient` (or a
`ProofpointSource` whose clients all play the same cassette) through it and checks the parsed
records, the credentials sent and that every pinned interaction was played. Time is fake:
retries and the rate limiter sleep on a recording clock, so nothing waits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.request import Request

from sync_daemon.connectors.proofpoint import (
    MalformedOrg,
    ProofpointClient,
    ProofpointLogin,
    ProofpointOrg,
    ProofpointSource,
    ProofpointUser,
)
from sync_daemon.errors import ConfigError, InvariantError
from sync_daemon.settings import PackagePrice, ProofpointSettings
from sync_daemon.vendor import Snapshot, SourceCustomer, SourceProblem, SourceProduct, Usage
from tests.connectors.conftest import (
    CASSETTE_DIR,
    PROOFPOINT_PASSWORD_PLACEHOLDER,
    PROOFPOINT_USER_PLACEHOLDER,
    FakeClock,
    RecordingTransport,
    read_hand_written,
)

US1 = "https://us1.proofpointessentials.com/api/v1"
US2 = "https://us2.proofpointessentials.com/api/v1"
PARTNER = "msp.example"
# Never leave the process: vcrpy answers every request.
TEST_USER = "cassette-user@msp.example"
TEST_PASSWORD = "cassette-test-password"

PRICES = {
    "business": PackagePrice(name="Proofpoint Essentials Business", cost=Decimal("1.50"),
                             retail=Decimal("3.00")),
    "business_plus": PackagePrice(name="Proofpoint Essentials Business+", cost=Decimal("2.10"),
                                  retail=Decimal("4.20")),
    "professional": PackagePrice(name="Proofpoint Essentials Professional",
                                 cost=Decimal("3.00"), retail=Decimal("6.00")),
    "professional_plus": PackagePrice(name="Proofpoint Essentials Professional+",
                                      cost=Decimal("3.60"), retail=Decimal("7.20")),
}


def settings(*base_urls: str, **changes: Any) -> ProofpointSettings:
    values: dict[str, Any] = {
        "base_url": list(base_urls) or [US1], "username": TEST_USER, "password": TEST_PASSWORD,
        "partner_domain": PARTNER, "packages": PRICES,
    }
    return ProofpointSettings(**{**values, **changes})


@dataclass
class Replay:
    """Clients wired to one cassette, with every request they sent and how long they slept."""

    cassette: Any
    clock: FakeClock
    stack: ExitStack = field(repr=False)
    sent: list[httpx.Request] = field(default_factory=list)

    def client(self, base_url: str = US1) -> ProofpointClient:
        transport = RecordingTransport()
        transport.sent = self.sent  # one log for every client, in the order sent
        return self.stack.enter_context(ProofpointClient.connect(
            base_url, TEST_USER, TEST_PASSWORD, transport=transport, sleep=self.clock.sleep,
            clock=self.clock.monotonic,
        ))

    def source(self, config: ProofpointSettings) -> ProofpointSource:
        return self.stack.enter_context(ProofpointSource(config, client_factory=self.client))

    def paths(self) -> list[str]:
        return [f"{r.url.host.split('.')[0]} {r.url.path}" for r in self.sent]


@pytest.fixture
def replay(proofpoint_vcr: Any) -> Iterator[Callable[[str], Replay]]:
    with ExitStack() as stack:

        def start(name: str) -> Replay:
            cassette = stack.enter_context(proofpoint_vcr.use_cassette(f"proofpoint/{name}.yaml"))
            return Replay(cassette=cassette, clock=FakeClock(), stack=stack)

        yield start


# ---------------------------------------------------------------------------- client


def test_me_sends_the_login_in_x_user_and_x_password(replay: Callable[[str], Replay]) -> None:
    r = replay("me")
    assert r.client().me() == ProofpointLogin(
        uid=600001, primary_email="api-admin@msp.example", type="channel_admin",
        is_partner_admin=True, entity_primary_domain="msp.example",
    )
    assert r.cassette.all_played
    [sent] = r.sent
    assert sent.headers["X-User"] == TEST_USER
    assert sent.headers["X-Password"] == TEST_PASSWORD
    assert "Authorization" not in sent.headers  # not HTTP Basic (vendor-apis.md §A.2)
    assert TEST_PASSWORD not in str(sent.url)


EVERGREEN = ProofpointOrg(
    eid=100105, name="Evergreen Law LLP", primary_domain="evergreenlaw.example",
    type="organization", is_active=True, is_on_trial=False, licensing_package="business",
    user_licenses=15, active_users=15,
    domains=("evergreenlaw.example", "evergreen-legal.example"),
)
ACME = ProofpointOrg(
    eid=100101, name="Acme Dental Group", primary_domain="acmedental.example",
    type="organization", is_active=True, is_on_trial=False, licensing_package="business_plus",
    user_licenses=25, active_users=22, domains=("acmedental.example", "acmesmiles.example"),
)


def test_child_list_parses_every_org_of_the_stack(replay: Callable[[str], Replay]) -> None:
    r = replay("child_orgs_us1")
    orgs = r.client().list_child_orgs(PARTNER)
    assert orgs == [
        EVERGREEN,
        ACME,
        ProofpointOrg(
            eid=100112, name="Northwind Clinic", primary_domain="northwindclinic.example",
            type="organization", is_active=True, is_on_trial=True, licensing_package="advanced",
            user_licenses=10, active_users=8, domains=("northwindclinic.example",),
        ),
        ProofpointOrg(
            eid=100118, name="Harbor Freight Co-op", primary_domain="harborfreightcoop.example",
            type="organization", is_active=False, is_on_trial=False,
            licensing_package="professional", user_licenses=12, active_users=0,
            domains=("harborfreightcoop.example",),
        ),
        ProofpointOrg(
            eid=100124, name="Maple Street Bakery", primary_domain="maplestreetbakery.example",
            type="organization", is_active=True, is_on_trial=False,
            licensing_package="professional_plus", user_licenses=40, active_users=31,
            domains=("maplestreetbakery.example",),
        ),
        ProofpointOrg(
            eid=100130, name="Lakeside IT Partners", primary_domain="lakeside-it.example",
            type="channel", is_active=True, is_on_trial=False, licensing_package=None,
            user_licenses=0, active_users=3, domains=("lakeside-it.example",),
        ),
    ]
    # "15" and "40" on the wire: whole numbers, never strings.
    assert all(isinstance(o, ProofpointOrg) and isinstance(o.user_licenses, int) for o in orgs)
    assert r.paths() == ["us1 /api/v1/orgs/msp.example/orgs"]
    assert r.cassette.all_played


def test_users_list_reads_types_and_flags(replay: Callable[[str], Replay]) -> None:
    r = replay("users")
    users = r.client().list_users("cedarridgedental.example")
    assert [(u.uid, u.primary_email, u.type, u.is_active, u.is_billable) for u in users] == [
        (700101, "office@cedarridgedental.example", "organization_admin", True, True),
        (700102, "dr.lee@cedarridgedental.example", "end_user", True, True),
        (700103, "hygiene@cedarridgedental.example", "end_user", True, True),
        (700104, "frontdesk@cedarridgedental.example", "end_user", True, True),
        (700105, "scanner@cedarridgedental.example", "functional_account", True, True),
        (700106, "noreply@cedarridgedental.example", "silent_user", True, True),
        (700107, "former.assistant@cedarridgedental.example", "end_user", False, True),
        (700108, "owner@cedarridgedental.example", "end_user", True, False),
    ]
    assert [u.primary_email.split("@")[0] for u in users if u.takes_a_licence] == [
        "office", "dr.lee", "hygiene", "frontdesk"]
    assert isinstance(users[0], ProofpointUser)
    assert r.cassette.all_played


def test_malformed_orgs_cost_only_themselves(replay: Callable[[str], Replay]) -> None:
    r = replay("malformed_orgs")
    orgs = r.client().list_child_orgs(PARTNER)
    assert [o.eid for o in orgs if isinstance(o, ProofpointOrg)] == [100301, 100309]
    broken = [o for o in orgs if isinstance(o, MalformedOrg)]
    assert [(o.position, o.eid, o.reason) for o in broken] == [
        (1, None, "eid: missing"),
        (2, None, "eid: expected a positive id, got 'E-100303'"),
        (3, 100304, "name: must not be empty"),
        (4, 100305, "user_licenses: 10000000 is not a plausible seat count (more than 100000)"),
        (5, 100306, "active_users: a seat count cannot be negative (got -3)"),
        (6, 100307, "licensing_package: expected a package name, got 42"),
        (7, None, "expected an org object, got NoneType"),
    ]
    assert broken[0].name == "Nameless Eid Inc"
    assert broken[2].primary_domain == "blankname.example"
    assert r.cassette.all_played


# ------------------------------------------------------------------------ errors


def test_refused_credentials_are_a_config_error(replay: Callable[[str], Replay]) -> None:
    r = replay("auth_bad_password")
    with pytest.raises(ConfigError, match="refused the username/password") as caught:
        r.client().me()
    assert "us1.proofpointessentials.com" in str(caught.value)
    assert TEST_PASSWORD not in str(caught.value)
    assert r.cassette.play_count == 1  # static credentials: nothing to refresh, no retry
    assert r.cassette.all_played


def test_a_login_without_a_partner_role_is_told_which_role_works(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("not_partner_admin")
    with pytest.raises(ConfigError, match="not a partner admin") as caught:
        r.client().list_child_orgs(PARTNER)
    assert "Channel Admin is the least privileged role" in str(caught.value)
    assert r.cassette.play_count == 1
    assert r.cassette.all_played


def test_a_stack_without_the_partner_has_no_orgs_for_it(replay: Callable[[str], Replay]) -> None:
    r = replay("partner_not_on_stack")
    with capture_logs() as logs:
        assert r.client(US2).list_child_orgs(PARTNER) == []
    assert {"event": "proofpoint.partner_not_on_stack", "stack": US2,
            "partner_domain": PARTNER, "log_level": "warning"} in logs
    assert r.cassette.play_count == 1  # a 404 is an answer: no retry
    assert r.cassette.all_played


def test_429_without_retry_after_backs_off_exponentially(replay: Callable[[str], Replay]) -> None:
    r = replay("rate_limited")
    assert r.client().list_child_orgs(PARTNER) == [
        ProofpointOrg(
            eid=100105, name="Evergreen Law LLP", primary_domain="evergreenlaw.example",
            type="organization", is_active=True, is_on_trial=False,
            licensing_package="business", user_licenses=15, active_users=15,
            domains=("evergreenlaw.example",),
        ),
    ]
    assert r.cassette.play_count == 3
    assert r.cassette.all_played
    first, second = r.clock.sleeps  # tenacity's back-off: 1 s then 2 s, plus up to 1 s jitter
    assert 1 <= first <= 2
    assert 2 <= second <= 3


# ------------------------------------------------------------------------ source


def test_check_names_the_login_and_a_stack_missing_from_the_config(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("check_two_stacks")
    with capture_logs() as logs:
        text = r.source(settings(US1, US2)).check()
    assert text == (
        "as api-admin@msp.example (channel_admin) for msp.example on us1, us2; "
        "msp.example also has orgs on us3, not in proofpoint.base_url"
    )
    assert {"event": "proofpoint.stack_not_configured", "partner_domain": PARTNER,
            "stacks": ["us3"], "log_level": "warning"} in logs
    assert r.paths() == ["us1 /api/v1/me", "us2 /api/v1/me", "us1 /api/v1/endpoints/msp.example"]
    assert r.cassette.all_played


def test_check_reports_a_partner_domain_proofpoint_does_not_know(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("check_unknown_partner")
    with pytest.raises(ConfigError, match=r"'msp\.exmaple' is unknown to Proofpoint"):
        r.source(settings(partner_domain="msp.exmaple")).check()
    assert r.cassette.all_played


def test_fetch_reads_one_stack_into_a_snapshot(replay: Callable[[str], Replay]) -> None:
    r = replay("child_orgs_us1")
    snapshot = r.source(settings(US1)).fetch()
    assert snapshot == Snapshot(
        vendor="proofpoint",
        customers=(
            SourceCustomer(id="100105", name="Evergreen Law LLP",
                           domains=("evergreenlaw.example", "evergreen-legal.example")),
            SourceCustomer(id="100101", name="Acme Dental Group",
                           domains=("acmedental.example", "acmesmiles.example")),
            SourceCustomer(id="100112", name="Northwind Clinic",
                           domains=("northwindclinic.example",)),
            SourceCustomer(id="100118", name="Harbor Freight Co-op",
                           domains=("harborfreightcoop.example",)),
            SourceCustomer(id="100124", name="Maple Street Bakery",
                           domains=("maplestreetbakery.example",)),
        ),
        products=(
            SourceProduct(sku="PPE-BUSINESS", name="Proofpoint Essentials Business",
                          cost=Decimal("1.50"), retail=Decimal("3.00")),
            SourceProduct(sku="PPE-BUSINESS_PLUS", name="Proofpoint Essentials Business+",
                          cost=Decimal("2.10"), retail=Decimal("4.20")),
            SourceProduct(sku="PPE-PROFESSIONAL", name="Proofpoint Essentials Professional",
                          cost=Decimal("3.00"), retail=Decimal("6.00")),
            SourceProduct(sku="PPE-PROFESSIONAL_PLUS",
                          name="Proofpoint Essentials Professional+",
                          cost=Decimal("3.60"), retail=Decimal("7.20")),
        ),
        usages=(
            Usage("100105", "PPE-BUSINESS", 15),
            Usage("100101", "PPE-BUSINESS_PLUS", 22),
            Usage("100118", "PPE-PROFESSIONAL", 0, billable=False, note="inactive"),
            Usage("100124", "PPE-PROFESSIONAL_PLUS", 31),
        ),
        problems=(
            SourceProblem("package 'advanced' has no price in [proofpoint.packages.advanced]",
                          customer_id="100112", customer="Northwind Clinic"),
        ),
    )
    assert r.cassette.all_played


def test_fetch_merges_the_stacks_and_an_org_listed_on_both(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("fetch_two_stacks")
    snapshot = r.source(settings(US1, US2, count="user_licenses")).fetch()
    assert snapshot.customers == (
        SourceCustomer(id="100105", name="Evergreen Law LLP",
                       domains=("evergreenlaw.example", "evergreen-legal.example")),
        SourceCustomer(id="100101", name="Acme Dental Group",
                       domains=("acmedental.example", "acmesmiles.example")),
        SourceCustomer(id="200207", name="Pinecrest Accounting",
                       domains=("pinecrestcpa.example",)),
    )
    assert snapshot.usages == (
        Usage("100105", "PPE-BUSINESS", 15),
        Usage("100101", "PPE-BUSINESS_PLUS", 25),
        Usage("200207", "PPE-BUSINESS", 9),
    )
    assert [p.sku for p in snapshot.products] == ["PPE-BUSINESS", "PPE-BUSINESS_PLUS"]
    assert snapshot.problems == ()  # the same data on both stacks (domains in another order)
    assert r.paths() == ["us1 /api/v1/orgs/msp.example/orgs", "us2 /api/v1/orgs/msp.example/orgs"]
    assert r.cassette.all_played


def test_fetch_recounts_billable_users_only_where_it_bills(
    replay: Callable[[str], Replay],
) -> None:
    r = replay("fetch_billable_users")
    prices = {**PRICES, "advanced": PackagePrice(
        name="Proofpoint Essentials Advanced", cost=Decimal("2.40"), retail=Decimal("4.80"))}
    snapshot = r.source(settings(count="billable_users", packages=prices)).fetch()
    assert snapshot.usages == (
        Usage("100141", "PPE-BUSINESS", 4),
        Usage("100147", "PPE-BUSINESS", 2,
              note="2 billable users; Proofpoint's active_users says 3"),
        Usage("100152", "PPE-ADVANCED", 0, billable=False, note="on trial"),
    )
    assert snapshot.problems == ()
    # One request per billed org; the trial's users are not read.
    assert r.paths() == [
        "us1 /api/v1/orgs/msp.example/orgs",
        "us1 /api/v1/orgs/cedarridgedental.example/users",
        "us1 /api/v1/orgs/birchwoodvet.example/users",
    ]
    assert r.cassette.all_played


def test_fetch_turns_malformed_orgs_into_problems(replay: Callable[[str], Replay]) -> None:
    r = replay("malformed_orgs")
    # Two orgs have no readable eid: whose they are cannot be told, so the list is untrusted.
    with pytest.raises(InvariantError, match=(
            "org Nameless Eid Inc on us1 is malformed: eid: missing; without its eid")):
        r.source(settings()).fetch()
    assert r.cassette.all_played


def test_fetch_turns_malformed_orgs_with_an_eid_into_their_own_problems(
        replay: Callable[[str], Replay]) -> None:
    r = replay("malformed_orgs")

    class WithEids:
        """The cassette's client, minus the orgs whose eid cannot be read."""

        def __init__(self, client: ProofpointClient) -> None:
            self.client = client

        def __getattr__(self, name: str) -> Any:
            return getattr(self.client, name)

        def list_child_orgs(self, partner_domain: str) -> list[Any]:
            return [o for o in self.client.list_child_orgs(partner_domain) if o.eid is not None]

    source = r.stack.enter_context(ProofpointSource(
        settings(), client_factory=lambda url: WithEids(r.client(url))))
    snapshot = source.fetch()
    assert [c.id for c in snapshot.customers] == [
        "100301", "100309", "100304", "100305", "100306", "100307"]
    assert snapshot.usages == (
        Usage("100301", "PPE-BUSINESS", 7), Usage("100309", "PPE-BUSINESS_PLUS", 11))
    assert [(p.customer_id, p.customer, p.message) for p in snapshot.problems] == [
        ("100304", None, "org blankname.example on us1 is malformed: name: must not be empty"),
        ("100305", "Vast Holdings", ("org Vast Holdings on us1 is malformed: user_licenses: "
                                      "10000000 is not a plausible seat count (more than 100000)")),
        ("100306", "Minus Mail Co", ("org Minus Mail Co on us1 is malformed: active_users: "
                                      "a seat count cannot be negative (got -3)")),
        ("100307", "Numeric Package Ltd", ("org Numeric Package Ltd on us1 is malformed: "
                                            "licensing_package: expected a package name, got 42")),
    ]
    assert r.cassette.all_played


# ------------------------------------------------------------------ the cassettes themselves


def test_playback_never_reaches_the_network(replay: Callable[[str], Replay]) -> None:
    r = replay("me")
    client = r.client()
    client.me()
    with pytest.raises(CannotOverwriteExistingCassetteException):
        client.me()  # the one interaction is used up; nothing may go out for real


CASSETTE_FILES = sorted((CASSETTE_DIR / "proofpoint").glob("*.yaml"))


def test_the_cassette_directory_is_not_empty() -> None:
    assert len(CASSETTE_FILES) >= 12


@pytest.mark.parametrize("path", CASSETTE_FILES, ids=lambda p: p.stem)
def test_every_cassette_is_hand_written_cited_and_free_of_secrets(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "Scenario:" in text.split("\ninteractions:", 1)[0]
    cites = ("vendor-apis.md §A", "assumed-shapes.md §2")
    for request, response in read_hand_written(path, cites=cites):
        assert request["uri"].startswith((US1 + "/", US2 + "/"))
        assert request["headers"]["X-User"] == [PROOFPOINT_USER_PLACEHOLDER]
        assert request["headers"]["X-Password"] == [PROOFPOINT_PASSWORD_PLACEHOLDER]
        assert "Authorization" not in request["headers"]
        assert request["body"] is None  # the connector only reads
        # Proofpoint sends no Retry-After, not even with a 429 (assumed-shapes.md §2.1).
        assert "Retry-After" not in response["headers"]
        content_type = response["headers"].get("Content-Type", [""])[0]
        body = response["body"]["string"]
        if "json" in content_type:
            json.loads(body)
        else:
            assert not body.lstrip().startswith(("{", "["))
    assert text.count("X-User:") == text.count(PROOFPOINT_USER_PLACEHOLDER)
    assert text.count("X-Password:") == text.count(PROOFPOINT_PASSWORD_PLACEHOLDER)


def test_recording_filters_scrub_the_proofpoint_login_wherever_it_appears(
    proofpoint_vcr: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = "ops-admin@real-msp.example", "Pa55-w0rd-ops-admin@real-msp.example!"
    monkeypatch.setenv("SYNC_DAEMON_PROOFPOINT__USERNAME", user)
    monkeypatch.setenv("PROOFPOINT_PASSWORD", password)
    config = proofpoint_vcr.get_merged_config(path="unused.yaml")
    scrub_request: Callable[[Request], Request] = config["before_record_request"]
    scrub_response: Callable[[dict[str, Any]], dict[str, Any]] = config["before_record_response"]

    request = scrub_request(Request(
        "GET", f"{US1}/orgs/real-msp.example/users/{user}", None,
        {"x-user": user, "X-PASSWORD": password, "Accept": "application/json"},
    ))
    assert request.headers["X-User"] == PROOFPOINT_USER_PLACEHOLDER
    assert request.headers["X-Password"] == PROOFPOINT_PASSWORD_PLACEHOLDER
    assert user not in request.uri
    assert request.uri.endswith(f"/users/{PROOFPOINT_USER_PLACEHOLDER}")

    response = scrub_response({
        "status": {"code": 200, "message": "OK"},
        "headers": {"Content-Type": ["application/json"]},
        "body": {"string": json.dumps({"uid": 600001, "primary_email": user,
                                       "note": f"password was {password}"}).encode()},
    })
    body = response["body"]["string"]
    assert user.encode() not in body
    assert password.encode() not in body
    # The password contains the user name: it is replaced whole, not around the user name.
    assert json.loads(body) == {"uid": 600001, "primary_email": PROOFPOINT_USER_PLACEHOLDER,
                                "note": f"password was {PROOFPOINT_PASSWORD_PLACEHOLDER}"}
