"""The Proofpoint Essentials sandbox over real HTTP, checked against the reference documents."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from sync_daemon.sandbox import (
    DEMO_PARTNER_DOMAIN,
    DEMO_PROOFPOINT_ORG_ADMIN,
    DEMO_PROOFPOINT_PASSWORD,
    DEMO_PROOFPOINT_READ_ONLY_USER,
    DEMO_PROOFPOINT_USER,
    ProofpointSandbox,
    ProofpointState,
    demo_proofpoint_state,
    demo_syncro_state,
)
from tests.sandbox.conftest import FakeClock

PARTNER = "msp.example"
OTHER_PARTNER = "other-msp.example"
PASSWORD = "secret-password"
ADMIN = {"X-User": f"admin@{PARTNER}", "X-Password": PASSWORD}
ORG_ADMIN = {"X-User": "boss@acmedental.example", "X-Password": PASSWORD}
READ_ONLY = {"X-User": f"viewer@{PARTNER}", "X-Password": PASSWORD}
END_USER = {"X-User": "clerk@acmedental.example", "X-Password": PASSWORD}
UNAUTHORIZED = {"message": "Unauthorized"}
FORBIDDEN = {"message": "Forbidden"}
NOT_FOUND = {"message": "Not Found"}
# assumed-shapes §2.5, every field.
ORG_KEYS = {
    "name", "primary_domain", "eid", "type", "is_active", "licensing_package", "user_licenses",
    "active_users", "is_on_trial", "when_renewal", "is_beginner_plus",
    "is_beginner_plus_enabled", "domains", "www", "address", "postcode", "stateprov", "country",
    "phone", "outgoing_servers", "safe_list_senders", "block_list_senders",
    "account_template_id", "send_welcome_email",
}  # fmt: skip
USER_KEYS = {
    "uid", "primary_email", "firstname", "surname", "type", "is_active", "is_billable",
    "alias_emails", "safe_list_senders", "block_list_senders", "read_only_user",
}  # fmt: skip

Get = Callable[..., httpx.Response]
MakeSandbox = Callable[..., ProofpointSandbox]


def seeded() -> ProofpointState:
    """Two partners; MSP customers on us1 and us2; the other partner's customer on us1."""
    state = ProofpointState()
    state.add_partner("MSP", PARTNER, stack="us1")
    state.add_login(PARTNER, ADMIN["X-User"], PASSWORD)
    state.add_login(PARTNER, READ_ONLY["X-User"], PASSWORD, read_only=True)
    acme = state.add_org(
        "Acme Dental", "acmedental.example", parent=PARTNER, stack="us1", user_licenses=25,
        extra_domains=["acme-dental.example"], when_renewal=date(2026, 11, 1),
    )  # fmt: skip
    state.add_login(acme.primary_domain, ORG_ADMIN["X-User"], PASSWORD)
    state.add_login(acme.primary_domain, END_USER["X-User"], PASSWORD, type="end_user")
    state.add_org(
        "Evergreen Law", "evergreenlaw.example", parent=PARTNER, stack="us1",
        package="business_plus", user_licenses="15",
    )  # fmt: skip
    state.add_org("Riverside Vet", "riversidevet.example", parent=PARTNER, stack="us2")
    state.add_partner("Other MSP", OTHER_PARTNER, stack="us1")
    state.add_org("Stranger Co", "stranger.example", parent=OTHER_PARTNER, stack="us1")
    return state


def floats_in(value: Any) -> list[float]:
    """Every float anywhere in a decoded JSON document."""
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in floats_in(v)]
    if isinstance(value, list):
        return [f for v in value for f in floats_in(v)]
    return []


