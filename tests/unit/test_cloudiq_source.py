"""`CloudiqSource`'s billing rules, table-driven, against a fake Crayon API behind MockTransport.

The fake answers like assumed-shapes.md §3 (PascalCase token JSON, `{"Items", "TotalHits"}`
pages, statements filtered by profile and period, records as base64 JSON), so every rule is
tested through the real client's parsing. Amounts in the tables are worked out by hand with
§3.7's formula (`unit x seats x days / days_in_month`, half-up to cents), never by the code.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from sync_daemon.connectors.cloudiq import (
    CloudiqClient,
    CloudiqSource,
    charge_key,
    history_window,
    sku_for,
)
from sync_daemon.connectors.http import encode_json
from sync_daemon.errors import ConfigError, InvariantError
from sync_daemon.settings import CloudiqSettings
from sync_daemon.vendor import Charge, Snapshot, SourceCustomer, SourceProblem, SourceProduct, Usage

BASE = "https://api.crayon.com/api/v1"
ORG = 9001
BP = "CFQ7TTC0LCHC:0002"  # Microsoft 365 Business Premium
BB = "CFQ7TTC0LDPB:0001"  # Microsoft 365 Business Basic
AZ = "DZH318Z0BPS6:0001"  # Azure plan
MONTHLY = {"Id": 3101, "Name": "Monthly"}
ANNUAL = {"Id": 3102, "Name": "Annual"}
TODAY = date(2026, 11, 23)
BP_UNITS = ("23.76", "26.40")  # Business Premium P1M: cost and retail per seat and month
D = Decimal

NAMES = {"210001": "Acme Dental Group", "210002": "Birch Legal LLP", "210003": "Cedar Vet"}


def price(part: str, term: str | None, cycle: int, cost: str, retail: str,  # noqa: PLR0917
          name: str = "Microsoft 365 Business Premium") -> dict[str, Any]:
    """A price-list row as assumed-shapes.md §3.5 shows it."""
    return {
        "UniqueId": f"{ORG}-{part}-{term}-{cycle}", "Name": name,
        "ProductVariant": {"PartNumber": part, "ProductName": name, "PurchasePeriod": term,
                           "DefaultBillingCycleId": cycle, "AvailableBillingCycleIds": [cycle]},
        "SalesPrice": {"Value": D(cost), "CurrencyCode": "USD"},
        "RecommendedRetailPrice": {"Value": D(retail), "CurrencyCode": "USD"},
        "MonthMultiplier": 12 if cycle == 2 else 1,
    }


PRICES = [
    price(BP, "P1M", 1, "23.76", "26.40"),
    price(BP, "P1Y", 1, "19.80", "22.00"),
    price(BP, "P1Y", 2, "237.60", "264.00"),
    price(BB, "P1M", 1, "7.20", "8.00", "Microsoft 365 Business Basic"),
    price(AZ, None, 1, "0", "0", "Azure plan"),
]


def tenant(tenant_id: int, profile: dict[str, Any] | None = MONTHLY) -> dict[str, Any]:
    return {"Id": tenant_id, "Name": NAMES.get(str(tenant_id), f"Tenant {tenant_id}"),
            "Domain": f"t{tenant_id}.onmicrosoft.com", "InvoiceProfile": profile,
            "Publisher": {"Id": 2, "Name": "Microsoft"}}


def stmt(statement_id: int, *, profile: dict[str, Any] = MONTHLY, start: str = "2026-10-01",
         end: str = "2026-10-31", provision: int = 1, total: str = "0") -> dict[str, Any]:
    return {"Id": statement_id, "TotalSalesPrice": {"Value": D(total), "CurrencyCode": "USD"},
            "InvoiceProfile": profile, "Organization": {"Id": ORG, "Name": "Northwind"},
            "StartDate": f"{start}T00:00:00+00:00", "EndDate": f"{end}T00:00:00+00:00",
            "ProvisionType": provision}


_ids = iter(range(1, 1_000_000))


def rec(tenant_id: str = "210001", *, sub: int | None = 5100001, part: str = BP,
        term: str | None = "P1M", cycle: int = 1, provision: int = 1, start: str = "2026-10-01",
        end: str = "2026-10-31", qty: int | str = 20, unit: str = "23.76",
        amount: str | None = None, retail_unit: str = "26.40", retail: str | None = None,
        **extra: Any) -> dict[str, Any]:
    """A billing record (§3.7); totals default to a whole period (unit x quantity)."""
    return {
        "Id": next(_ids), "BillingStatementId": 0, "Created": "2026-11-03T04:00:00",
        "CustomerTenant": {"Id": tenant_id, "Name": NAMES.get(tenant_id, f"Tenant {tenant_id}"),
                           "Domain": f"t{tenant_id}.onmicrosoft.com"},
        "Subscription": {"Id": sub, "Name": "subscription"},
        "Product": {"PartNumber": part, "ItemName": "Microsoft 365 Business Premium"
                    if part == BP else "Some product"},
        "StartDate": f"{start}T00:00:00", "EndDate": f"{end}T00:00:00",
        "Quantity": D(qty), "ItemUnitPrice": {"Value": D(unit), "CurrencyCode": "USD"},
        "Amount": D(amount) if amount is not None else D(unit) * D(qty),
        "ResellerSalesUnitPrice": D(retail_unit),
        "ResellerSalesPriceTotal": D(retail) if retail is not None else D(retail_unit) * D(qty),
        "ProvisionType": provision, "BillingCycle": cycle, "TermDuration": term, **extra,
    }


def azure(tenant_id: str = "210001", amount: str = "71.42", retail: str = "82.14",
          meter: str = "Virtual Machines") -> dict[str, Any]:
    return rec(tenant_id, sub=5100009, part=AZ, term=None, provision=2, qty="744",
               unit="0.096", amount=amount, retail_unit="0.1104", retail=retail,
               MeterCategory=meter)


@dataclass
class FakeCloudiq:
    """Answers like the Crayon API (assumed-shapes.md §3) for organization 9001."""

    statements: list[dict[str, Any]] = field(default_factory=list)
    records: dict[int, Any] = field(default_factory=dict)  # statement id → records or raw Data
    prices: list[Any] = field(default_factory=lambda: list(PRICES))
    tenants: list[Any] = field(default_factory=list)
    profiles: list[Any] = field(default_factory=lambda: [MONTHLY, ANNUAL])
    token_status: dict[int, int] = field(default_factory=dict)  # grant number → status
    requests: list[httpx.Request] = field(default_factory=list)
    grants: list[dict[str, str]] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api/v1")
        params = dict(request.url.params)
        if path == "/connect/token":
            return self._token(request)
        assert request.headers["Authorization"].startswith("Bearer access-")
        if path == "/me":
            return self._json({"UserId": "u-1", "UserName": "api@msp.example",
                               "Token": request.headers["Authorization"][7:]})
        if path == f"/organizations/{ORG}":
            return self._json({"Id": ORG, "Name": "Northwind"})
        if path.endswith("/billingrecordsfile"):
            statement_id = int(path.split("/")[2])
            data = self.records.get(statement_id, [])
            if not isinstance(data, str):
                data = base64.b64encode(encode_json(data)).decode()
            return self._json({"FileName": f"billing-records-{statement_id}.json", "Data": data})
        assert params.pop("organizationId") == str(ORG)
        items = self._statements(params) if path == "/billingstatements" else {
            "/customertenants": self.tenants, "/invoiceprofiles": self.profiles,
            "/agreementproducts": self.prices}[path]
        page, size = int(params["page"]), int(params["pageSize"])
        return self._json({"Items": items[(page - 1) * size:page * size],
                           "TotalHits": len(items)})

    def _statements(self, params: dict[str, str]) -> list[Any]:
        """§3.6: profile and provision filters (0 = any), overlap with from..to, newest first."""
        start, end = date.fromisoformat(params["from"]), date.fromisoformat(params["to"])
        profile, provision = int(params["invoiceProfileId"]), int(params["provisionType"])
        found = [
            s for s in self.statements
            if profile in (0, s["InvoiceProfile"]["Id"]) and provision in (0, s["ProvisionType"])
            and date.fromisoformat(s["StartDate"][:10]) <= end
            and date.fromisoformat(s["EndDate"][:10]) >= start
        ]
        return sorted(found, key=lambda s: s["StartDate"], reverse=True)

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        self.grants.append(form)
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(
            b"client-1:client-secret").decode()
        if len(self.grants) in self.token_status:
            return httpx.Response(self.token_status[len(self.grants)], content=b"<html></html>")
        if form["grant_type"] == "refresh_token":
            used = {g.get("refresh_token") for g in self.grants[:-1]}
            if form["refresh_token"] in used:  # single use (§3.1)
                return self._json({"AccessToken": None, "Error": "invalid_grant"}, 400)
        n = len(self.grants)
        return self._json({"AccessToken": f"access-{n}", "IdentityToken": None, "Error": None,
                           "ExpiresIn": 3600, "TokenType": "Bearer",
                           "RefreshToken": f"refresh-{n}"})

    @staticmethod
    def _json(body: Any, status: int = 200) -> httpx.Response:
        return httpx.Response(status, content=encode_json(body),
                              headers={"Content-Type": "application/json"})

    def reads(self) -> list[int]:
        """Statement ids whose records file was read, in order."""
        return [int(r.url.path.split("/")[4]) for r in self.requests
                if r.url.path.endswith("/billingrecordsfile")]


def config(**changes: Any) -> CloudiqSettings:
    values: dict[str, Any] = {"client_id": "client-1", "client_secret": "client-secret",
                              "username": "api@msp.example", "password": "pw",
                              "organization_id": ORG}
    return CloudiqSettings(**{**values, **changes})


Make = Callable[..., CloudiqSource]


@pytest.fixture
def build() -> Iterator[Make]:
    sources: list[CloudiqSource] = []

    def make(fake: FakeCloudiq, *, applied: tuple[int, ...] = (), today: date = TODAY,
             **changes: Any) -> CloudiqSource:
        settings = config(**changes)

        def connect() -> CloudiqClient:
            return CloudiqClient.connect(
                BASE, settings.client_id, settings.client_secret.get_secret_value(),
                settings.username, settings.password.get_secret_value(),
                transport=httpx.MockTransport(fake.handle), sleep=lambda _: None,
                max_attempts=2, page_size=3)

        source = CloudiqSource(settings, is_applied=lambda sid: int(sid) in applied,
                               client_factory=connect, today=lambda: today)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def fetch(build: Make, records: list[Any], *, statement: dict[str, Any] | None = None,
          **changes: Any) -> Snapshot:
    """One October seat statement (880101) holding `records`."""
    s = statement or stmt(880101)
    return build(FakeCloudiq([s], {s["Id"]: records}), **changes).fetch()


# ---------------------------------------------------------------------- SKUs and window


@pytest.mark.parametrize(
    ("term", "cycle", "sku"),
    [
        ("P1M", 1, f"{BP}:P1M"),
        ("P1Y", 1, f"{BP}:P1Y:M"),
        ("P1Y", 2, f"{BP}:P1Y:A"),
        ("p1y", 2, f"{BP}:P1Y:A"),
        (None, 1, BP),
        ("", 3, BP),
        ("P1M", 2, None),
        ("P3Y", 2, None),
        ("P1Y", 9, None),
    ],
)
def test_one_sku_per_part_number_term_and_billing_cycle(
    term: str | None, cycle: int, sku: str | None,
) -> None:
    assert sku_for(BP, term, cycle) == sku


@pytest.mark.parametrize(
    ("term", "cycle", "provision", "usage_sku", "charge"),
    [
        ("P1M", 1, 1, f"{BP}:P1M", None),
        ("P1Y", 1, 1, f"{BP}:P1Y:M", None),
        ("P1Y", 2, 1, None, ("annual", f"{BP}:P1Y:A")),
        (None, 1, 2, None, ("usage", BP)),
    ],
)
def test_records_are_billed_under_the_sku_of_their_term_and_cycle(  # noqa: PLR0917
    build: Make, term: str | None, cycle: int, provision: int, usage_sku: str | None,
    charge: tuple[str, str] | None,
) -> None:
    snapshot = fetch(build, [rec(term=term, cycle=cycle, provision=provision)])
    assert [u.sku for u in snapshot.usages] == ([usage_sku] if usage_sku else [])
    assert [(c.kind, c.sku) for c in snapshot.charges] == ([charge] if charge else [])


@pytest.mark.parametrize(
    ("today", "first"),
    [
        (date(2026, 11, 23), date(2025, 11, 1)),
        (date(2026, 1, 1), date(2025, 1, 1)),
        (date(2026, 12, 31), date(2025, 12, 1)),
        (date(2024, 2, 29), date(2023, 2, 1)),
    ],
)
def test_statements_are_asked_for_the_current_month_and_the_twelve_before(
    build: Make, today: date, first: date,
) -> None:
    assert history_window(today) == (first, today)
    fake = FakeCloudiq()
    build(fake, today=today).fetch()
    [query] = [dict(r.url.params) for r in fake.requests if r.url.path.endswith("statements")]
    assert (query["from"], query["to"]) == (first.isoformat(), today.isoformat())
    assert (query["invoiceProfileId"], query["provisionType"]) == ("0", "0")


# -------------------------------------------------------------- monthly seats: levels


@pytest.mark.parametrize(
    ("parts", "seats"),
    [
        pytest.param([("01", "31", 20)], 20, id="whole month"),
        pytest.param([("01", "18", 20), ("19", "31", 23)], 23, id="increase"),
        pytest.param([("01", "18", 23), ("19", "31", 20)], 20, id="decrease"),
        pytest.param([("19", "31", 23), ("01", "18", 20)], 23, id="records out of order"),
        pytest.param([("01", "10", 5), ("11", "20", 8), ("21", "31", 6)], 6, id="two changes"),
        pytest.param([("19", "31", 23)], 23, id="bought mid-month"),
        pytest.param([("01", "18", 20)], 0, id="cancelled mid-month"),
    ],
)
def test_the_count_is_the_quantity_at_the_end_of_the_period(
    build: Make, parts: list[tuple[str, str, int]], seats: int,
) -> None:
    records = [rec(start=f"2026-10-{a}", end=f"2026-10-{b}", qty=q) for a, b, q in parts]
    snapshot = fetch(build, records)
    assert snapshot.usages == (Usage("210001", f"{BP}:P1M", seats, "Monthly",
                                     statement_id="880101"),)


def test_two_subscriptions_of_one_sku_add_up(build: Make) -> None:
    snapshot = fetch(build, [rec(sub=5100001, qty=20), rec(sub=5100002, qty=3),
                             rec(sub=5100003, part=BB, unit="7.20", retail_unit="8.00", qty=4)])
    assert snapshot.usages == (
        Usage("210001", f"{BP}:P1M", 23, "Monthly", statement_id="880101"),
        Usage("210001", f"{BB}:P1M", 4, "Monthly", statement_id="880101"),
    )
    assert snapshot.charges == ()  # whole months: nothing to prorate


# ------------------------------------------------------------------------ prorations


@pytest.mark.parametrize(
    ("units", "parts", "cost", "retail", "changes"),
    [
        # §3.7's example. 23.76 x 20 x 18/31 = 275.92, 23.76 x 23 x 13/31 = 229.17; the line
        # bills 23 x 23.76 = 546.48. Retail 306.58 + 254.63 - 607.20.
        pytest.param(
            BP_UNITS,
            [("2026-10-01", "2026-10-18", 20, "275.92", "306.58"),
             ("2026-10-19", "2026-10-31", 23, "229.17", "254.63")],
            "-41.39", "-45.99", "20 → 23 seats on 2026-10-19", id="increase: a credit"),
        # 23.76 x 23 x 18/31 = 317.31, 23.76 x 20 x 13/31 = 199.28; the line bills 475.20.
        pytest.param(
            BP_UNITS,
            [("2026-10-01", "2026-10-18", 23, "317.31", "352.57"),
             ("2026-10-19", "2026-10-31", 20, "199.28", "221.42")],
            "41.39", "45.99", "23 → 20 seats on 2026-10-19", id="decrease: a charge"),
        pytest.param(
            BP_UNITS,
            [("2026-10-19", "2026-10-31", 23, "229.17", "254.63")],
            "-317.31", "-352.57", "0 → 23 seats on 2026-10-19", id="bought mid-month"),
        pytest.param(
            BP_UNITS,
            [("2026-10-01", "2026-10-18", 20, "275.92", "306.58")],
            "275.92", "306.58", "20 → 0 seats on 2026-10-19", id="cancelled mid-month"),
        # 7.20 x 5 x 10/31 = 11.61, x 8 x 10/31 = 18.58, x 6 x 11/31 = 15.33; line 43.20.
        # Retail 8.00: 12.90 + 20.65 + 17.03 - 48.00.
        pytest.param(
            ("7.20", "8.00"),
            [("2026-10-01", "2026-10-10", 5, "11.61", "12.90"),
             ("2026-10-11", "2026-10-20", 8, "18.58", "20.65"),
             ("2026-10-21", "2026-10-31", 6, "15.33", "17.03")],
            "2.32", "2.58", "5 → 8 seats on 2026-10-11, 8 → 6 seats on 2026-10-21",
            id="two changes"),
        # 7.125 x 6 x 18/31 = 24.82, 7.125 x 5 x 13/31 = 14.94; the line bills 7.125 x 5 =
        # 35.625, half-up 35.63 (half-even would say 35.62). Retail 8.00: 27.87 + 16.77 - 40.00.
        pytest.param(
            ("7.125", "8.00"),
            [("2026-10-01", "2026-10-18", 6, "24.82", "27.87"),
             ("2026-10-19", "2026-10-31", 5, "14.94", "16.77")],
            "4.13", "4.64", "6 → 5 seats on 2026-10-19", id="sub-cent unit price"),
    ],
)
def test_a_subscription_charged_in_parts_gets_a_proration_to_the_cent(  # noqa: PLR0917
    build: Make, units: tuple[str, str], parts: list[tuple[str, str, int, str, str]], cost: str,
    retail: str, changes: str,
) -> None:
    records = [rec(start=a, end=b, qty=q, amount=c, retail=r, unit=units[0],
                   retail_unit=units[1]) for a, b, q, c, r in parts]
    [charge] = fetch(build, records).charges
    assert charge == Charge(
        key=f"cloudiq:charge:880101:210001:{BP}:P1M:proration:5100001", statement_id="880101",
        customer_id="210001", billing_motion="Monthly", sku=f"{BP}:P1M",
        name=f"{BP}:P1M proration 2026-10-01..2026-10-31 ({changes})", kind="proration",
        quantity=D(1), retail=D(retail), cost=D(cost))


def test_a_thirty_day_month_prorates_by_thirty(build: Make) -> None:
    # 7.20 x 10 x 10/30 = 24.00 and 7.20 x 12 x 20/30 = 57.60; the line bills 86.40.
    # Retail 8.00: 26.67 + 64.00 - 96.00.
    records = [rec(part=BB, start="2026-09-01", end="2026-09-10", qty=10, unit="7.20",
                   amount="24.00", retail_unit="8.00", retail="26.67"),
               rec(part=BB, start="2026-09-11", end="2026-09-30", qty=12, unit="7.20",
                   amount="57.60", retail_unit="8.00", retail="64.00")]
    snapshot = fetch(build, records, statement=stmt(870101, start="2026-09-01", end="2026-09-30"))
    [charge] = snapshot.charges
    assert (charge.cost, charge.retail) == (D("-4.80"), D("-5.33"))
    assert charge.name == f"{BB}:P1M proration 2026-09-01..2026-09-30 (10 → 12 seats on 2026-09-11)"


def test_a_price_change_mid_period_is_corrected_at_the_last_unit_price(build: Make) -> None:
    # 20 seats all month, 23.76 until the 18th then 24.50: 275.92 + 24.50 x 20 x 13/31 = 205.48.
    records = [rec(start="2026-10-01", end="2026-10-18", amount="275.92", retail="306.58"),
               rec(start="2026-10-19", end="2026-10-31", unit="24.50", amount="205.48",
                   retail_unit="26.40", retail="221.42")]
    [charge] = fetch(build, records).charges
    assert (charge.cost, charge.retail) == (D("-8.60"), D("0.00"))
    assert charge.name.endswith("(20 seats, charged in 2 parts)")


def test_each_subscription_gets_its_own_proration_key(build: Make) -> None:
    records = [rec(sub=5100001, start="2026-10-19", amount="229.17", retail="254.63", qty=23),
               rec(sub=5100002, start="2026-10-19", amount="229.17", retail="254.63", qty=23)]
    snapshot = fetch(build, records)
    assert [c.key for c in snapshot.charges] == [
        f"cloudiq:charge:880101:210001:{BP}:P1M:proration:5100001",
        f"cloudiq:charge:880101:210001:{BP}:P1M:proration:5100002"]
    assert snapshot.usages[0].quantity == 46


# ------------------------------------------------------------------ Azure and annual


def test_azure_usage_is_one_charge_per_tenant_and_statement(build: Make) -> None:
    s = stmt(880102, provision=2)
    records = [azure("210001"), azure("210001", "2.21", "2.54", meter="Storage"),
               azure("210002", "10.00", "11.50")]
    snapshot = fetch(build, records, statement=s)
    assert snapshot.charges == (
        Charge(f"cloudiq:charge:880102:210001:{AZ}:usage", "880102", "210001", "Monthly", AZ,
               f"{AZ} usage 2026-10-01..2026-10-31 (Some product)", "usage", D(1), D("84.68"),
               D("73.63")),
        Charge(f"cloudiq:charge:880102:210002:{AZ}:usage", "880102", "210002", "Monthly", AZ,
               f"{AZ} usage 2026-10-01..2026-10-31 (Some product)", "usage", D(1), D("11.50"),
               D("10.00")),
    )
    assert snapshot.usages == ()
    assert [s.id for s in snapshot.statements] == ["880102"]


def test_usage_that_cost_nothing_is_no_charge(build: Make) -> None:
    snapshot = fetch(build, [azure("210001", "0.00", "0.00")], statement=stmt(880102, provision=2))
    assert snapshot.charges == ()
    assert [s.id for s in snapshot.statements] == ["880102"]


def test_azure_off_skips_usage_visibly_but_is_no_problem(build: Make) -> None:
    s = stmt(880102, provision=2)
    with capture_logs() as logs:
        snapshot = fetch(build, [azure(), azure("210001", "2.21", "2.54", "Storage")], statement=s,
                         sync_azure=False, product_sync_mode="in_use")
    assert snapshot.charges == ()
    assert snapshot.problems == ()
    assert snapshot.products == ()  # nothing billed, nothing to offer
    assert [s.id for s in snapshot.statements] == ["880102"]  # applied with nothing to bill
    [skipped] = [e for e in logs if e["event"] == "cloudiq.skipped"]
    assert skipped == {"event": "cloudiq.skipped", "log_level": "info", "statement_id": 880102,
                       "customer_id": "210001", "customer": "Acme Dental Group", "sku": AZ,
                       "records": 2, "cost": "73.63", "reason": "sync_azure is off"}


def test_an_annual_subscription_is_one_charge_at_the_yearly_unit_price(build: Make) -> None:
    s = stmt(880077, profile=ANNUAL, total="2851.20")
    record = rec("210002", sub=5100010, term="P1Y", cycle=2, start="2026-10-05",
                 end="2027-10-04", qty=12, unit="237.60", retail_unit="264.00")
    snapshot = fetch(build, [record], statement=s)
    assert snapshot.charges == (Charge(
        f"cloudiq:charge:880077:210002:{BP}:P1Y:A:annual:5100010", "880077", "210002", "Annual",
        f"{BP}:P1Y:A", f"{BP}:P1Y:A annual 2026-10-05..2027-10-04 (12 seats)", "annual", D(12),
        D("264.00"), D("237.60")),)
    assert snapshot.usages == ()
    assert snapshot.customers == (SourceCustomer("210002", "Birch Legal LLP", "Annual",
                                                 ("t210002.onmicrosoft.com",)),)


def test_seats_added_mid_term_to_an_annual_subscription_are_charged_at_their_total(
    build: Make,
) -> None:
    s = stmt(880078, profile=ANNUAL)
    record = rec(sub=5100010, term="P1Y", cycle=2, start="2026-10-19", end="2027-03-18",
                 qty=3, unit="237.60", amount="295.73", retail_unit="264.00", retail="328.59")
    [charge] = fetch(build, [record], statement=s).charges
    assert (charge.quantity, charge.cost, charge.retail) == (D(1), D("295.73"), D("328.59"))
    assert charge.name == f"{BP}:P1Y:A annual 2026-10-19..2027-03-18 (3 seats)"


def test_annual_off_skips_annual_subscriptions(build: Make) -> None:
    s = stmt(880077, profile=ANNUAL)
    with capture_logs() as logs:
        snapshot = fetch(build, [rec(term="P1Y", cycle=2, qty=12, unit="237.60")], statement=s,
                         sync_annual=False)
    assert snapshot.charges == ()
    assert snapshot.problems == ()
    assert [e["reason"] for e in logs if e["event"] == "cloudiq.skipped"] == [
        "sync_annual is off"]


def test_one_time_purchases_are_skipped_with_a_warning(build: Make) -> None:
    with capture_logs() as logs:
        snapshot = fetch(build, [rec(provision=3, term=None, cycle=4, qty=1)])
    assert (snapshot.charges, snapshot.usages, snapshot.problems) == ((), (), ())
    assert [(e["log_level"], e["reason"]) for e in logs if e["event"] == "cloudiq.skipped"] == [
        ("warning", "one-time purchases are not synced")]


def test_a_term_the_daemon_cannot_bill_is_a_problem_for_its_tenant(build: Make) -> None:
    snapshot = fetch(build, [rec("210002", term="P3Y", cycle=2), rec("210001")])
    assert snapshot.problems == (SourceProblem(
        f"statement 880101: {BP} (Microsoft 365 Business Premium) has term P3Y, billing cycle "
        "2 and provision type 1, which the daemon cannot bill", "210002", "Birch Legal LLP",
        billing_motion="Monthly"),)
    assert [u.customer_id for u in snapshot.usages] == ["210001"]


# ---------------------------------------------------------- motions and applied statements


def test_billing_motions_select_invoice_profiles(build: Make) -> None:
    fake = FakeCloudiq(
        statements=[stmt(880101), stmt(880077, profile=ANNUAL)],
        records={880101: [rec("210001")],
                 880077: [rec("210002", term="P1Y", cycle=2, unit="237.60")]},
        tenants=[tenant(210001), tenant(210002, ANNUAL), tenant(210003, None)],
    )
    snapshot = build(fake, billing_motions=["monthly"]).fetch()
    assert fake.reads() == [880101]
    [query] = [dict(r.url.params) for r in fake.requests if r.url.path.endswith("statements")]
    assert query["invoiceProfileId"] == "3101"
    assert [(c.id, c.billing_motion) for c in snapshot.customers] == [("210001", "Monthly")]
    assert [s.billing_motion for s in snapshot.statements] == ["Monthly"]
    assert snapshot.charges == ()


def test_a_billing_motion_that_is_no_invoice_profile_is_a_config_error(build: Make) -> None:
    source = build(FakeCloudiq(), billing_motions=["Monthly", "Quarterly"])
    with pytest.raises(ConfigError, match=r"'Quarterly' is not an invoice profile of organization "
                                          r"9001 \(known: 'Annual', 'Monthly'\)"):
        source.check()


def test_without_billing_motions_every_profile_is_read(build: Make) -> None:
    fake = FakeCloudiq(
        statements=[stmt(880101), stmt(880077, profile=ANNUAL)],
        records={880101: [rec("210001")],
                 880077: [rec("210002", term="P1Y", cycle=2, unit="237.60")]},
        tenants=[tenant(210001), tenant(210002, ANNUAL), tenant(210003, None)],
    )
    snapshot = build(fake).fetch()
    assert sorted(fake.reads()) == [880077, 880101]
    assert [(c.id, c.billing_motion) for c in snapshot.customers] == [
        ("210001", "Monthly"), ("210002", "Annual")]  # 210003 has no profile: seen later
    assert [s.billing_motion for s in snapshot.statements] == ["Annual", "Monthly"]


def test_applied_statements_give_no_charges_and_old_ones_are_not_read(build: Make) -> None:
    increase = [rec(start="2026-10-01", end="2026-10-18", amount="275.92", retail="306.58"),
                rec(start="2026-10-19", qty=23, amount="229.17", retail="254.63")]
    fake = FakeCloudiq(
        statements=[stmt(860101, start="2026-08-01", end="2026-08-31"),
                    stmt(870101, start="2026-09-01", end="2026-09-30"), stmt(880101)],
        records={860101: increase, 870101: [rec(start="2026-09-01", end="2026-09-30")],
                 880101: increase},
    )
    snapshot = build(fake, applied=(860101, 880101)).fetch()
    # August: applied and old, not read. September: unapplied, read for its charges (none).
    # October: applied but the newest, read for the counts only.
    assert fake.reads() == [870101, 880101]
    assert [s.id for s in snapshot.statements] == ["870101"]
    assert snapshot.charges == ()
    assert snapshot.usages == (Usage("210001", f"{BP}:P1M", 23, "Monthly",
                                     statement_id="880101"),)


def test_counts_come_from_the_newest_period_and_charges_from_every_unapplied_one(
    build: Make,
) -> None:
    fake = FakeCloudiq(
        statements=[stmt(870101, start="2026-09-01", end="2026-09-30"), stmt(880101)],
        records={
            # September: 20 seats until the 10th, then the subscription ended; another SKU.
            870101: [rec(start="2026-09-01", end="2026-09-10", amount="158.40",
                         retail="176.00"),
                     rec(sub=5100002, part=BB, unit="7.20", retail_unit="8.00", qty=4,
                         start="2026-09-01", end="2026-09-30")],
            880101: [rec(sub=5100002, part=BB, unit="7.20", retail_unit="8.00", qty=5)],
        })
    snapshot = build(fake).fetch()
    assert [s.id for s in snapshot.statements] == ["870101", "880101"]  # oldest first
    assert snapshot.usages == (Usage("210001", f"{BB}:P1M", 5, "Monthly",
                                     statement_id="880101"),)
    assert [(c.statement_id, c.sku, c.cost, c.retail) for c in snapshot.charges] == [
        ("870101", f"{BP}:P1M", D("158.40"), D("176.00"))]


def test_two_statements_of_the_newest_period_both_count(build: Make) -> None:
    fake = FakeCloudiq(statements=[stmt(880101), stmt(880105)],
                       records={880101: [rec(qty=20)], 880105: [rec(sub=5100002, qty=2)]})
    snapshot = build(fake, applied=(880101,)).fetch()
    assert snapshot.usages == (Usage("210001", f"{BP}:P1M", 22, "Monthly",
                                     statement_id="880105"),)


# ------------------------------------------------------------------------------ products


def test_mode_all_offers_every_price_list_row_at_cost_and_retail(build: Make) -> None:
    snapshot = fetch(build, [rec()], product_sync_mode="all")
    assert snapshot.products == (
        SourceProduct(f"{BP}:P1M", "Microsoft 365 Business Premium", D("23.76"), D("26.40")),
        SourceProduct(f"{BP}:P1Y:A", "Microsoft 365 Business Premium", D("237.60"),
                      D("264.00")),
        SourceProduct(f"{BP}:P1Y:M", "Microsoft 365 Business Premium", D("19.80"), D("22.00")),
        SourceProduct(f"{BB}:P1M", "Microsoft 365 Business Basic", D("7.20"), D("8.00")),
        SourceProduct(AZ, "Azure plan", D(0), D(0)),
    )


def test_mode_in_use_offers_only_the_skus_billed(build: Make) -> None:
    snapshot = fetch(build, [rec(), rec("210002", part="CFQ7TTC0NEW0:0001", unit="3.00",
                                        retail_unit="4.00", qty=2)],
                     product_sync_mode="in_use")
    assert snapshot.products == (
        SourceProduct(f"{BP}:P1M", "Microsoft 365 Business Premium", D("23.76"), D("26.40")),
        # Not on the price list: priced from its record.
        SourceProduct("CFQ7TTC0NEW0:0001:P1M", "Some product", D("3.00"), D("4.00")),
    )
    assert snapshot.problems == ()


def test_mode_all_reports_a_sku_missing_from_the_price_list(build: Make) -> None:
    with capture_logs() as logs:
        snapshot = build(FakeCloudiq(
            [stmt(880101)],
            {880101: [rec(), rec("210002", part="CFQ7TTC0NEW0:0001", qty=2)]},
            prices=[*PRICES, {"ProductVariant": {"PartNumber": "BROKEN"}}],
        )).fetch()
    assert snapshot.problems == (SourceProblem(
        "CFQ7TTC0NEW0:0001:P1M (Some product) is not on the price list (agreement products): "
        "cannot price it", "210002", "Birch Legal LLP", billing_motion="Monthly"),)
    assert {c for c, _ in snapshot.customers_with_problems()} == {"210002"}
    assert [u.customer_id for u in snapshot.usages] == ["210001", "210002"]
    [bad_row] = [e for e in logs if e["event"] == "cloudiq.price_row_malformed"]
    assert (bad_row["position"], bad_row["part_number"]) == (5, "BROKEN")


# ------------------------------------------------------------------- malformed records


def test_a_malformed_record_is_its_tenants_problem_and_the_others_go_on(build: Make) -> None:
    broken = rec("210002")
    del broken["Amount"]
    snapshot = fetch(build, [rec("210001"), broken])
    assert snapshot.problems == (
        SourceProblem(f"statement 880101: record #2 (id {broken['Id']}) is unreadable: "
                      "Amount: missing", "210002", "Birch Legal LLP",
                      billing_motion="Monthly"),
    )
    assert {c for c, _ in snapshot.customers_with_problems()} == {"210002"}
    assert [u.customer_id for u in snapshot.usages] == ["210001"]
    assert [c.id for c in snapshot.customers] == ["210001", "210002"]


def test_a_malformed_tenant_is_its_own_problem_and_stays_in_the_table(build: Make) -> None:
    fake = FakeCloudiq(statements=[stmt(880101)], records={880101: [rec("210001")]}, tenants=[
        tenant(210001), {**tenant(210002), "Name": ""}, {**tenant(210003, None), "Name": ["x"]}])
    snapshot = build(fake).fetch()
    assert snapshot.problems == (SourceProblem(
        "customer tenant 210002 is malformed: Name: must not be empty", "210002", None,
        billing_motion="Monthly"),)
    assert [(c.id, c.name) for c in snapshot.customers] == [
        ("210002", "210002"), ("210001", "Acme Dental Group")]  # 210003 has no profile


@pytest.mark.parametrize(
    "broken",
    [{**tenant(210002), "Id": None}, {**tenant(210002), "Name": "", "InvoiceProfile": 3101},
     "not a tenant"],
    ids=["no-id", "unreadable-profile", "not-an-object"],
)
def test_a_tenant_of_unknown_identity_fails_the_fetch(build: Make, broken: Any) -> None:
    fake = FakeCloudiq(statements=[stmt(880101)], records={880101: [rec("210001")]},
                       tenants=[tenant(210001), broken])
    with pytest.raises(InvariantError, match=r"customer tenant #2 .* cannot tell whose it is"):
        build(fake).fetch()


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({**rec("210003"), "CustomerTenant": None},
         "is unreadable: CustomerTenant: Input should be a valid dictionary"),
        ("not a record", "record #2 is unreadable: expected a record object, got str"),
    ],
)
def test_a_record_of_no_known_tenant_fails_the_fetch(build: Make, record: Any, reason: str) -> None:
    # Whose seats it holds cannot be told: a tenant's total would silently drop.
    with pytest.raises(InvariantError, match=re.escape(reason) + ".*cannot tell whose"):
        fetch(build, [rec("210001"), record])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Quantity": D("2.5")}, "Quantity: 2.5 is not a seat count"),
        ({"Quantity": D(-1)}, "Quantity: -1 is not a seat count"),
        ({"Subscription": None}, "Subscription.Id: missing"),
        ({"EndDate": "2026-09-30T00:00:00"}, "EndDate 2026-09-30 is before StartDate 2026-10-01"),
        ({"Amount": "12,50"}, "Amount: expected an amount, got '12,50'"),
        ({"Amount": True}, "Amount: expected an amount, got True"),
        ({"ItemUnitPrice": {"Value": None}}, "ItemUnitPrice: expected an amount"),
        ({"StartDate": "October"}, "StartDate: expected a date, got 'October'"),
    ],
)
def test_what_makes_a_seat_record_unreadable(
    build: Make, change: dict[str, Any], reason: str,
) -> None:
    snapshot = fetch(build, [{**rec("210002"), **change}])
    [problem] = snapshot.problems
    assert reason in problem.message
    assert problem.customer_id == "210002"
    assert snapshot.usages == ()


def test_numbers_may_come_as_strings_and_the_tenant_id_as_a_number(build: Make) -> None:
    record = {**rec(), "Quantity": "20", "Amount": "475.20", "ItemUnitPrice": "23.76",
              "CustomerTenant": {"Id": 210001, "Name": "Acme Dental Group"}}
    snapshot = fetch(build, [record])
    assert snapshot.usages == (Usage("210001", f"{BP}:P1M", 20, "Monthly",
                                     statement_id="880101"),)


def test_a_records_file_that_is_not_base64_json_stops_the_fetch(build: Make) -> None:
    source = build(FakeCloudiq([stmt(880101)], {880101: "bm90IGpzb24="}))  # "not json"
    with pytest.raises(InvariantError, match="statement 880101 is not base64 of UTF-8 JSON"):
        source.fetch()


# ------------------------------------------------------------------------ determinism


def test_charge_keys_are_deterministic_across_fetches(build: Make) -> None:
    fake = FakeCloudiq(
        [stmt(880101), stmt(880102, provision=2)],
        {880101: [rec(start="2026-10-19", qty=23, amount="229.17", retail="254.63")],
         880102: [azure()]})
    first, second = build(fake).fetch(), build(fake).fetch()
    assert first.charges == second.charges
    assert [c.key for c in first.charges] == [
        f"cloudiq:charge:880101:210001:{BP}:P1M:proration:5100001",
        f"cloudiq:charge:880102:210001:{AZ}:usage"]
    assert charge_key(880101, "210001", "X", "usage") == "cloudiq:charge:880101:210001:X:usage"
    assert charge_key("1", "2", "X", "annual", 7) == "cloudiq:charge:1:2:X:annual:7"


# --------------------------------------------------------------------- check and token


def test_check_reads_the_login_the_organization_and_the_motions(build: Make) -> None:
    fake = FakeCloudiq()
    text = build(fake, billing_motions=["Annual"]).check()
    assert text == "as api@msp.example for Northwind (9001); Annual"
    assert [g["grant_type"] for g in fake.grants] == ["password"]
    assert fake.grants[0] == {"grant_type": "password", "username": "api@msp.example",
                              "password": "pw", "scope": "CustomerApi"}


def test_refresh_tokens_are_used_once_each(build: Make) -> None:
    fake = FakeCloudiq()
    clock = [0.0]
    client = CloudiqClient.connect(BASE, "client-1", "client-secret", "api@msp.example", "pw",
                                   transport=httpx.MockTransport(fake.handle),
                                   sleep=lambda _: None, clock=lambda: clock[0])
    with client, capture_logs() as logs:
        for _ in range(3):
            client.me()
            clock[0] += 3600
    assert [g["grant_type"] for g in fake.grants] == ["password", "refresh_token",
                                                      "refresh_token"]
    assert [g.get("refresh_token") for g in fake.grants[1:]] == ["refresh-1", "refresh-2"]
    bearers = [r.headers["Authorization"] for r in fake.requests if r.url.path.endswith("/me")]
    assert bearers == ["Bearer access-1", "Bearer access-2", "Bearer access-3"]
    text = repr(logs)
    assert not any(secret in text for secret in ("access-", "refresh-", "client-secret", "pw'"))


def test_a_refresh_token_is_dropped_once_sent_even_when_the_answer_is_lost() -> None:
    fake = FakeCloudiq(token_status={2: 503})  # the refresh grant fails: was it consumed?
    clock = [0.0]
    with CloudiqClient.connect(BASE, "client-1", "client-secret", "api@msp.example", "pw",
                               transport=httpx.MockTransport(fake.handle), sleep=lambda _: None,
                               clock=lambda: clock[0]) as client:
        client.me()
        clock[0] += 3600
        client.me()
    # The retry logs in again instead of sending a refresh token that may be used up.
    assert [g["grant_type"] for g in fake.grants] == ["password", "refresh_token", "password"]


def test_a_token_endpoint_that_is_down_is_retried(build: Make) -> None:
    fake = FakeCloudiq(token_status={1: 503})
    assert build(fake).check().startswith("as api@msp.example")
    assert len(fake.grants) == 2


def test_a_token_endpoint_that_answers_html_with_404_is_a_wrong_base_url(build: Make) -> None:
    fake = FakeCloudiq(token_status={1: 404})
    with pytest.raises(ConfigError, match=r"answered 404 without the token JSON: check "
                                          r"cloudiq.base_url"):
        build(fake).check()


# ------------------------------------------------------------------------------ config


def test_the_config_has_the_issues_keys_and_defaults() -> None:
    c = config()
    assert (c.enabled, c.base_url, c.billing_motions, c.product_sync_mode, c.sync_azure,
            c.sync_annual, c.new_products_taxable, c.schedule, c.requests_per_minute,
            c.timeout_s) == (True, "https://api.crayon.com/api/v1", [], "all", True, True, True,
                             "0 5 * * *", 120, 30.0)
    assert "client-secret" not in repr(c)
    assert "pw" not in repr(c).replace("password", "")


@pytest.mark.parametrize(
    "changes",
    [
        {"organisation_id": 1},
        {"organization_id": 0},
        {"billing_motions": ["Monthly", "monthly"]},
        {"billing_motions": [" "]},
        {"product_sync_mode": "some"},
        {"schedule": "daily"},
        {"base_url": "ftp://api.crayon.com"},
    ],
)
def test_the_config_refuses_mistakes(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        config(**changes)


def test_pages_follow_total_hits() -> None:
    fake = FakeCloudiq(tenants=[tenant(210000 + n) for n in range(7)])
    with CloudiqClient.connect(BASE, "client-1", "client-secret", "api@msp.example", "pw",
                               transport=httpx.MockTransport(fake.handle), sleep=lambda _: None,
                               page_size=3) as client:
        tenants = client.list_customer_tenants(ORG)
    assert len(tenants) == 7
    pages = [r.url.params["page"] for r in fake.requests if r.url.path.endswith("tenants")]
    assert pages == [str(n) for n in range(1, math.ceil(7 / 3) + 1)]
