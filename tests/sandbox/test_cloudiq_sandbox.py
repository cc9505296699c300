"""The Crayon Cloud-iQ sandbox over real HTTP, checked against the reference documents
(`vendor-apis.md` §C.3, `assumed-shapes.md` §3)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sync_daemon.sandbox import (
    DEMO_CLOUDIQ_CLIENT_ID,
    DEMO_CLOUDIQ_CLIENT_SECRET,
    DEMO_CLOUDIQ_ORGANIZATION_ID,
    DEMO_CLOUDIQ_PASSWORD,
    DEMO_CLOUDIQ_USER,
    CloudiqSandbox,
    CloudiqState,
    demo_cloudiq_state,
    demo_syncro_state,
)
from sync_daemon.sandbox.cloudiq import (
    SubscriptionStatus,
    Term,
    quantity_periods,
    shift_months,
    term_bounds,
)
from tests.sandbox.conftest import FakeClock

CLIENT = ("test-client", "test-secret")
OTHER_CLIENT = ("other-client", "other-secret")
USER, PASSWORD = "api@msp.example", "api-password"
ORG = 12345
PREMIUM, BASIC, AZURE = "CFQ7TTC0LCHC:0002", "CFQ7TTC0LH18:0001", "DZH318Z0BPS6:0001"
TOKEN_KEYS = {"AccessToken", "IdentityToken", "Error", "ExpiresIn", "TokenType", "RefreshToken"}
ERROR_KEYS = {"ErrorCode", "Message", "Parameters", "ObjectErrors"}
UNAUTHORIZED = {
    "ErrorCode": "401 Unauthorized",
    "Message": "Authorization has been denied for this request.",
    "Parameters": {},
    "ObjectErrors": [],
}
PREMIUM_PRICES: tuple[tuple[Term, int, str, str], ...] = (
    ("P1M", 1, "23.76", "26.40"), ("P1Y", 1, "19.80", "22.00"), ("P1Y", 2, "237.60", "264.00"),
)  # fmt: skip
COLLECTIONS = (
    "/customertenants", "/invoiceprofiles", "/subscriptions", "/agreementproducts",
    "/billingstatements",
)  # fmt: skip


class Ids:
    """Ids of the seeded objects, filled in by `seeded()`."""

    monthly = annual = other_org = other_tenant = other_statement = 0
    acme = evergreen = harbor = 0
    premium = azure = trial = suspended = annual_one = annual_two = late_start = 0


def seeded(clock: FakeClock, *, expires_in: int = 3600) -> tuple[CloudiqState, Ids]:
    """Three tenants with monthly, annual, usage, trial and suspended subscriptions, another
    organization the user may not see, and September and October 2026 closed."""
    ids = Ids()
    state = CloudiqState(organization_name="MSP", clock=clock, expires_in=expires_in)
    state.add_client(*CLIENT)
    state.add_client(*OTHER_CLIENT)
    state.add_user(USER, PASSWORD, first_name="Billing", last_name="Bot")
    ids.monthly = state.add_invoice_profile("Monthly").id
    ids.annual = state.add_invoice_profile("Annual", annual=True).id
    for term, cycle, cost, retail in PREMIUM_PRICES:
        state.add_agreement_product(
            PREMIUM, "Microsoft 365 Business Premium", term=term, billing_cycle=cycle,
            sales_price=cost, retail_price=retail,
        )  # fmt: skip
    state.add_agreement_product(BASIC, "Microsoft 365 Business Basic", term="P1M",
                                sales_price="6.48", retail_price="7.20")  # fmt: skip
    state.add_agreement_product(AZURE, "Azure plan", term=None, sales_price="0",
                                retail_price="0", family="Azure", unit="Usage")  # fmt: skip
    acme = state.add_tenant("Acme Dental Group", "acmedental.onmicrosoft.com", reference="ACME-001")
    evergreen = state.add_tenant("Evergreen Law", "evergreenlaw.onmicrosoft.com")
    harbor = state.add_tenant("Harbor Freight", "harborfreight.onmicrosoft.com", reference="HF-9")
    ids.acme, ids.evergreen, ids.harbor = acme.id, evergreen.id, harbor.id
    # The reference's example (assumed-shapes §3.7): 20 seats 1-18 Oct, 23 seats 19-31 Oct.
    ids.premium = state.add_subscription(acme.id, PREMIUM, 20, start_on=date(2025, 3, 19)).id
    state.set_quantity(ids.premium, 23, on=date(2026, 10, 19))
    ids.azure = state.add_subscription(acme.id, AZURE, start_on=date(2025, 1, 1), term=None).id
    for month, hours in ((9, "720"), (10, "744")):
        state.add_usage(ids.azure, year=2026, month=month, category="Virtual Machines",
                        meter="D2s v5", quantity=hours, unit_price="0.0960",
                        retail_unit_price="0.1150")  # fmt: skip
    # 0.0125 x 2 = 0.025: half-up gives 0.03 where banker's rounding would give 0.02.
    state.add_usage(ids.azure, year=2026, month=10, category="Storage", meter="LRS Snapshots",
                    quantity="2", unit_price="0.0125", retail_unit_price="0.0150",
                    unit="1 GB/Month")  # fmt: skip
    ids.annual_one = state.add_subscription(
        evergreen.id, PREMIUM, 5, start_on=date(2025, 10, 6), term="P1Y", billing_cycle=2,
        order_id="ORDER-A",
    ).id  # fmt: skip
    ids.annual_two = state.add_subscription(
        harbor.id, PREMIUM, 2, start_on=date(2024, 10, 20), term="P1Y", billing_cycle=2,
        order_id="ORDER-B",
    ).id  # fmt: skip
    ids.trial = state.add_subscription(harbor.id, BASIC, 10, start_on=date(2026, 9, 1),
                                       is_trial=True).id  # fmt: skip
    ids.suspended = state.add_subscription(
        harbor.id, BASIC, 3, start_on=date(2026, 1, 1), status=SubscriptionStatus.SUSPENDED,
        name="Basic (old)",
    ).id  # fmt: skip
    state.set_quantity(ids.suspended, 0, on=date(2026, 9, 1))
    ids.late_start = state.add_subscription(
        harbor.id, PREMIUM, 7, start_on=date(2026, 10, 10), term="P1Y"
    ).id
    other = state.add_organization("Other Reseller")
    ids.other_org = other.id
    other_profile = state.add_invoice_profile("Monthly", organization_id=other.id)
    ids.other_tenant = state.add_tenant(
        "Stranger Co", "stranger.onmicrosoft.com", organization_id=other.id,
        invoice_profile_id=other_profile.id,
    ).id  # fmt: skip
    state.add_subscription(ids.other_tenant, BASIC, 1, start_on=date(2026, 1, 1))
    state.close_month(2026, 9)
    state.close_month(2026, 10)
    ids.other_statement = next(
        s.id for s in state.statements() if s.organization_id == ids.other_org
    )
    return state, ids


def decoded(response: httpx.Response) -> Any:
    """The JSON body with numbers as Decimal, so money compares exactly."""
    return json.loads(response.content, parse_float=Decimal)


def token_form(**changes: str) -> dict[str, str]:
    form = {"grant_type": "password", "username": USER, "password": PASSWORD,
            "scope": "CustomerApi"}  # fmt: skip
    form.update(changes)
    return {k: v for k, v in form.items() if v}


class Api:
    """A plain httpx view of one sandbox: the token endpoint and authenticated GETs."""

    def __init__(self, sandbox: CloudiqSandbox, http: httpx.Client) -> None:
        self.sandbox = sandbox
        self.http = http
        self.base = sandbox.api_url

    def grant(
        self, form: dict[str, str], auth: tuple[str, str] | None = CLIENT, **kwargs: Any
    ) -> httpx.Response:
        if auth is not None:
            kwargs["auth"] = auth
        return self.http.post(f"{self.base}/connect/token", data=form, **kwargs)

    def login(self) -> str:
        response = self.grant(token_form())
        assert response.status_code == 200, response.text
        return str(response.json()["AccessToken"])

    def get(self, path: str, token: str | None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.get(f"{self.base}{path}", params=params, headers=headers)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        yield client


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[CloudiqSandbox, Ids]]:
    """One sandbox for the tests that only read; tests that change things use `fresh`."""
    state, ids = seeded(FakeClock())
    with CloudiqSandbox(state) as sandbox:
        yield sandbox, ids


@pytest.fixture(scope="module")
def ids(shared: tuple[CloudiqSandbox, Ids]) -> Ids:
    return shared[1]


@pytest.fixture(scope="module")
def api(shared: tuple[CloudiqSandbox, Ids], http: httpx.Client) -> Api:
    return Api(shared[0], http)


@pytest.fixture(scope="module")
def token(api: Api) -> str:
    return api.login()


@pytest.fixture
def fresh(clock: FakeClock, http: httpx.Client) -> Iterator[tuple[Api, CloudiqState, Ids]]:
    """A sandbox of its own with a 60 s token lifetime on the fake clock."""
    state, ids = seeded(clock, expires_in=60)
    with CloudiqSandbox(state) as sandbox:
        yield Api(sandbox, http), state, ids


def items(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = decoded(response)
    assert set(body) == {"Items", "TotalHits"}
    assert isinstance(body["Items"], list)
    return list(body["Items"])


def records_of(api: Api, token: str, statement_id: int) -> list[dict[str, Any]]:
    response = api.get(f"/billingstatements/{statement_id}/billingrecordsfile", token)
    assert response.status_code == 200, response.text
    data = base64.b64decode(decoded(response)["Data"], validate=True)
    records: list[dict[str, Any]] = json.loads(data.decode("utf-8"), parse_float=Decimal)
    return records


def statements(api: Api, token: str, **params: Any) -> list[dict[str, Any]]:
    return items(api.get("/billingstatements", token, **params))


# -- the token endpoint (assumed-shapes §3.1) ------------------------------------------------


def test_the_password_grant_answers_the_token_shape(api: Api) -> None:
    response = api.grant(token_form(username=USER.upper()))
    body = response.json()
    assert response.status_code == 200
    assert set(body) == TOKEN_KEYS
    assert (body["Error"], body["IdentityToken"], body["TokenType"]) == (None, None, "Bearer")
    assert body["ExpiresIn"] == 3600
    assert body["AccessToken"]
    assert body["RefreshToken"]
    assert body["AccessToken"] != body["RefreshToken"]
    assert response.headers["Cache-Control"] == "no-store"
    assert api.get("/me", body["AccessToken"]).status_code == 200


def test_the_scope_may_hold_other_scopes_too(api: Api) -> None:
    assert api.grant(token_form(scope="openid CustomerApi")).status_code == 200


@pytest.mark.parametrize(
    ("auth", "form", "status", "error"),
    [
        (None, token_form(), 401, "invalid_client"),
        (("test-client", "wrong"), token_form(), 401, "invalid_client"),
        (("nobody", "test-secret"), token_form(), 401, "invalid_client"),
        (CLIENT, token_form(password="wrong"), 400, "invalid_grant"),
        (CLIENT, token_form(username="nobody@msp.example"), 400, "invalid_grant"),
        (CLIENT, token_form(password=""), 400, "invalid_grant"),
        (CLIENT, token_form(scope=""), 400, "invalid_scope"),
        (CLIENT, token_form(scope="openid profile"), 400, "invalid_scope"),
        (CLIENT, token_form(grant_type="client_credentials"), 400, "unsupported_grant_type"),
        (CLIENT, token_form(grant_type=""), 400, "unsupported_grant_type"),
        (CLIENT, {"grant_type": "refresh_token", "refresh_token": "nope"}, 400, "invalid_grant"),
    ],
)
def test_token_failures_answer_the_token_shape(
    api: Api, auth: tuple[str, str] | None, form: dict[str, str], status: int, error: str
) -> None:
    response = api.grant(form, auth)
    assert response.status_code == status
    assert response.json() == {
        "AccessToken": None, "IdentityToken": None, "Error": error, "ExpiresIn": 0,
        "TokenType": None, "RefreshToken": None,
    }  # fmt: skip


@pytest.mark.parametrize("authorization", ["Bearer abc", "Basic !!!", "Basic dGVzdC1jbGllbnQ="])
def test_client_auth_must_be_http_basic_with_id_and_secret(api: Api, authorization: str) -> None:
    response = api.grant(token_form(), None, headers={"Authorization": authorization})
    assert (response.status_code, response.json()["Error"]) == (401, "invalid_client")


def test_a_refresh_token_works_once_and_brings_a_new_pair(api: Api) -> None:
    first = api.grant(token_form()).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": first["RefreshToken"]}
    second = api.grant(refresh)
    assert second.status_code == 200
    renewed = second.json()
    assert renewed["RefreshToken"] != first["RefreshToken"]
    assert renewed["AccessToken"] != first["AccessToken"]
    assert api.get("/me", renewed["AccessToken"]).status_code == 200
    assert api.grant(refresh).json()["Error"] == "invalid_grant"
    again = {"grant_type": "refresh_token", "refresh_token": renewed["RefreshToken"]}
    assert api.grant(again).status_code == 200


def test_a_refresh_token_only_works_for_its_own_client(api: Api) -> None:
    issued = api.grant(token_form()).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": issued["RefreshToken"]}
    assert api.grant(refresh, OTHER_CLIENT).json()["Error"] == "invalid_grant"
    assert api.grant(refresh, CLIENT).status_code == 200


def test_access_tokens_expire_on_the_clock_and_refresh_still_works(
    fresh: tuple[Api, CloudiqState, Ids], clock: FakeClock
) -> None:
    api, _, _ = fresh
    issued = api.grant(token_form()).json()
    assert issued["ExpiresIn"] == 60
    clock.advance(59)
    assert api.get("/me", issued["AccessToken"]).status_code == 200
    clock.advance(1)
    expired = api.get("/me", issued["AccessToken"])
    assert (expired.status_code, expired.json()) == (401, UNAUTHORIZED)
    assert expired.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    refresh = {"grant_type": "refresh_token", "refresh_token": issued["RefreshToken"]}
    assert api.get("/me", api.grant(refresh).json()["AccessToken"]).status_code == 200


def test_expire_tokens_ends_every_session_mid_run(fresh: tuple[Api, CloudiqState, Ids]) -> None:
    api, state, _ = fresh
    issued = api.grant(token_form()).json()
    state.expire_tokens()
    assert api.get("/customertenants", issued["AccessToken"]).status_code == 401
    refresh = {"grant_type": "refresh_token", "refresh_token": issued["RefreshToken"]}
    renewed = api.grant(refresh).json()
    assert api.get("/customertenants", renewed["AccessToken"]).status_code == 200
    state.expire_tokens(refresh=True)
    again = {"grant_type": "refresh_token", "refresh_token": renewed["RefreshToken"]}
    assert api.grant(again).json()["Error"] == "invalid_grant"
    assert api.get("/me", api.login()).status_code == 200


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-token", "not-a-token", "Basic dGVzdDp0ZXN0", "Bearer"]
)
def test_every_resource_needs_a_valid_bearer_token(
    api: Api, http: httpx.Client, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for path in ("/me", "/organizations", *COLLECTIONS, "/billingstatements/1/billingrecordsfile"):
        response = http.get(api.base + path, headers=headers)
        assert (response.status_code, response.json()) == (401, UNAUTHORIZED), path
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


# -- query conventions and errors (assumed-shapes §3.2, §3.3) --------------------------------


def test_me_and_the_organizations_the_user_may_access(api: Api, token: str) -> None:
    me = api.get("/me", token).json()
    assert (me["UserName"], me["FirstName"], me["LastName"]) == (USER, "Billing", "Bot")
    assert isinstance(me["Id"], str)
    assert api.get("/organizations", token).json() == {
        "Items": [{"Id": ORG, "Name": "MSP"}], "TotalHits": 1,
    }  # fmt: skip


def test_paging_with_total_hits_and_a_default_page_size_of_50(
    fresh: tuple[Api, CloudiqState, Ids],
) -> None:
    api, state, _ = fresh
    for n in range(120):
        state.add_tenant(f"Bulk {n:03d}", f"bulk{n}.onmicrosoft.com")
    token = api.login()
    first = decoded(api.get("/customertenants", token))
    assert (len(first["Items"]), first["TotalHits"]) == (50, 123)
    third = decoded(api.get("/customertenants", token, page=3))
    assert (len(third["Items"]), third["TotalHits"]) == (23, 123)
    assert decoded(api.get("/customertenants", token, page=4)) == {"Items": [], "TotalHits": 123}
    page = items(api.get("/customertenants", token, page=2, pageSize=7))
    assert [t["Name"] for t in page] == [f"Bulk {n:03d}" for n in range(4, 11)]
    everything = items(api.get("/customertenants", token, pageSize=500))
    assert [t["Id"] for t in everything] == sorted(t["Id"] for t in everything)


@pytest.mark.parametrize("path", ["/customertenants", "/customertenants/"])
@pytest.mark.parametrize("name", ["organizationId", "OrganizationId", "ORGANIZATIONID"])
def test_parameter_names_are_case_insensitive_and_the_slash_optional(
    api: Api, token: str, path: str, name: str
) -> None:
    found = items(api.get(path, token, **{name: ORG, "PAGESIZE": 2, "Page": 1}))
    assert [t["Name"] for t in found] == ["Acme Dental Group", "Evergreen Law"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/billingstatements", {"organizationId": 0, "invoiceProfileId": 0, "provisionType": 0}),
        ("/subscriptions", {"organizationId": 0, "customerTenantId": 0, "statuses": 0}),
        ("/customertenants", {"organizationId": 0, "publisherId": 0, "programId": 0}),
    ],
)
def test_integer_filters_set_to_0_mean_no_filter(
    api: Api, token: str, path: str, params: dict[str, int]
) -> None:
    unfiltered = items(api.get(path, token))
    assert unfiltered
    assert items(api.get(path, token, **params)) == unfiltered


@pytest.mark.parametrize("path", COLLECTIONS)
def test_another_organization_is_403(api: Api, token: str, ids: Ids, path: str) -> None:
    for organization_id in (ids.other_org, 999999):
        response = api.get(path, token, organizationId=organization_id)
        body = response.json()
        assert (response.status_code, body["ErrorCode"]) == (403, "403 Forbidden")
        assert set(body) == ERROR_KEYS


def test_unknown_ids_and_objects_of_another_organization_are_404(
    api: Api, token: str, ids: Ids
) -> None:
    for path in (
        "/customertenants/999", f"/customertenants/{ids.other_tenant}", "/subscriptions/1",
        "/billingstatements/1/billingrecordsfile",
        f"/billingstatements/{ids.other_statement}/billingrecordsfile", "/no-such-resource",
    ):  # fmt: skip
        response = api.get(path, token)
        body = response.json()
        assert (response.status_code, body["ErrorCode"]) == (404, "404 NotFound"), path
        assert set(body) == ERROR_KEYS
        assert body["Parameters"] == {}
        assert body["ObjectErrors"] == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/customertenants", {"organizationId": "acme"}),
        ("/customertenants", {"page": "two"}),
        ("/customertenants", {"pageSize": "1.5"}),
        ("/subscriptions", {"customerTenantId": "99999999999"}),
        ("/subscriptions", {"isTrial": "maybe"}),
        ("/billingstatements", {"provisionType": "seat"}),
        ("/billingstatements", {"from": "October"}),
        ("/customertenants/abc", {}),
    ],
)
def test_a_malformed_parameter_is_400(
    api: Api, token: str, path: str, params: dict[str, str]
) -> None:
    response = api.get(path, token, **params)
    body = response.json()
    assert (response.status_code, body["ErrorCode"]) == (400, "400 BadRequest")
    assert set(body) == ERROR_KEYS
    # The offending parameter and value; a path id is named "id".
    assert body["Parameters"] == (params or {"id": "abc"})


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/customertenants", "GET"),
        ("DELETE", "/customertenants/210001/", "GET"),
        ("PUT", "/billingstatements/880101/billingrecordsfile", "GET"),
        ("GET", "/connect/token", "POST"),
    ],
)
def test_a_wrong_method_is_405(
    api: Api, http: httpx.Client, method: str, path: str, allowed: str
) -> None:
    response = http.request(method, api.base + path)
    body = response.json()
    assert (response.status_code, body["ErrorCode"]) == (405, "405 MethodNotAllowed")
    assert set(body) == ERROR_KEYS
    assert response.headers["Allow"] == allowed


# -- tenants, profiles, subscriptions (vendor-apis §C.3, assumed-shapes §3.4) ----------------


def test_a_customer_tenant_has_the_documented_fields(api: Api, token: str, ids: Ids) -> None:
    tenant = api.get(f"/customertenants/{ids.acme}/", token).json()
    assert tenant == {
        "Id": ids.acme, "Name": "Acme Dental Group", "Publisher": {"Id": 2, "Name": "Microsoft"},
        "Program": {"Id": 3, "Name": "Microsoft CSP"},
        "PublisherCustomerId": tenant["PublisherCustomerId"],
        "ExternalPublisherCustomerId": None, "Domain": "acmedental.onmicrosoft.com",
        "DomainPrefix": "acmedental", "Reference": "ACME-001", "CustomerTenantType": 2,
        "EntityStatus": 0, "Organization": {"Id": ORG, "Name": "MSP"},
        "InvoiceProfile": {"Id": ids.monthly, "Name": "Monthly"}, "Consumer": None,
        "ResellerMarkup": 0.0, "DefaultSubscriptionPriceType": 2,
    }  # fmt: skip
    assert len(tenant["PublisherCustomerId"]) == 36
    assert items(api.get("/customertenants", token)) == [
        api.get(f"/customertenants/{tenant_id}", token).json()
        for tenant_id in (ids.acme, ids.evergreen, ids.harbor)
    ]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"search": "dental"}, ["Acme Dental Group"]),
        ({"search": "EVERGREENLAW.onmicrosoft"}, ["Evergreen Law"]),
        ({"search": "hf-9"}, ["Harbor Freight"]),
        ({"domain": "HarborFreight.onmicrosoft.com"}, ["Harbor Freight"]),
        ({"publisherId": 7}, []),
    ],
)
def test_customer_tenants_can_be_searched(
    api: Api, token: str, params: dict[str, Any], names: list[str]
) -> None:
    assert [t["Name"] for t in items(api.get("/customertenants", token, **params))] == names


def test_invoice_profiles_are_the_billing_motions(api: Api, token: str, ids: Ids) -> None:
    profiles = items(api.get("/invoiceprofiles/", token, organizationId=ORG))
    assert [(p["Id"], p["Name"]) for p in profiles] == [
        (ids.monthly, "Monthly"), (ids.annual, "Annual"),
    ]  # fmt: skip
    assert profiles[0]["Organization"] == {"Id": ORG, "Name": "MSP"}


def test_a_subscription_has_the_documented_fields(api: Api, token: str, ids: Ids) -> None:
    found = decoded(api.get(f"/subscriptions/{ids.premium}", token))
    assert found["CustomerTenant"] == {"Id": ids.acme, "Name": "Acme Dental Group"}
    assert found["Product"]["PartNumber"] == found["PartNumber"] == PREMIUM
    assert found["Product"]["PublisherProductId"] == "CFQ7TTC0LCHC"
    assert (found["Quantity"], found["Status"], found["IsTrial"]) == (23, 1, False)
    assert (found["TermDuration"], found["BillingCycle"], found["ProvisionType"]) == ("P1M", 1, 1)
    assert found["SalesPrice"] == Decimal("26.4")
    assert found["StartDate"] == "2025-03-19T00:00:00"
    # The state's calendar is its billing: after October closed it is 1 November.
    assert found["EndDate"] == "2026-11-18T00:00:00"
    assert found["CreationDate"] == "2025-03-19T00:00:00+00:00"
    azure = decoded(api.get(f"/subscriptions/{ids.azure}", token))
    assert (azure["TermDuration"], azure["ProvisionType"], azure["EndDate"]) == (None, 2, None)
    annual = decoded(api.get(f"/subscriptions/{ids.annual_one}", token))
    assert (annual["TermDuration"], annual["BillingCycle"]) == ("P1Y", 2)
    assert annual["InvoiceProfile"] == {"Id": ids.annual, "Name": "Annual"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"customerTenantId": "acme"}, ["premium", "azure"]),
        ({"statuses": 1, "customerTenantId": "harbor"}, ["annual_two", "trial", "late_start"]),
        ({"statuses": 2}, ["suspended"]),
        ({"statuses": 3, "customerTenantId": "harbor"},
         ["annual_two", "trial", "suspended", "late_start"]),
        ({"statuses": 128}, []),
        ({"isTrial": "true"}, ["trial"]),
        ({"isTrial": "False", "customerTenantId": "harbor"},
         ["annual_two", "suspended", "late_start"]),
        ({"search": "(old)"}, ["suspended"]),
        ({"search": "dzh318z0bps6"}, ["azure"]),
    ],
)  # fmt: skip
def test_subscriptions_filters(
    api: Api, token: str, ids: Ids, params: dict[str, Any], expected: list[str]
) -> None:
    if "customerTenantId" in params:
        params = {**params, "customerTenantId": getattr(ids, params["customerTenantId"])}
    found = items(api.get("/subscriptions/", token, organizationId=ORG, **params))
    assert [s["Id"] for s in found] == [getattr(ids, name) for name in expected]


# -- the price list (assumed-shapes §3.5) ----------------------------------------------------


def test_agreement_products_have_one_row_per_term_and_billing_cycle(api: Api, token: str) -> None:
    rows = items(api.get("/agreementproducts", token, OrganizationId=ORG))
    shape = [
        (r["ProductVariant"]["PartNumber"], r["ProductVariant"]["PurchasePeriod"],
         r["ProductVariant"]["DefaultBillingCycleId"], r["MonthMultiplier"],
         r["SalesPrice"]["Value"], r["RecommendedRetailPrice"]["Value"])
        for r in rows
    ]  # fmt: skip
    assert shape == [
        (PREMIUM, "P1M", 1, 1, Decimal("23.76"), Decimal("26.4")),
        (PREMIUM, "P1Y", 1, 1, Decimal("19.8"), Decimal("22.0")),
        (PREMIUM, "P1Y", 2, 12, Decimal("237.6"), Decimal("264.0")),
        (BASIC, "P1M", 1, 1, Decimal("6.48"), Decimal("7.2")),
        (AZURE, None, 1, 1, Decimal("0.0"), Decimal("0.0")),
    ]
    premium = rows[2]
    assert premium["Name"] == premium["ProductVariant"]["ProductName"]
    assert premium["UniqueId"] == f"9001-{premium['PriceId']}"
    assert premium["ProductVariant"]["AvailableBillingCycleIds"] == [2]
    assert premium["ProductVariant"]["Product"]["PublisherProductId"] == "CFQ7TTC0LCHC"
    assert premium["SalesPrice"]["CurrencyCode"] == "USD"
    assert (premium["PriceListName"], premium["AgreementType"]) == ("Microsoft CSP (USD)", 13)
    assert len({r["ProductVariant"]["Product"]["Id"] for r in rows[:3]}) == 1


def test_agreement_products_can_be_searched_and_paged(api: Api, token: str) -> None:
    assert len(items(api.get("/agreementproducts", token, search="business premium"))) == 3
    assert len(items(api.get("/agreementproducts", token, search="cfq7ttc0lh18"))) == 1
    paged = decoded(api.get("/agreementproducts", token, page=2, pageSize=2))
    assert (len(paged["Items"]), paged["TotalHits"]) == (2, 5)


# -- billing statements (assumed-shapes §3.6) ------------------------------------------------


def test_statements_newest_first_with_their_periods(api: Api, token: str, ids: Ids) -> None:
    found = statements(api, token)
    assert [(s["StartDate"], s["EndDate"]) for s in found] == [
        ("2026-10-01T00:00:00+00:00", "2026-10-31T00:00:00+00:00")] * 4 + [
        ("2026-09-01T00:00:00+00:00", "2026-09-30T00:00:00+00:00")] * 2  # fmt: skip
    october = [(s["InvoiceProfile"]["Id"], s["ProvisionType"], s["OrderId"]) for s in found[:4]]
    # One statement per invoice profile and provision type, and per order for annual seats.
    assert october == [
        (ids.monthly, 1, None), (ids.monthly, 2, None),
        (ids.annual, 1, "ORDER-A"), (ids.annual, 1, "ORDER-B"),
    ]  # fmt: skip
    assert found[0]["Organization"] == {"Id": ORG, "Name": "MSP"}
    assert set(found[0]) == {
        "Id", "TotalSalesPrice", "InvoiceProfile", "Organization", "StartDate", "EndDate",
        "ProvisionType", "OrderId",
    }  # fmt: skip


def test_statements_filtered_by_invoice_profile_and_provision_type(
    api: Api, token: str, ids: Ids
) -> None:
    annual = statements(api, token, invoiceProfileId=ids.annual)
    assert [s["OrderId"] for s in annual] == ["ORDER-A", "ORDER-B"]
    usage = statements(api, token, provisionType=2, organizationId=ORG)
    assert [(s["ProvisionType"], s["StartDate"][:7]) for s in usage] == [
        (2, "2026-10"), (2, "2026-09"),
    ]  # fmt: skip
    assert statements(api, token, invoiceProfileId=ids.annual, provisionType=2) == []


@pytest.mark.parametrize(
    ("bounds", "months"),
    [
        ({"from": "2026-10-15", "to": "2026-10-15"}, ["2026-10"]),
        ({"from": "2026-09-30", "to": "2026-10-01"}, ["2026-10", "2026-09"]),
        ({"from": "2026-10-31T23:59:59.9999999+00:00"}, ["2026-10"]),
        ({"from": "2026-11-01"}, []),
        ({"to": "2026-09-30"}, ["2026-09"]),
        ({"to": "2026-08-31T23:59:59Z"}, []),
        # 03:00 at +05:00 is still 30 September in UTC.
        ({"from": "2026-10-01T03:00:00+05:00", "to": "2026-10-01T03:00:00+05:00"},
         ["2026-09"]),
    ],
)  # fmt: skip
def test_from_and_to_select_statements_whose_period_overlaps(
    api: Api, token: str, ids: Ids, bounds: dict[str, str], months: list[str]
) -> None:
    found = statements(api, token, invoiceProfileId=ids.monthly, provisionType=1, **bounds)
    assert [s["StartDate"][:7] for s in found] == months


# -- billing records (assumed-shapes §3.7) ---------------------------------------------------


def october_monthly(api: Api, token: str, ids: Ids, provision_type: int = 1) -> dict[str, Any]:
    return statements(
        api, token, invoiceProfileId=ids.monthly, provisionType=provision_type, to="2026-10-31",
        **{"from": "2026-10-01"},
    )[0]  # fmt: skip


def test_the_records_file_is_base64_json_never_zipped(api: Api, token: str, ids: Ids) -> None:
    statement = october_monthly(api, token, ids)
    response = api.get(f"/billingstatements/{statement['Id']}/billingrecordsfile/", token)
    body = decoded(response)
    assert set(body) == {"BillingStatement", "FileName", "Data"}
    assert body["BillingStatement"] == statement
    assert body["FileName"] == f"billing-records-{statement['Id']}.json"
    data = base64.b64decode(body["Data"], validate=True)
    assert not data.startswith(b"PK")  # not a zip archive
    records = json.loads(data.decode("utf-8"))
    assert isinstance(records, list)
    assert all(r["BillingStatementId"] == statement["Id"] for r in records)
    assert len({r["Id"] for r in records}) == len(records)


def test_a_mid_month_change_gives_consecutive_prorated_records(
    api: Api, token: str, ids: Ids
) -> None:
    records = records_of(api, token, october_monthly(api, token, ids)["Id"])
    premium = [r for r in records if r["Subscription"]["Id"] == ids.premium]
    # The reference's example, to the cent: 23.76 x 20 x 18/31 and 23.76 x 23 x 13/31.
    assert [
        (r["StartDate"], r["EndDate"], r["Quantity"], r["ItemUnitPrice"]["Value"], r["Amount"],
         r["ResellerSalesUnitPrice"], r["ResellerSalesPriceTotal"])
        for r in premium
    ] == [
        ("2026-10-01T00:00:00", "2026-10-18T00:00:00", Decimal("20.0"), Decimal("23.76"),
         Decimal("275.92"), Decimal("26.4"), Decimal("306.58")),
        ("2026-10-19T00:00:00", "2026-10-31T00:00:00", Decimal("23.0"), Decimal("23.76"),
         Decimal("229.17"), Decimal("26.4"), Decimal("254.63")),
    ]  # fmt: skip
    first = premium[0]
    assert first["CustomerTenant"]["Id"] == str(ids.acme)  # a string here (§3.7)
    assert first["CustomerTenant"]["Reference"] == "ACME-001"
    assert first["CustomerTenant"]["Domain"] == "acmedental.onmicrosoft.com"
    assert first["Subscription"]["StartDate"] == "2025-03-19T00:00:00"
    assert first["Product"]["PartNumber"] == first["InvoicePartNumber"] == PREMIUM
    assert (first["ProvisionType"], first["BillingCycle"], first["TermDuration"]) == (1, 1, "P1M")
    assert (first["Unit"], first["IncludedQuantity"], first["Currency"]) == (
        "Licenses", Decimal("0.0"), "USD",
    )  # fmt: skip
    assert first["Created"] == "2026-11-03T04:00:00"
    assert "MeterName" not in first


def test_a_subscription_starting_mid_month_is_prorated_and_trials_are_free(
    api: Api, token: str, ids: Ids
) -> None:
    records = records_of(api, token, october_monthly(api, token, ids)["Id"])
    by_subscription = {r["Subscription"]["Id"]: r for r in records}
    late = by_subscription[ids.late_start]
    # P1Y paid monthly: 19.80 x 7 x 22/31 = 98.36; retail 22.00 x 7 x 22/31 = 109.29.
    assert (late["StartDate"], late["Amount"], late["ResellerSalesPriceTotal"]) == (
        "2026-10-10T00:00:00", Decimal("98.36"), Decimal("109.29"),
    )  # fmt: skip
    assert (late["TermDuration"], late["BillingCycle"]) == ("P1Y", 1)
    assert ids.trial not in by_subscription
    assert ids.suspended not in by_subscription  # quantity 0 since 1 September


def test_annual_seats_are_charged_whole_in_their_anniversary_month(
    api: Api, token: str, ids: Ids
) -> None:
    annual = statements(api, token, invoiceProfileId=ids.annual)
    assert [s["StartDate"][:7] for s in annual] == ["2026-10", "2026-10"]
    one, two = (records_of(api, token, s["Id"]) for s in annual)
    assert [r["Subscription"]["Id"] for r in one] == [ids.annual_one]
    assert [r["Subscription"]["Id"] for r in two] == [ids.annual_two]
    record = one[0]
    assert (record["StartDate"], record["EndDate"]) == (
        "2026-10-06T00:00:00",
        "2027-10-05T00:00:00",
    )
    assert (record["Quantity"], record["ItemUnitPrice"]["Value"], record["Amount"]) == (
        Decimal("5.0"), Decimal("237.6"), Decimal("1188.0"),
    )  # fmt: skip
    assert record["ResellerSalesPriceTotal"] == Decimal("1320.0")
    assert (record["BillingCycle"], record["TermDuration"]) == (2, "P1Y")
    assert (two[0]["StartDate"], two[0]["Amount"]) == ("2026-10-20T00:00:00", Decimal("475.2"))


def test_usage_records_come_one_per_meter(api: Api, token: str, ids: Ids) -> None:
    records = records_of(api, token, october_monthly(api, token, ids, provision_type=2)["Id"])
    assert [
        (r["MeterCategory"], r["MeterName"], r["Unit"], r["Quantity"], r["Amount"],
         r["ResellerSalesPriceTotal"])
        for r in records
    ] == [
        ("Virtual Machines", "D2s v5", "1 Hour", Decimal("744.0"), Decimal("71.42"),
         Decimal("85.56")),
        # 0.0125 x 2 = 0.025 rounds half-up to 0.03.
        ("Storage", "LRS Snapshots", "1 GB/Month", Decimal("2.0"), Decimal("0.03"),
         Decimal("0.03")),
    ]  # fmt: skip
    vm = records[0]
    assert vm["ItemUnitPrice"]["Value"] == Decimal("0.096")
    assert (vm["StartDate"], vm["EndDate"]) == ("2026-10-01T00:00:00", "2026-10-31T00:00:00")
    assert (vm["ProvisionType"], vm["TermDuration"], vm["Subscription"]["EndDate"]) == (
        2, None, None,
    )  # fmt: skip


def test_statement_totals_are_the_sum_of_their_amounts(api: Api, token: str) -> None:
    found = statements(api, token)
    for statement in found:
        amounts = [r["Amount"] for r in records_of(api, token, statement["Id"])]
        assert amounts
        assert statement["TotalSalesPrice"] == {"Value": sum(amounts), "CurrencyCode": "USD"}
    assert found[0]["TotalSalesPrice"]["Value"] == Decimal("603.45")  # 275.92 + 229.17 + 98.36


# -- the state, its calendar and its arithmetic ---------------------------------------------


def test_months_close_once_and_in_order_and_the_past_is_frozen() -> None:
    state, ids = seeded(FakeClock())
    assert state.today == date(2026, 11, 1)
    for year, month in ((2026, 10), (2026, 9)):
        with pytest.raises(ValueError, match="closed"):
            state.close_month(year, month)
    with pytest.raises(ValueError, match="closed month"):
        state.set_quantity(ids.premium, 30, on=date(2026, 10, 31))
    with pytest.raises(ValueError, match="closed month"):
        state.add_usage(ids.azure, year=2026, month=10, category="c", meter="m", quantity=1,
                        unit_price=1, retail_unit_price=1)  # fmt: skip
    state.set_quantity(ids.premium, 30, on=date(2026, 11, 16))
    (november, *_) = state.close_month(2026, 11)
    premium = [r for r in november.records if r.subscription_id == ids.premium]
    assert [(r.quantity, r.amount) for r in premium] == [
        (Decimal(23), Decimal("273.24")), (Decimal(30), Decimal("356.40")),
    ]  # fmt: skip


def test_seeding_refuses_what_the_vendor_would_not_sell() -> None:
    state, ids = seeded(FakeClock())
    with pytest.raises(ValueError, match="price list"):
        state.add_subscription(ids.acme, BASIC, 1, start_on=date(2026, 12, 1), term="P1Y")
    with pytest.raises(ValueError, match="annually"):
        state.add_agreement_product(BASIC, "Basic", term="P1M", billing_cycle=2,
                                    sales_price="1", retail_price="1")  # fmt: skip
    with pytest.raises(ValueError, match="already"):
        state.add_agreement_product(BASIC, "Basic", term="P1M", sales_price="1",
                                    retail_price="1")  # fmt: skip
    with pytest.raises(TypeError, match="Decimal"):
        state.add_agreement_product("X:1", "X", term="P1M", sales_price=1.1,  # type: ignore[arg-type]
                                    retail_price="1")  # fmt: skip
    with pytest.raises(ValueError, match="usage"):
        state.add_usage(ids.premium, year=2026, month=12, category="c", meter="m", quantity=1,
                        unit_price=1, retail_unit_price=1)  # fmt: skip
    with pytest.raises(KeyError):
        state.set_quantity(1, 5, on=date(2026, 12, 1))


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2026, 1, 31), 2, date(2026, 3, 31)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2026, 11, 15), 2, date(2027, 1, 15)),
    ],
)
def test_shift_months_clamps_to_the_month_end(day: date, months: int, expected: date) -> None:
    assert shift_months(day, months) == expected


def test_terms_renew_on_the_anniversary() -> None:
    start = date(2025, 3, 19)
    assert term_bounds(start, "P1M", date(2026, 10, 18)) == (date(2026, 9, 19), date(2026, 10, 18))
    assert term_bounds(start, "P1M", date(2026, 10, 19)) == (date(2026, 10, 19), date(2026, 11, 18))
    assert term_bounds(start, "P1Y", date(2026, 3, 18)) == (date(2025, 3, 19), date(2026, 3, 18))
    assert term_bounds(start, "P1Y", date(2024, 1, 1)) == (date(2025, 3, 19), date(2026, 3, 18))


def test_quantity_periods_merge_equal_runs_and_drop_zero() -> None:
    history = [(date(2026, 1, 1), 5), (date(2026, 10, 5), 5), (date(2026, 10, 10), 0),
               (date(2026, 10, 20), 8)]  # fmt: skip
    assert quantity_periods(history, date(2026, 10, 1), date(2026, 10, 31)) == [
        (date(2026, 10, 1), date(2026, 10, 9), 5), (date(2026, 10, 20), date(2026, 10, 31), 8),
    ]  # fmt: skip


# -- rate limit and the demo -----------------------------------------------------------------


def test_the_rate_limit_is_optional_and_answers_429(clock: FakeClock, http: httpx.Client) -> None:
    state, _ = seeded(clock)
    with CloudiqSandbox(state, requests_per_minute=2, retry_after=7) as sandbox:
        api = Api(sandbox, http)
        token = api.login()
        assert api.get("/me", token).status_code == 200
        limited = api.get("/me", token)
        assert (limited.status_code, limited.json()["ErrorCode"]) == (429, "429 TooManyRequests")
        assert limited.headers["Retry-After"] == "7"
        clock.advance(60.01)
        assert api.get("/me", token).status_code == 200


def test_the_demo_account_logs_in_and_has_two_closed_months(http: httpx.Client) -> None:
    with CloudiqSandbox(demo_cloudiq_state()) as sandbox:
        response = http.post(
            f"{sandbox.api_url}/connect/token",
            auth=(DEMO_CLOUDIQ_CLIENT_ID, DEMO_CLOUDIQ_CLIENT_SECRET),
            data={"grant_type": "password", "username": DEMO_CLOUDIQ_USER,
                  "password": DEMO_CLOUDIQ_PASSWORD, "scope": "CustomerApi"},
        )  # fmt: skip
        api = Api(sandbox, http)
        token = response.json()["AccessToken"]
        organizations = items(api.get("/organizations", token))
        assert [o["Id"] for o in organizations] == [DEMO_CLOUDIQ_ORGANIZATION_ID]
        found = statements(api, token, organizationId=DEMO_CLOUDIQ_ORGANIZATION_ID)
        assert sorted({s["StartDate"][:7] for s in found}) == ["2026-09", "2026-10"]
        assert {s["ProvisionType"] for s in found} == {1, 2}
        assert len(items(api.get("/agreementproducts", token, pageSize=100))) >= 15


def test_demo_tenants_line_up_with_the_syncro_customers() -> None:
    syncro = {c["business_name"] for c in demo_syncro_state().customers.all()}
    tenants = [t.name for t in demo_cloudiq_state().tenants()]
    identical = [name for name in tenants if name in syncro]
    assert 2 <= len(identical) < len(tenants) - 1
    first_words = {name.split()[0] for name in syncro}
    unknown = [name for name in tenants if name.split()[0] not in first_words]
    assert unknown == ["Cobalt Marine Supply"]


def test_the_demo_can_bill_a_new_month_with_changed_counts() -> None:
    state = demo_cloudiq_state()
    premium = next(s for s in state.subscriptions() if s.name.endswith("Business Premium"))
    state.set_quantity(premium.id, premium.quantity + 2, on=date(2026, 11, 1))
    created = state.close_month(2026, 11)
    assert created
    assert all(s.start_on == date(2026, 11, 1) for s in created)
    charged = [r.quantity for s in created for r in s.records if r.subscription_id == premium.id]
    assert charged == [Decimal(25)]


def test_the_demo_is_deterministic() -> None:
    first, second = demo_cloudiq_state(), demo_cloudiq_state()
    assert first.statements() == second.statements()
    assert first.subscriptions() == second.subscriptions()



def test_one_organization_by_id_and_a_foreign_one_is_not_found(api: Api, token: str) -> None:
    own = api.get(f"/organizations/{ORG}", token)
    other = api.get("/organizations/99999", token)
    assert (own.status_code, own.json()["Id"]) == (200, ORG)
    assert (other.status_code, other.json()["ErrorCode"]) == (404, "404 NotFound")