def getter(sandbox: ProofpointSandbox, http: httpx.Client) -> Get:
    """`get(path, stack="us1", auth=ADMIN)` against one stack of `sandbox`."""

    def get(path: str, stack: str = "us1", auth: dict[str, str] | None = ADMIN) -> httpx.Response:
        return http.get(sandbox.stack_url(stack) + path, headers=auth or {})

    return get


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One plain client for the module; tests pass absolute URLs and headers."""
    with httpx.Client(timeout=5.0) as client:
        yield client


@pytest.fixture(scope="module")
def pp() -> Iterator[ProofpointSandbox]:
    """A sandbox over `seeded()` shared by the tests that only read; the others use `fresh`."""
    with ProofpointSandbox(seeded()) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def get(pp: ProofpointSandbox, http: httpx.Client) -> Get:
    return getter(pp, http)


@pytest.fixture
def pp_state() -> ProofpointState:
    return seeded()


@pytest.fixture
def make_pp(pp_state: ProofpointState, clock: FakeClock) -> Iterator[MakeSandbox]:
    """Start sandboxes over `pp_state` and the fake clock; all stopped at teardown."""
    started: list[ProofpointSandbox] = []

    def make(**kwargs: Any) -> ProofpointSandbox:
        sandbox = ProofpointSandbox(pp_state, clock=clock, **kwargs).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def fresh(make_pp: MakeSandbox) -> ProofpointSandbox:
    """A sandbox of its own over `pp_state`, for tests that seed or inject faults."""
    return make_pp()


@pytest.fixture
def fresh_get(fresh: ProofpointSandbox, http: httpx.Client) -> Get:
    return getter(fresh, http)


# -- stacks and auth (vendor-apis §A.1, §A.2, assumed-shapes §2.1, §2.2) ------------------------


def test_each_stack_has_its_own_port_and_api_url(pp: ProofpointSandbox) -> None:
    assert set(pp.stacks) == {"us1", "us2"}
    urls = {pp.stack_url("us1"), pp.stack_url("us2")}
    assert len(urls) == 2
    assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1", url) for url in urls)


def test_me_describes_a_partner_login(get: Get, pp: ProofpointSandbox) -> None:
    me = get("/me", stack="us2").json()
    assert me == {
        "uid": me["uid"], "primary_email": f"admin@{PARTNER}", "firstname": "API",
        "surname": "Admin", "type": "channel_admin", "is_active": True, "read_only_user": False,
        "is_admin": True, "is_partner_admin": True, "entity_type": "channel",
        "entity_primary_domain": PARTNER, "eid": pp.state.org(PARTNER).eid,
    }  # fmt: skip
    assert isinstance(me["uid"], int)


def test_me_describes_organization_and_read_only_logins(get: Get) -> None:
    org_admin = get("/me", auth=ORG_ADMIN).json()
    assert (org_admin["type"], org_admin["entity_type"]) == ("organization_admin", "organization")
    assert org_admin["is_partner_admin"] is False
    assert org_admin["entity_primary_domain"] == "acmedental.example"
    assert get("/me", auth=READ_ONLY).json()["read_only_user"] is True


@pytest.mark.parametrize(
    "headers",
    [
        {"x-user": f"admin@{PARTNER}", "x-password": PASSWORD},
        {"X-USER": f"ADMIN@{PARTNER}", "X-PASSWORD": PASSWORD, "X-Terms-Update": "true"},
    ],
)
def test_header_names_are_case_insensitive(get: Get, headers: dict[str, str]) -> None:
    assert get("/orgs/acmedental.example", auth=headers).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"X-User": f"admin@{PARTNER}"},
        {"X-User": f"admin@{PARTNER}", "X-Password": "wrong"},
        {"X-User": "nobody@msp.example", "X-Password": PASSWORD},
        {"Authorization": "Basic YWRtaW5AbXNwLmV4YW1wbGU6c2VjcmV0LXBhc3N3b3Jk"},
    ],
)
def test_bad_or_missing_credentials_are_401(get: Get, headers: dict[str, str] | None) -> None:
    for path in ("/me", "/endpoints/acmedental.example", "/orgs/msp.example/orgs", "/nope"):
        response = get(path, auth=headers)
        assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


def test_a_deactivated_login_is_401(fresh_get: Get, pp_state: ProofpointState) -> None:
    pp_state.org(PARTNER).users[0].is_active = False
    assert fresh_get("/me").status_code == 401


def test_unknown_route_is_a_json_404(get: Get) -> None:
    response = get("/orgs/acmedental.example/unknown")
    assert (response.status_code, response.json()) == (404, NOT_FOUND)


# -- endpoints (assumed-shapes §2.3) ---------------------------------------------------------


@pytest.mark.parametrize("stack", ["us1", "us2"])
def test_endpoints_answer_on_any_stack_with_the_sandbox_urls(
    get: Get, pp: ProofpointSandbox, stack: str
) -> None:
    us2 = {"stack": "us2", "url": pp.stack_url("us2")}
    assert get("/endpoints/riversidevet.example", stack=stack).json() == {"endpoints": [us2]}
    assert get("/endpoints/ACME-Dental.example", stack=stack).json() == {
        "endpoints": [{"stack": "us1", "url": pp.stack_url("us1")}]
    }
    # A partner is listed on every stack hosting one of its customers (§2.4).
    partner = get(f"/endpoints/{PARTNER}", stack=stack).json()["endpoints"]
    assert [e["stack"] for e in partner] == ["us1", "us2"]


def test_endpoints_of_an_unknown_domain_is_404(get: Get) -> None:
    response = get("/endpoints/unknown.example")
    assert (response.status_code, response.json()) == (404, NOT_FOUND)


def test_an_org_on_a_stack_not_served_never_points_at_a_real_host(
    make_pp: MakeSandbox, pp_state: ProofpointState, http: httpx.Client
) -> None:
    with pytest.raises(ValueError, match="us2"):
        ProofpointSandbox(pp_state, stacks=["us1"]).start()
    sandbox = make_pp()
    pp_state.add_org("Later Co", "later.example", parent=PARTNER, stack="us3")
    endpoints = http.get(sandbox.stack_url("us1") + "/endpoints/later.example", headers=ADMIN)
    assert endpoints.json()["endpoints"][0]["url"].endswith(".invalid/api/v1")


# -- child orgs (assumed-shapes §2.4) --------------------------------------------------------


def test_child_orgs_are_those_on_the_stack_asked_and_never_the_partner(get: Get) -> None:
    us1 = get(f"/orgs/{PARTNER}/orgs").json()
    us2 = get(f"/orgs/{PARTNER}/orgs", stack="us2").json()
    assert set(us1) == {"orgs"}
    assert [o["primary_domain"] for o in us1["orgs"]] == [
        "acmedental.example",
        "evergreenlaw.example",
    ]
    assert [o["primary_domain"] for o in us2["orgs"]] == ["riversidevet.example"]
    assert all(set(o) == ORG_KEYS for o in us1["orgs"] + us2["orgs"])


def test_child_orgs_of_an_end_customer_is_an_empty_list(get: Get) -> None:
    assert get("/orgs/acmedental.example/orgs").json() == {"orgs": []}


@pytest.mark.parametrize(
    ("path", "auth"),
    [
        (f"/orgs/{PARTNER}/orgs", ORG_ADMIN),
        ("/orgs/acmedental.example/orgs", ORG_ADMIN),
        (f"/orgs/{OTHER_PARTNER}/orgs", ADMIN),
    ],
)
def test_child_orgs_are_403_outside_a_partner_login(
    get: Get, path: str, auth: dict[str, str]
) -> None:
    response = get(path, auth=auth)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)


def test_child_orgs_are_served_whole(fresh_get: Get, pp_state: ProofpointState) -> None:
    for n in range(300):
        pp_state.add_org(f"Bulk {n}", f"bulk{n}.example", parent=PARTNER, stack="us2")
    assert len(fresh_get(f"/orgs/{PARTNER}/orgs", stack="us2").json()["orgs"]) == 301


def test_a_nested_partner_is_a_child_on_the_stacks_of_its_customers(
    fresh_get: Get, pp_state: ProofpointState
) -> None:
    pp_state.add_partner("Reseller", "reseller.example", parent=PARTNER, stack="us1")
    pp_state.add_org("Deep Co", "deep.example", parent="reseller.example", stack="us2")
    us2 = fresh_get(f"/orgs/{PARTNER}/orgs", stack="us2").json()["orgs"]
    assert [o["primary_domain"] for o in us2] == ["riversidevet.example", "reseller.example"]
    assert fresh_get("/orgs/deep.example", stack="us2").json()["name"] == "Deep Co"


# -- one org (assumed-shapes §2.5) -----------------------------------------------------------


@pytest.mark.parametrize(
    "domain", ["acmedental.example", "acme-dental.example", "ACME-Dental.Example"]
)
def test_an_org_is_found_by_any_of_its_domains_in_any_case(get: Get, domain: str) -> None:
    org = get(f"/orgs/{domain}").json()
    assert org["primary_domain"] == "acmedental.example"
    assert [d["name"] for d in org["domains"]] == ["acmedental.example", "acme-dental.example"]


def test_the_org_object_has_every_field_with_its_types(get: Get) -> None:
    org = get("/orgs/acmedental.example").json()
    assert set(org) == ORG_KEYS
    assert org["type"] == "organization"
    assert org["licensing_package"] == "business"
    assert org["when_renewal"] == "2026-11-01"
    assert isinstance(org["eid"], int)
    assert isinstance(org["active_users"], int)
    assert org["domains"][1] == {
        "name": "acme-dental.example", "is_active": True, "is_relay": False,
        "destination": "mail.acme-dental.example", "failovers": [],
    }  # fmt: skip
    assert floats_in(org) == []


def test_user_licenses_is_served_as_stored_int_or_numeric_string(get: Get) -> None:
    assert get("/orgs/acmedental.example").json()["user_licenses"] == 25
    assert get("/orgs/evergreenlaw.example").json()["user_licenses"] == "15"
    assert get("/orgs/evergreenlaw.example/licensing").json()["license_count"] == "15"


@pytest.mark.parametrize(
    ("path", "stack"),
    [
        ("/orgs/riversidevet.example", "us1"),
        ("/orgs/riversidevet.example/users", "us1"),
        ("/orgs/acmedental.example/licensing", "us2"),
        ("/orgs/unknown.example", "us1"),
    ],
)
def test_an_org_on_another_stack_or_unknown_is_404(get: Get, path: str, stack: str) -> None:
    response = get(path, stack=stack)
    assert (response.status_code, response.json()) == (404, NOT_FOUND)


@pytest.mark.parametrize(
    ("path", "auth"),
    [
        ("/orgs/stranger.example", ADMIN),
        ("/orgs/evergreenlaw.example", ORG_ADMIN),
        (f"/orgs/{PARTNER}", ORG_ADMIN),
        ("/orgs/acmedental.example/users", END_USER),
    ],
)
def test_an_org_outside_the_login_is_403(get: Get, path: str, auth: dict[str, str]) -> None:
    response = get(path, auth=auth)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)


def test_a_partner_answers_on_every_stack_of_its_customers(get: Get) -> None:
    partner = get(f"/orgs/{PARTNER.upper()}", stack="us2").json()
    assert (partner["type"], partner["primary_domain"]) == ("channel", PARTNER)
    assert set(partner) == ORG_KEYS


def test_org_and_read_only_logins_read_what_they_may(get: Get) -> None:
    assert get("/orgs/acmedental.example/users", auth=ORG_ADMIN).status_code == 200
    assert get(f"/orgs/{PARTNER}/orgs", auth=READ_ONLY).status_code == 200


# -- users and licensing (assumed-shapes §2.6) -----------------------------------------------


def test_users_list_and_active_users_agree_by_default(
    fresh_get: Get, pp_state: ProofpointState
) -> None:
    domain = "evergreenlaw.example"
    pp_state.add_user(domain, "ann.lee@evergreenlaw.example", firstname="Ann", surname="Lee")
    pp_state.add_user(domain, "bo.ng@evergreenlaw.example", is_billable=False)
    pp_state.add_user(domain, "gone@evergreenlaw.example", is_active=False)
    pp_state.add_user(domain, "shared@evergreenlaw.example", type="functional_account")
    pp_state.add_user(domain, "relay@evergreenlaw.example", type="silent_user")
    users = fresh_get(f"/orgs/{domain}/users").json()
    assert set(users) == {"users"}
    assert all(set(u) == USER_KEYS for u in users["users"])
    assert users["users"][0] == {
        "uid": users["users"][0]["uid"], "primary_email": "ann.lee@evergreenlaw.example",
        "firstname": "Ann", "surname": "Lee", "type": "end_user", "is_active": True,
        "is_billable": True, "alias_emails": [], "safe_list_senders": [],
        "block_list_senders": [], "read_only_user": False,
    }  # fmt: skip
    assert fresh_get(f"/orgs/{domain}").json()["active_users"] == 1


def test_active_users_can_be_pinned_to_disagree_with_a_recount(
    fresh_get: Get, pp_state: ProofpointState
) -> None:
    pp_state.set_active_users("acmedental.example", 31)
    assert fresh_get("/orgs/acmedental.example").json()["active_users"] == 31
    assert len(fresh_get("/orgs/acmedental.example/users").json()["users"]) == 2
    pp_state.set_active_users("acmedental.example", None)
    assert fresh_get("/orgs/acmedental.example").json()["active_users"] == 2


def test_licensing_mirrors_the_org(fresh_get: Get, pp_state: ProofpointState) -> None:
    pp_state.set_package("acmedental.example", "advanced_plus")
    assert fresh_get("/orgs/acme-dental.example/licensing").json() == {
        "license_count": 25, "package": "advanced_plus", "is_on_trial": False,
        "is_beginner_plus": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        (lambda s: s.set_package("acmedental.example", "Business"), "package"),
        (lambda s: s.set_user_licenses("acmedental.example", "12.5"), "numeric"),
        (lambda s: s.set_user_licenses("acmedental.example", -1), "whole number"),
        (lambda s: s.add_org("X", "acme-dental.example", parent=PARTNER, stack="us1"), "domain"),
        (lambda s: s.add_org("X", "x.example", parent="acmedental.example", stack="us1"), "end"),
        (lambda s: s.add_org("X", "x.example", parent=PARTNER, stack="au1"), "stack"),
        (lambda s: s.add_user(PARTNER, f"ADMIN@{PARTNER}"), "exists"),
    ],
)
def test_seeding_rejects_what_the_vendor_would(
    pp_state: ProofpointState, seed: Callable[[ProofpointState], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        seed(pp_state)


# -- rate limit, faults, request logs (vendor-apis §A.8) -------------------------------------


def test_rate_limit_is_off_by_default(get: Get) -> None:
    assert {get("/me").status_code for _ in range(12)} == {200}


def test_rate_limit_is_a_429_without_retry_after_per_stack(
    make_pp: MakeSandbox, clock: FakeClock, http: httpx.Client
) -> None:
    sandbox = make_pp(requests_per_minute=2)
    us1 = sandbox.stack_url("us1") + "/me"
    assert [http.get(us1, headers=ADMIN).status_code for _ in range(2)] == [200, 200]
    limited = http.get(us1, headers=ADMIN)
    assert limited.status_code == 429
    assert "Retry-After" not in limited.headers
    assert not limited.headers["Content-Type"].startswith("application/json")
    assert http.get(sandbox.stack_url("us2") + "/me", headers=ADMIN).status_code == 200
    clock.advance(60.01)
    assert http.get(us1, headers=ADMIN).status_code == 200


def test_faults_and_request_logs_are_per_stack(fresh: ProofpointSandbox, fresh_get: Get) -> None:
    fresh.stacks["us2"].faults.add(kind="status", status=503, path="/orgs/", body="busy")
    assert fresh_get(f"/orgs/{PARTNER}/orgs").status_code == 200
    assert fresh_get(f"/orgs/{PARTNER}/orgs", stack="us2").status_code == 503
    assert fresh_get(f"/orgs/{PARTNER}/orgs", stack="us2").status_code == 200
    assert [r.status for r in fresh.stacks["us2"].requests] == [503, 200]
    assert fresh.stacks["us1"].requests.count(path=f"/orgs/{PARTNER}/orgs") == 1


# -- demo data -------------------------------------------------------------------------------


def test_demo_logins_and_customers_on_both_stacks(http: httpx.Client) -> None:
    def auth(user: str) -> dict[str, str]:
        return {"X-User": user, "X-Password": DEMO_PROOFPOINT_PASSWORD}

    children = f"/orgs/{DEMO_PARTNER_DOMAIN}/orgs"
    with ProofpointSandbox(demo_proofpoint_state()) as sandbox:
        get = getter(sandbox, http)
        assert set(sandbox.stacks) == {"us1", "us2"}
        us1 = get(children, auth=auth(DEMO_PROOFPOINT_USER)).json()["orgs"]
        us2 = get(children, stack="us2", auth=auth(DEMO_PROOFPOINT_USER)).json()["orgs"]
        me = get("/me", auth=auth(DEMO_PROOFPOINT_USER)).json()
        read_only = get("/me", stack="us2", auth=auth(DEMO_PROOFPOINT_READ_ONLY_USER)).json()
        forbidden = get(children, auth=auth(DEMO_PROOFPOINT_ORG_ADMIN))
    assert (me["type"], me["entity_primary_domain"]) == ("channel_admin", DEMO_PARTNER_DOMAIN)
    assert read_only["read_only_user"] is True
    assert forbidden.status_code == 403
    assert (len(us1), len(us2)) == (4, 3)
    assert floats_in(us1 + us2) == []
    assert any(isinstance(o["user_licenses"], str) for o in us1 + us2)


def test_demo_orgs_line_up_with_the_syncro_customers_by_email_domain() -> None:
    syncro = demo_syncro_state()
    syncro_domains = {
        c["email"].rpartition("@")[2]: c["business_name"] for c in syncro.customers.all()
    }
    state = demo_proofpoint_state()
    customers = [o for o in state.orgs() if not o.is_partner]
    matched = {
        o.name: syncro_domains[d.name]
        for o in customers
        for d in o.domains
        if d.name in syncro_domains
    }
    unmatched = [o.name for o in customers if o.name not in matched]
    assert unmatched == ["Cobalt Marine Supply"]
    assert any(name != matched[name] for name in matched)  # spelling differs for some
    assert all(name.split()[0] in matched[name] for name in matched)
    for org in customers:  # users' e-mails belong to the org's domains
        domains = {d.name for d in org.domains}
        assert all(u.primary_email.rpartition("@")[2] in domains for u in org.users)
    # Each Syncro contact of a matched customer has a mailbox in its Proofpoint org.
    for customer in syncro.customers.all():
        owner = state.find(customer["email"].rpartition("@")[2])
        assert owner is None or customer["email"] in {u.primary_email for u in owner.users}


def test_demo_active_users_differ_from_a_naive_recount_somewhere() -> None:
    state = demo_proofpoint_state()
    assert state.org(DEMO_PARTNER_DOMAIN).domains[0].name == "bluepeak-it.example"
    assert demo_syncro_state().user_email.endswith("@" + DEMO_PARTNER_DOMAIN)
    customers = [o for o in state.orgs() if not o.is_partner]
    naive = {o.name: sum(u.is_active and u.is_billable for u in o.users) for o in customers}
    assert any(naive[o.name] != o.active_users for o in customers)
    assert any(u.type == "functional_account" for o in customers for u in o.users)
    assert {o.stack for o in customers} == {"us1", "us2"}
    assert [o.name for o in customers if o.is_on_trial] == ["Summit Pediatrics PC"]
    assert state.org("evergreenlaw.example").user_licenses == "15"
