"""`ProofpointSource`'s mapping rules, table-driven, against a fake Proofpoint behind MockTransport.

The fake serves each stack's child list and each org's users as JSON, so every rule is tested
through the real client's parsing: what is checked is what the daemon would do with that wire
data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sync_daemon.connectors.proofpoint import (
    ProofpointClient,
    ProofpointSource,
    normalise_package,
    sku_for_package,
    stack_label,
)
from sync_daemon.errors import ConfigError, InvariantError, TransientError
from sync_daemon.settings import PackagePrice, ProofpointSettings
from sync_daemon.vendor import Snapshot, SourceCustomer, SourceProblem, SourceProduct, Usage

US1 = "https://us1.proofpointessentials.com/api/v1"
US2 = "https://us2.proofpointessentials.com/api/v1"
PARTNER = "msp.example"

BUSINESS = PackagePrice(name="PPE Business", cost=Decimal("1.50"), retail=Decimal("3.00"))
BUSINESS_PLUS = PackagePrice(name="PPE Business+", cost=Decimal("2.10"), retail=Decimal("4.20"))
ADVANCED = PackagePrice(name="PPE Advanced", cost=Decimal("2.40"), retail=Decimal("4.80"))
PROFESSIONAL = PackagePrice(name="PPE Professional", cost=Decimal("3.00"),
                            retail=Decimal("6.00"))
PRICES = {"business": BUSINESS, "business_plus": BUSINESS_PLUS, "professional": PROFESSIONAL}


DROP = object()  # `org(eid, is_on_trial=DROP)` leaves the key out


def org(eid: int = 100101, /, **changes: Any) -> dict[str, Any]:
    """A well-formed child org as assumed-shapes.md §2.5 shows it; `changes` override any key
    (`eid` included) or drop it."""
    data: dict[str, Any] = {
        "name": f"Org {eid}", "primary_domain": f"org{eid}.example", "eid": eid,
        "type": "organization", "is_active": True, "licensing_package": "business",
        "user_licenses": 12, "active_users": 10, "is_on_trial": False,
        "when_renewal": "2027-05-01",
        "domains": [{"name": f"org{eid}.example", "is_active": True, "is_relay": False}],
        "safe_list_senders": [], "block_list_senders": [],
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not DROP}


def user(n: int, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "uid": 700000 + n, "primary_email": f"user{n}@org.example", "type": "end_user",
        "is_active": True, "is_billable": True, "alias_emails": [],
    }
    return {**data, **changes}


# Nine users take a licence; four do not, each for a different reason.
USERS = [
    *(user(n) for n in range(1, 9)),
    user(9, type="organization_admin"),
    user(10, type="functional_account"),
    user(11, type="silent_user"),
    user(12, is_active=False),
    user(13, is_billable=False),
]

LOGIN = {
    "uid": 600001, "primary_email": "api-admin@msp.example", "type": "channel_admin",
    "is_active": True, "is_admin": True, "is_partner_admin": True, "entity_type": "channel",
    "entity_primary_domain": PARTNER, "eid": 100001,
}


@dataclass
class FakeProofpoint:
    """Answers like Proofpoint Essentials (assumed-shapes.md §2), one child list per stack."""

    orgs: dict[str, list[Any]] = field(default_factory=dict)
    users: dict[str, list[Any]] = field(default_factory=dict)
    # "<stack base URL><path>" → status to answer instead, e.g. f"{US1}/me": 401.
    status: dict[str, int] = field(default_factory=dict)
    login: dict[str, Any] = field(default_factory=lambda: dict(LOGIN))
    endpoints: list[str] = field(default_factory=lambda: [US1])
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["X-User"] == "api-admin@msp.example"
        assert request.headers["X-Password"] == "s3cret"
        base = f"{request.url.scheme}://{request.url.host}/api/v1"
        path = request.url.path.removeprefix("/api/v1")
        if base + path in self.status:
            return httpx.Response(self.status[base + path], json={"message": "refused"})
        if path == "/me":
            return httpx.Response(200, json=self.login)
        if path == f"/endpoints/{PARTNER}":
            return httpx.Response(200, json={"endpoints": [
                {"stack": stack_label(url), "url": url} for url in self.endpoints]})
        if path == f"/orgs/{PARTNER}/orgs" and base in self.orgs:
            return httpx.Response(200, json={"orgs": self.orgs[base]})
        found = re.fullmatch(r"/orgs/([^/]+)/users", path)
        if found and found[1] in self.users:
            return httpx.Response(200, json={"users": self.users[found[1]]})
        return httpx.Response(404, json={"message": "Not Found"})

    def sent(self, pattern: str) -> list[str]:
        paths = [r.url.path.removeprefix("/api/v1") for r in self.requests]
        return [p for p in paths if re.fullmatch(pattern, p)]


Make = Callable[[FakeProofpoint, ProofpointSettings], ProofpointSource]


def settings(**changes: Any) -> ProofpointSettings:
    values: dict[str, Any] = {
        "base_url": US1, "username": "api-admin@msp.example", "password": "s3cret",
        "partner_domain": PARTNER, "packages": PRICES,
    }
    return ProofpointSettings(**{**values, **changes})


@pytest.fixture
def build() -> Iterator[Make]:
    sources: list[ProofpointSource] = []

    def make(fake: FakeProofpoint, config: ProofpointSettings) -> ProofpointSource:
        def connect(base_url: str) -> ProofpointClient:
            return ProofpointClient.connect(
                base_url, config.username, config.password.get_secret_value(),
                transport=httpx.MockTransport(fake.handle), sleep=lambda _: None, max_attempts=2,
            )

        source = ProofpointSource(config, client_factory=connect)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def fetch(build: Make, orgs: list[Any], **changes: Any) -> Snapshot:
    return build(FakeProofpoint(orgs={US1: orgs}), settings(**changes)).fetch()


# ---------------------------------------------------------------------- packages and SKUs


@pytest.mark.parametrize(
    ("raw", "key", "sku"),
    [
        ("business", "business", "PPE-BUSINESS"),
        ("business_plus", "business_plus", "PPE-BUSINESS_PLUS"),
        ("Business Plus", "business_plus", "PPE-BUSINESS_PLUS"),
        ("PROFESSIONAL-PLUS", "professional_plus", "PPE-PROFESSIONAL_PLUS"),
        ("Advanced+", "advanced_plus", "PPE-ADVANCED_PLUS"),
        ("  beginner ", "beginner", "PPE-BEGINNER"),
        ("business  -  plus", "business_plus", "PPE-BUSINESS_PLUS"),
    ],
)
def test_package_names_normalise_to_snake_keys_and_skus(raw: str, key: str, sku: str) -> None:
    assert normalise_package(raw) == key
    assert sku_for_package(raw) == sku


@pytest.mark.parametrize(
    ("wire", "config_key", "sku"),
    [
        ("business", "business", "PPE-BUSINESS"),
        ("business_plus", "business_plus", "PPE-BUSINESS_PLUS"),
        ("Business Plus", "business_plus", "PPE-BUSINESS_PLUS"),
        ("business-plus", "business_plus", "PPE-BUSINESS_PLUS"),
        ("business_plus", "Business-Plus", "PPE-BUSINESS_PLUS"),
        ("ADVANCED", "advanced", "PPE-ADVANCED"),
    ],
)
def test_a_package_is_billed_under_its_sku_at_the_configured_price(
    build: Make, wire: str, config_key: str, sku: str,
) -> None:
    snapshot = fetch(build, [org(licensing_package=wire)],
                     packages={config_key: PackagePrice(name="The package", cost=Decimal("1.25"),
                                                        retail=Decimal("2.50"))})
    assert snapshot.usages == (Usage("100101", sku, 10),)
    assert snapshot.products == (
        SourceProduct(sku=sku, name="The package", cost=Decimal("1.25"), retail=Decimal("2.50")),)
    assert snapshot.problems == ()


def test_two_spellings_of_one_package_in_the_config_are_refused() -> None:
    with pytest.raises(ConfigError, match="'business_plus' and 'Business Plus' both name"):
        ProofpointSource(settings(packages={"business_plus": BUSINESS_PLUS,
                                            "Business Plus": BUSINESS}))


def test_products_are_only_the_priced_packages_in_use(build: Make) -> None:
    snapshot = fetch(build, [org(1, licensing_package="professional"), org(2), org(3)],
                     packages={**PRICES, "advanced": ADVANCED})
    assert snapshot.products == (
        SourceProduct(sku="PPE-BUSINESS", name="PPE Business", cost=Decimal("1.50"),
                      retail=Decimal("3.00")),
        SourceProduct(sku="PPE-PROFESSIONAL", name="PPE Professional", cost=Decimal("3.00"),
                      retail=Decimal("6.00")),
    )
    assert all(isinstance(p.cost, Decimal) and isinstance(p.retail, Decimal)
               for p in snapshot.products)


def test_an_unpriced_package_is_a_problem_never_a_guess(build: Make) -> None:
    snapshot = fetch(build, [org(1), org(2, name="Northwind", licensing_package="Advanced")])
    assert snapshot.customers[1] == SourceCustomer(id="2", name="Northwind",
                                                   domains=("org2.example",))
    assert snapshot.problems == (SourceProblem(
        message="package 'advanced' has no price in [proofpoint.packages.advanced]",
        customer_id="2", customer="Northwind"),)
    assert [u.customer_id for u in snapshot.usages] == ["1"]
    assert [p.sku for p in snapshot.products] == ["PPE-BUSINESS"]
    assert snapshot.customers_with_problems() == {("2", "")}


# ----------------------------------------------------------------------------- counts


@pytest.mark.parametrize(
    ("count", "quantity", "user_requests"),
    [
        ("active_users", 10, 0),
        ("user_licenses", 12, 0),
        ("billable_users", 9, 1),
    ],
)
def test_each_count_mode_picks_its_number(
    build: Make, count: str, quantity: int, user_requests: int,
) -> None:
    fake = FakeProofpoint(orgs={US1: [org(user_licenses="12")]},
                          users={"org100101.example": USERS})
    snapshot = build(fake, settings(count=count)).fetch()
    [usage] = snapshot.usages
    assert usage.quantity == quantity
    assert type(usage.quantity) is int
    # The recount costs one request per org: only in the mode that needs it.
    assert len(fake.sent(r"/orgs/[^/]+/users")) == user_requests


def test_a_recount_that_disagrees_with_active_users_says_so(build: Make) -> None:
    fake = FakeProofpoint(orgs={US1: [org(active_users=11)]}, users={"org100101.example": USERS})
    [usage] = build(fake, settings(count="billable_users")).fetch().usages
    assert usage == Usage("100101", "PPE-BUSINESS", 9,
                          note="9 billable users; Proofpoint's active_users says 11")


@pytest.mark.parametrize(
    ("users", "message"),
    [
        (None, ("cannot recount billable users: proofpoint: GET /orgs/org2.example/users: "
                "not found")),
        ([user(1), {"primary_email": "x@org.example", "type": "end_user"}],
         ("cannot recount billable users: proofpoint: user #2 of org2.example is malformed: "
          "is_active: missing")),
    ],
    ids=["users-404", "malformed-user"],
)
def test_a_failed_recount_is_that_orgs_problem(
    build: Make, users: list[Any] | None, message: str,
) -> None:
    fake = FakeProofpoint(orgs={US1: [org(1, active_users=9), org(2)]},
                          users={"org1.example": USERS})
    if users is not None:
        fake.users["org2.example"] = users
    snapshot = build(fake, settings(count="billable_users")).fetch()
    assert snapshot.usages == (Usage("1", "PPE-BUSINESS", 9),)
    assert snapshot.problems == (SourceProblem(message, customer_id="2", customer="Org 2"),)


@pytest.mark.parametrize(
    ("bill_trials", "on_trial", "usage"),
    [
        (False, True, Usage("100101", "PPE-BUSINESS", 0, billable=False, note="on trial")),
        (True, True, Usage("100101", "PPE-BUSINESS", 10,
                           note="on trial, billed (bill_trials = true)")),
        (False, False, Usage("100101", "PPE-BUSINESS", 10)),
        (True, False, Usage("100101", "PPE-BUSINESS", 10)),
    ],
)
def test_trials_are_free_unless_the_config_bills_them(
    build: Make, bill_trials: bool, on_trial: bool, usage: Usage,
) -> None:
    snapshot = fetch(build, [org(is_on_trial=on_trial)], bill_trials=bill_trials)
    assert snapshot.usages == (usage,)


def test_a_trial_needs_no_recount(build: Make) -> None:
    fake = FakeProofpoint(orgs={US1: [org(is_on_trial=True)]})
    snapshot = build(fake, settings(count="billable_users")).fetch()
    assert snapshot.usages == (
        Usage("100101", "PPE-BUSINESS", 0, billable=False, note="on trial"),)
    assert fake.sent(r"/orgs/[^/]+/users") == []


@pytest.mark.parametrize(
    ("changes", "usages"),
    [
        ({}, (Usage("100101", "PPE-BUSINESS", 0, billable=False, note="inactive"),)),
        ({"licensing_package": "advanced"}, ()),  # unpriced, but nothing to bill either
        ({"licensing_package": None}, ()),
        ({"active_users": DROP, "is_on_trial": DROP}, (
            Usage("100101", "PPE-BUSINESS", 0, billable=False, note="inactive"),)),
    ],
    ids=["priced", "unpriced", "no-package", "no-counts"],
)
def test_an_inactive_org_counts_zero(
    build: Make, changes: dict[str, Any], usages: tuple[Usage, ...],
) -> None:
    fake = FakeProofpoint(orgs={US1: [org(is_active=False, **changes)]})
    snapshot = build(fake, settings(count="billable_users")).fetch()
    assert snapshot.usages == usages
    assert snapshot.problems == ()
    assert [c.id for c in snapshot.customers] == ["100101"]
    assert fake.sent(r"/orgs/[^/]+/users") == []


@pytest.mark.parametrize(
    ("changes", "config", "message"),
    [
        ({"is_active": DROP}, {}, "org has no is_active flag: cannot tell whether it is billable"),
        ({"licensing_package": DROP}, {}, "org has no licensing_package"),
        ({"licensing_package": " "}, {}, "org has no licensing_package"),
        ({"is_on_trial": DROP}, {},
         "org has no is_on_trial flag: cannot tell whether it is a trial"),
        ({"active_users": None}, {}, "org has no active_users"),
        ({"user_licenses": ""}, {"count": "user_licenses"}, "org has no user_licenses"),
    ],
)
def test_an_active_org_missing_what_billing_needs_is_a_problem(
    build: Make, changes: dict[str, Any], config: dict[str, Any], message: str,
) -> None:
    snapshot = fetch(build, [org(1), org(2, **changes)], **config)
    assert [u.customer_id for u in snapshot.usages] == ["1"]
    assert snapshot.problems == (SourceProblem(message, customer_id="2", customer="Org 2"),)


@pytest.mark.parametrize(
    ("changes", "config"),
    [
        ({"user_licenses": DROP}, {"count": "active_users"}),
        ({"active_users": DROP}, {"count": "user_licenses"}),
        ({"is_on_trial": DROP}, {"bill_trials": True}),
    ],
)
def test_a_field_the_rules_do_not_need_may_be_missing(
    build: Make, changes: dict[str, Any], config: dict[str, Any],
) -> None:
    snapshot = fetch(build, [org(**changes)], **config)
    assert len(snapshot.usages) == 1
    assert snapshot.problems == ()


# ---------------------------------------------------------------------- parsing per org


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"eid": DROP}, "eid: missing"),
        ({"eid": True}, "eid: expected a positive id, got True"),
        ({"eid": 0}, "eid: expected a positive id, got 0"),
        ({"name": ""}, "name: must not be empty"),
        ({"name": 5}, "name: expected text, got 5"),
        ({"primary_domain": None}, "primary_domain: expected text, got None"),
        ({"type": DROP}, "type: missing"),
        ({"user_licenses": "ten"}, "user_licenses: expected a whole number, got 'ten'"),
        ({"user_licenses": 10_000_000},
         "user_licenses: 10000000 is not a plausible seat count (more than 100000)"),
        ({"active_users": -1}, "active_users: a seat count cannot be negative (got -1)"),
        ({"active_users": 12.5}, "active_users: expected a whole number, got Decimal('12.5')"),
        ({"active_users": "12.5"}, "active_users: expected a whole number, got '12.5'"),
        ({"is_active": "perhaps"},
         "is_active: Input should be a valid boolean, unable to interpret input"),
        ({"licensing_package": ["business"]},
         "licensing_package: expected a package name, got ['business']"),
        ({"domains": "org.example"}, "domains: expected a list of domains, got str"),
        ({"domains": [{"is_active": True}]},
         "domains: a domain without a name: {'is_active': True}"),
        ({"user_licenses": "x", "active_users": -2},
         ("user_licenses: expected a whole number, got 'x'; "
          "active_users: a seat count cannot be negative (got -2)")),
    ],
)
def test_a_malformed_org_is_its_own_problem(
    build: Make, changes: dict[str, Any], reason: str,
) -> None:
    orgs = [org(1), org(2, **{"name": "Broken", **changes}), org(3)]
    if "eid" in changes:  # whose org it is cannot be told: the whole list is untrusted
        with pytest.raises(InvariantError, match=f"is malformed: {re.escape(reason)}; "):
            fetch(build, orgs)
        return
    snapshot = fetch(build, orgs)
    assert [u.customer_id for u in snapshot.usages] == ["1", "3"]
    # Still the partner's customer, so its mapping stays (nothing of it is planned).
    assert [c.id for c in snapshot.customers] == ["1", "3", "2"]
    [problem] = snapshot.problems
    assert problem.message.startswith("org ")
    assert problem.message.endswith(f" on us1 is malformed: {reason}"), problem.message


def test_a_malformed_org_is_named_by_what_could_be_read(build: Make) -> None:
    snapshot = fetch(build, [org(7, name="Broken Ltd", active_users=-1),
                             org(8, name="", primary_domain="blank.example")])
    assert snapshot.problems == (
        SourceProblem("org Broken Ltd on us1 is malformed: active_users: a seat count cannot be "
                      "negative (got -1)", customer_id="7", customer="Broken Ltd"),
        SourceProblem("org blank.example on us1 is malformed: name: must not be empty",
                      customer_id="8", customer=None),
    )
    assert [(c.id, c.name) for c in snapshot.customers] == [
        ("7", "Broken Ltd"), ("8", "blank.example")]
    with pytest.raises(InvariantError, match=re.escape(
            "org org9.example on us1 is malformed: eid: expected a positive id, got 'x'; "
            "name: must not be empty; without its eid")):
        fetch(build, [org(7), org(9, eid="x", name="")])
    with pytest.raises(InvariantError, match="org #2 on us1 is malformed: expected an org "
                                             "object, got str"):
        fetch(build, [org(7), "not an org"])


def test_an_org_listed_twice_on_one_stack_is_a_problem_unless_identical(build: Make) -> None:
    snapshot = fetch(build, [org(1), org(1), org(2), org(2, active_users=99)])
    assert [c.id for c in snapshot.customers] == ["1", "2"]
    assert [u.customer_id for u in snapshot.usages] == ["1", "2"]
    assert snapshot.problems == (SourceProblem(
        "org 2 is listed twice on us1 with different active_users: nothing is billed for it "
        "until they agree", customer_id="2", customer="Org 2"),)


@pytest.mark.parametrize(
    ("changes", "customer", "usage"),
    [
        ({"eid": "100777"}, SourceCustomer("100777", "Org 100101", domains=("org100101.example",)),
         Usage("100777", "PPE-BUSINESS", 10)),
        ({"active_users": "15", "name": "  Spaced Name "},
         SourceCustomer("100101", "Spaced Name", domains=("org100101.example",)),
         Usage("100101", "PPE-BUSINESS", 15)),
        ({"active_users": 15.0},
         SourceCustomer("100101", "Org 100101", domains=("org100101.example",)),
         Usage("100101", "PPE-BUSINESS", 15)),
        ({"primary_domain": "Org.Example", "domains": [
            {"name": "other.example"}, "ORG.example", {"name": "Third.Example"}]},
         SourceCustomer("100101", "Org 100101", domains=("org.example", "other.example",
                                                 "third.example")),
         Usage("100101", "PPE-BUSINESS", 10)),
        ({"domains": None, "surprise": {"nested": [1, 2]}, "white_list_senders": ["a@b.example"]},
         SourceCustomer("100101", "Org 100101", domains=("org100101.example",)),
         Usage("100101", "PPE-BUSINESS", 10)),
    ],
    ids=["eid-string", "count-string", "count-integral-number", "domains", "extra-fields"],
)
def test_lax_but_unambiguous_values_are_accepted(
    build: Make, changes: dict[str, Any], customer: SourceCustomer, usage: Usage,
) -> None:
    snapshot = fetch(build, [org(**changes)])
    assert snapshot.customers == (customer,)
    assert snapshot.usages == (usage,)
    assert snapshot.problems == ()


@pytest.mark.parametrize("kind", ["channel", "strategic_partner", "oem_partner", "Channel"])
def test_partner_type_children_are_skipped(build: Make, kind: str) -> None:
    snapshot = fetch(build, [
        org(1),
        org(2, type=kind, licensing_package=None, is_on_trial=DROP),
        org(3, type=kind, user_licenses="n/a", eid=DROP),  # malformed, but not a customer
    ])
    assert [c.id for c in snapshot.customers] == ["1"]
    assert [u.customer_id for u in snapshot.usages] == ["1"]
    assert snapshot.problems == ()


# ---------------------------------------------------------------------------- stacks


@pytest.mark.parametrize(
    ("on_us2", "differ"),
    [
        ({}, None),
        ({"domains": [{"name": "alias.example"}, {"name": "org5.example"}]}, None),
        ({"active_users": 12}, "active_users"),
        ({"name": "Org Five (old)", "domains": [{"name": "org5-old.example"}]},
         "name, domains"),
        ({"licensing_package": "business_plus", "is_on_trial": True},
         "is_on_trial, licensing_package"),
    ],
    ids=["identical", "domains-reordered", "count", "name-and-domains", "package-and-trial"],
)
def test_an_org_on_two_stacks_is_one_customer_and_the_first_stack_wins(
    build: Make, on_us2: dict[str, Any], differ: str | None,
) -> None:
    first = org(5, domains=[{"name": "org5.example"}, {"name": "alias.example"}])
    fake = FakeProofpoint(orgs={US1: [first, org(6)], US2: [org(7), org(5, **{
        "domains": [{"name": "org5.example"}, {"name": "alias.example"}], **on_us2})]})
    snapshot = build(fake, settings(base_url=[US1, US2])).fetch()
    assert snapshot.customers == (
        SourceCustomer("5", "Org 5", domains=("org5.example", "alias.example")),
        SourceCustomer("6", "Org 6", domains=("org6.example",)),
        SourceCustomer("7", "Org 7", domains=("org7.example",)),
    )
    assert snapshot.usages == (Usage("5", "PPE-BUSINESS", 10), Usage("6", "PPE-BUSINESS", 10),
                               Usage("7", "PPE-BUSINESS", 10))
    expected = () if differ is None else (SourceProblem(
        f"org 5 is on us1 and us2 with different {differ}; us1's data is kept",
        customer_id="5", customer="Org 5"),)
    assert snapshot.problems == expected


def test_every_stack_is_read_and_a_stack_without_the_partner_adds_nothing(build: Make) -> None:
    us3 = "https://us3.proofpointessentials.com/api/v1"
    fake = FakeProofpoint(orgs={US1: [org(1)], us3: [org(3)]})
    snapshot = build(fake, settings(base_url=[US1, US2, us3])).fetch()
    assert [c.id for c in snapshot.customers] == ["1", "3"]
    assert [str(r.url.host) for r in fake.requests] == [
        "us1.proofpointessentials.com", "us2.proofpointessentials.com",
        "us3.proofpointessentials.com"]


def test_a_recount_asks_the_stack_the_org_lives_on(build: Make) -> None:
    fake = FakeProofpoint(orgs={US1: [], US2: [org(8)]}, users={"org8.example": USERS})
    snapshot = build(fake, settings(base_url=[US1, US2], count="billable_users")).fetch()
    assert snapshot.usages == (Usage("8", "PPE-BUSINESS", 9, note=(
        "9 billable users; Proofpoint's active_users says 10")),)
    assert str(fake.requests[-1].url) == f"{US2}/orgs/org8.example/users"


# ----------------------------------------------------------------- errors and the check


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        (401, ConfigError, "refused the username/password"),
        (403, ConfigError, "Channel Admin is the least privileged role"),
        (503, TransientError, "server error 503"),
    ],
)
def test_a_stack_that_fails_fails_the_whole_fetch(
    build: Make, status: int, error: type[Exception], match: str,
) -> None:
    # A partial snapshot would look like customers that left; none is returned.
    fake = FakeProofpoint(orgs={US1: [org(1)], US2: [org(2)]},
                          status={f"{US2}/orgs/{PARTNER}/orgs": status})
    with pytest.raises(error, match=match):
        build(fake, settings(base_url=[US1, US2])).fetch()


def test_a_child_list_without_its_envelope_stops_the_run() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[org(1)])  # a bare array, not {"orgs": [...]}

    transport = httpx.MockTransport(handle)
    with (ProofpointClient.connect(US1, "u", "p", transport=transport) as client,
          pytest.raises(InvariantError, match="has no 'orgs' list")):
        client.list_child_orgs(PARTNER)


def test_check_reports_the_login_on_every_stack(build: Make) -> None:
    fake = FakeProofpoint(endpoints=[US1, US2])
    text = build(fake, settings(base_url=[US1, f"{US2}/"])).check()
    assert text == "as api-admin@msp.example (channel_admin) for msp.example on us1, us2"
    assert fake.sent(r"/me") == ["/me", "/me"]


def test_check_refuses_a_login_without_a_partner_role(build: Make) -> None:
    fake = FakeProofpoint(login={**LOGIN, "type": "organization_admin",
                                 "is_partner_admin": False, "entity_type": "organization"})
    with pytest.raises(ConfigError, match="has no partner role") as caught:
        build(fake, settings()).check()
    assert "Channel Admin is the least privileged role that works" in str(caught.value)
    assert "(organization_admin)" in str(caught.value)


def test_close_closes_every_client_it_opened() -> None:
    clients: list[ProofpointClient] = []
    fake = FakeProofpoint(orgs={US1: [org(1)], US2: []})

    def connect(base_url: str) -> ProofpointClient:
        client = ProofpointClient.connect(base_url, "api-admin@msp.example", "s3cret",
                                          transport=httpx.MockTransport(fake.handle),
                                          sleep=lambda _: None)
        clients.append(client)
        return client

    with ProofpointSource(settings(base_url=[US1, US2]), client_factory=connect) as source:
        source.fetch()
        source.fetch()  # clients are reused, not rebuilt
    assert len(clients) == 2
    assert all(c.api._client.is_closed for c in clients)


@pytest.mark.parametrize(
    ("url", "label"),
    [
        (US1, "us1"),
        ("https://EU1.proofpointessentials.com/api/v1/", "eu1"),
        ("http://127.0.0.1:8081/us2/api/v1", "127.0.0.1:8081/us2/api/v1"),
    ],
)
def test_stack_labels(url: str, label: str) -> None:
    assert stack_label(url) == label
