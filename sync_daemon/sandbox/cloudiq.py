"""Sandbox Crayon Cloud-iQ: a partner's Microsoft CSP tenants, price list and monthly billing
statements in memory, served over real HTTP under `/api/v1`.

Faithful to `reference/vendor-apis.md` §C.3 and `reference/assumed-shapes.md` §3.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import IntEnum, IntFlag
from typing import Any, Literal, NamedTuple, TypeVar
from urllib.parse import unquote

from sync_daemon.sandbox.http import (
    Clock,
    Handler,
    Request,
    Response,
    SandboxServer,
    SlidingWindowLimiter,
    parse_form,
)

Term = Literal["P1M", "P1Y"]
Amount = Decimal | int | str
T = TypeVar("T")

DEFAULT_ORGANIZATION_ID = 12345
DEFAULT_EXPIRES_IN = 3600
# Not documented; IdentityServer's default absolute lifetime for refresh tokens.
DEFAULT_REFRESH_EXPIRES_IN = 30 * 24 * 3600
REQUIRED_SCOPE = "CustomerApi"


class ProvisionType(IntEnum):
    """What a subscription charges for (vendor-apis §C.3)."""

    SEAT = 1
    USAGE = 2


class BillingCycle(IntEnum):
    """How often a subscription is invoiced (vendor-apis §C.3)."""

    MONTHLY = 1
    ANNUAL = 2


class SubscriptionStatus(IntFlag):
    """Subscription status flags; the `statuses` filter is a mask of them (assumed-shapes §3.4)."""

    ACTIVE = 1
    SUSPENDED = 2
    DELETED = 4
    CUSTOMER_CANCELLATION = 8
    CONVERTED = 16
    EXPIRED = 32
    PENDING = 64
    CANCELLED = 128
    DISABLED = 256


_MICROSOFT = (2, "Microsoft")
_CSP_PROGRAM = (3, "Microsoft CSP")
_AGREEMENT = (9001, "Microsoft CSP")
_AGREEMENT_TYPE = 13  # assumed-shapes §3.5
_TENANT_TYPE_T2 = 2  # an end customer of a reseller
_LIST_PRICE, _FIXED_PRICE = 2, 3  # SubscriptionPriceType
_GUIDS = uuid.UUID("6f1c2a7e-3b1d-4c55-9a0e-5c1d0a7e9b21")  # namespace for deterministic GUIDs
_CANCELLATION_WINDOW = timedelta(days=7)  # NCE: a new term can be cancelled within 7 days


def _guid(kind: str, number: int) -> str:
    return str(uuid.uuid5(_GUIDS, f"{kind}-{number}"))


def _decimal(value: Amount, what: str) -> Decimal:
    """A money or quantity argument as Decimal; floats are refused so no binary noise gets in."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(f"{what} must be a Decimal, int or str, not {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation as error:
        raise ValueError(f"{what} is not a number: {value!r}") from error
    if not result.is_finite() or result < 0:
        raise ValueError(f"{what} must be a finite, non-negative number, not {value!r}")
    return result


# -- billing arithmetic (assumed-shapes §3.6, §3.7) -------------------------------------------

CENT = Decimal("0.01")


def to_cents(value: Decimal) -> Decimal:
    """Round half-up to cents, as every total on a billing record is."""
    return value.quantize(CENT, ROUND_HALF_UP)


def prorate(unit_price: Decimal, quantity: int, days: int, days_in_month: int) -> Decimal:
    """`unit * quantity * days / days_in_month`, rounded once, at the end."""
    return to_cents(unit_price * quantity * days / days_in_month)


def midnight(day: date) -> datetime:
    """The start of `day` in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def month_bounds(year: int, month: int) -> tuple[date, date]:
    """The first and the last day of a calendar month."""
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def shift_months(day: date, months: int) -> date:
    """`day` moved by whole months, clamped to the end of a shorter month (31 Jan + 1 → 28 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def term_bounds(start_on: date, term: Term, as_of: date) -> tuple[date, date]:
    """First and last day of the auto-renewed term of a subscription that contains `as_of`.

    Terms run from the subscription's start date (anniversary terms); before the start, the
    first term.
    """
    length = 12 if term == "P1Y" else 1
    elapsed = (as_of.year - start_on.year) * 12 + as_of.month - start_on.month
    terms = max(elapsed // length, 0)
    if terms and shift_months(start_on, terms * length) > as_of:
        terms -= 1
    return (
        shift_months(start_on, terms * length),
        shift_months(start_on, (terms + 1) * length) - timedelta(days=1),
    )


def quantity_periods(
    history: Sequence[tuple[date, int]], first: date, last: date
) -> list[tuple[date, date, int]]:
    """Split `[first, last]` into runs of equal quantity, both ends inclusive.

    `history` is `(effective from, quantity)` sorted by date; days before its first entry
    have quantity 0. Runs of quantity 0 are left out.
    """
    starts = [first, *(on for on, _ in history if first < on <= last)]
    runs: list[tuple[date, date, int]] = []
    for index, start in enumerate(starts):
        end = starts[index + 1] - timedelta(days=1) if index + 1 < len(starts) else last
        quantity = _quantity_on(history, start)
        if runs and runs[-1][2] == quantity:
            runs[-1] = (runs[-1][0], end, quantity)
        else:
            runs.append((start, end, quantity))
    return [run for run in runs if run[2] > 0]


def _quantity_on(history: Sequence[tuple[date, int]], day: date) -> int:
    current = 0
    for on, quantity in history:
        if on > day:
            break
        current = quantity
    return current


# -- the partner's world ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Organization:
    """A Cloud-iQ organization: the partner, or one the API user cannot see."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class ApiClient:
    """An API client registered under API Management (vendor-apis §C.3)."""

    client_id: str
    secret: str


@dataclass(frozen=True, slots=True)
class ApiUser:
    """The API user of the password grant and the organizations it may access."""

    id: str
    username: str
    password: str
    first_name: str
    last_name: str
    email: str
    organization_ids: frozenset[int]


@dataclass(frozen=True, slots=True)
class InvoiceProfile:
    """A billing motion: what a statement is grouped by; `annual` takes annual-billed seats."""

    id: int
    organization_id: int
    name: str
    annual: bool = False


@dataclass(frozen=True, slots=True)
class CustomerTenant:
    """A customer's Microsoft tenant (vendor-apis §C.3)."""

    id: int
    organization_id: int
    name: str
    domain: str
    reference: str | None
    invoice_profile_id: int
    publisher_customer_id: str

    @property
    def domain_prefix(self) -> str:
        """`contoso` for `contoso.onmicrosoft.com`."""
        return self.domain.partition(".")[0]


@dataclass(frozen=True, slots=True)
class Product:
    """A product of the price list, whatever its term and billing cycle."""

    id: int
    part_number: str
    name: str
    legal_name: str
    family_id: int
    family_name: str
    unit: str
    category: str = "Cloud"

    @property
    def publisher_product_id(self) -> str:
        """Microsoft's product id: the part number before the `:sku`."""
        return self.part_number.partition(":")[0]


@dataclass(frozen=True, slots=True)
class AgreementProduct:
    """One price-list row: a product sold on one term and billing cycle (assumed-shapes §3.5).

    Both prices are per billing period: per month when billed monthly, per year when annually.
    """

    price_id: int
    variant_id: int
    product: Product
    term: Term | None
    billing_cycle: BillingCycle
    sales_price: Decimal
    retail_price: Decimal

    @property
    def provision_type(self) -> ProvisionType:
        """Usage products (the Azure plan) have no term."""
        return ProvisionType.USAGE if self.term is None else ProvisionType.SEAT

    @property
    def month_multiplier(self) -> int:
        """How many months one billing period covers."""
        return 12 if self.billing_cycle == BillingCycle.ANNUAL else 1


@dataclass(slots=True)
class Subscription:
    """A tenant's subscription; `history` holds `(effective from, quantity)`, oldest first."""

    id: int
    tenant_id: int
    price: AgreementProduct
    start_on: date
    name: str
    invoice_profile_id: int
    order_id: str
    publisher_subscription_id: str
    history: list[tuple[date, int]]
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    is_trial: bool = False
    auto_renew: bool = True
    fixed_sales_price: Decimal | None = None

    @property
    def product(self) -> Product:
        """The product subscribed to."""
        return self.price.product

    @property
    def term(self) -> Term | None:
        """`P1M`, `P1Y`, or None for usage (assumed-shapes §3.4)."""
        return self.price.term

    @property
    def billing_cycle(self) -> BillingCycle:
        """Monthly or annual invoicing."""
        return self.price.billing_cycle

    @property
    def provision_type(self) -> ProvisionType:
        """Seat or usage."""
        return self.price.provision_type

    @property
    def quantity(self) -> int:
        """The latest quantity, which is what the API shows."""
        return self.history[-1][1]

    @property
    def sales_price(self) -> Decimal:
        """The reseller's retail price per billing period: fixed, or the list price."""
        if self.fixed_sales_price is not None:
            return self.fixed_sales_price
        return self.price.retail_price

    def quantity_on(self, day: date) -> int:
        """The quantity in force on `day` (0 before the start)."""
        return _quantity_on(self.history, day)

    def term_on(self, day: date) -> tuple[date, date | None]:
        """The current term around `day`; a usage subscription has no end."""
        if self.term is None:
            return self.start_on, None
        return term_bounds(self.start_on, self.term, max(day, self.start_on))


@dataclass(frozen=True, slots=True)
class Usage:
    """Metered consumption of one meter in one month (assumed-shapes §3.7)."""

    subscription_id: int
    year: int
    month: int
    category: str
    meter: str
    quantity: Decimal
    unit_price: Decimal
    retail_unit_price: Decimal
    unit: str


@dataclass(frozen=True, slots=True)
class BillingRecord:
    """One line of a billing statement, frozen as billed (assumed-shapes §3.7)."""

    id: int
    statement_id: int
    created_at: datetime
    tenant: CustomerTenant
    product: Product
    subscription_id: int
    subscription_name: str
    publisher_subscription_id: str
    subscription_start_on: date
    subscription_end_on: date | None
    start_on: date
    end_on: date
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    retail_unit_price: Decimal
    retail_total: Decimal
    currency: str
    provision_type: ProvisionType
    billing_cycle: BillingCycle
    term: Term | None
    meter_category: str | None = None
    meter_name: str | None = None


@dataclass(frozen=True, slots=True)
class BillingStatement:
    """What the partner is billed for one month, one invoice profile and provision type."""

    id: int
    organization_id: int
    invoice_profile_id: int
    provision_type: ProvisionType
    order_id: str | None
    start_on: date
    end_on: date
    currency: str
    records: tuple[BillingRecord, ...]

    @property
    def total(self) -> Decimal:
        """`TotalSalesPrice`: the sum of the records' amounts (assumed-shapes §3.6)."""
        return sum((record.amount for record in self.records), Decimal("0.00"))

    def overlaps(self, start: datetime | None, end: datetime | None) -> bool:
        """Whether the billing period, last day included whole, touches `[start, end]`."""
        period_start, period_end = midnight(self.start_on), midnight(self.end_on + timedelta(1))
        return (end is None or period_start <= end) and (start is None or period_end > start)


class StatementKey(NamedTuple):
    """What separates statements (assumed-shapes §3.6); `order_id` only for annual seats."""

    organization_id: int
    invoice_profile_id: int
    provision_type: ProvisionType
    order_id: str | None


# -- tokens (assumed-shapes §3.1) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """What one successful call of the token endpoint hands out."""

    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class _Grant:
    username: str
    client_id: str
    expires_at: float


class TokenStore:
    """Issued access and refresh tokens, expiring on `clock`; a refresh token works once."""

    def __init__(self, clock: Clock, expires_in: int, refresh_expires_in: int) -> None:
        self.clock = clock
        self.expires_in = expires_in
        self.refresh_expires_in = refresh_expires_in
        self._lock = threading.Lock()
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}

    def issue(self, username: str, client_id: str) -> IssuedTokens:
        """A new access token and a new refresh token for this user and client."""
        now = self.clock()
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._lock:
            self._access[access] = _Grant(username, client_id, now + self.expires_in)
            self._refresh[refresh] = _Grant(username, client_id, now + self.refresh_expires_in)
        return IssuedTokens(access, refresh, self.expires_in)

    def holder(self, access_token: str) -> str | None:
        """The username behind a valid, unexpired access token."""
        with self._lock:
            grant = self._access.get(access_token)
        return grant.username if grant is not None and self.clock() < grant.expires_at else None

    def redeem(self, refresh_token: str, client_id: str) -> str | None:
        """Use up a refresh token issued to `client_id`; the username, or None if not valid."""
        with self._lock:
            grant = self._refresh.get(refresh_token)
            if grant is None or grant.client_id != client_id:
                return None
            del self._refresh[refresh_token]
        return grant.username if self.clock() < grant.expires_at else None

    def expire_all(self, *, refresh: bool = False) -> None:
        """Expire every access token now (and every refresh token with `refresh=True`)."""
        expired = self.clock() - 1
        with self._lock:
            stores = (self._access, self._refresh) if refresh else (self._access,)
            for store in stores:
                for token, grant in store.items():
                    store[token] = replace(grant, expires_at=expired)


# -- the state --------------------------------------------------------------------------------


class CloudiqState:
    """A Cloud-iQ partner account in memory, with its billing history.

    Seed it with the `add_*` methods (they validate and raise `ValueError`, or `KeyError` for an
    unknown id), change quantities with `set_quantity`, then bill whole months with
    `close_month`. Its calendar is its billing: `today` is the day after the last closed month.
    Hold `lock` to read several things consistently.

    Args:
        organization_id: the partner organization's id.
        organization_name: its name.
        currency: the currency of the price list and every statement.
        clock: monotonic seconds for token expiry; tests inject a fake.
        expires_in: access-token lifetime in seconds (`ExpiresIn`).
        refresh_expires_in: refresh-token lifetime in seconds.
    """

    def __init__(
        self,
        *,
        organization_id: int = DEFAULT_ORGANIZATION_ID,
        organization_name: str = "Sandbox Partner",
        currency: str = "USD",
        clock: Clock = time.monotonic,
        expires_in: int = DEFAULT_EXPIRES_IN,
        refresh_expires_in: int = DEFAULT_REFRESH_EXPIRES_IN,
    ) -> None:
        self.lock = threading.RLock()
        self.currency = currency
        self.clock = clock
        self.tokens = TokenStore(clock, expires_in, refresh_expires_in)
        self.organization = Organization(organization_id, organization_name)
        self._organizations = {organization_id: self.organization}
        self._clients: dict[str, ApiClient] = {}
        self._users: dict[str, ApiUser] = {}
        self._profiles: dict[int, InvoiceProfile] = {}
        self._tenants: dict[int, CustomerTenant] = {}
        self._products: dict[str, Product] = {}
        self._families: dict[str, int] = {}
        self._prices: dict[tuple[str, Term | None, BillingCycle], AgreementProduct] = {}
        self._subscriptions: dict[int, Subscription] = {}
        self._usage: list[Usage] = []
        self._statements: dict[int, BillingStatement] = {}
        self._closed: set[tuple[int, int]] = set()
        self._next = {
            "profile": 3101, "tenant": 210001, "product": 40001, "family": 313,
            "price": 7700001, "variant": 61001, "subscription": 5100001, "order": 4600001,
            "statement": 880101, "record": 880101001,
        }  # fmt: skip

    # -- seeding: access -----------------------------------------------------------------------

    def add_organization(self, name: str) -> Organization:
        """Another organization (e.g. a sub-reseller) that users see only if granted."""
        with self.lock:
            organization = Organization(max(self._organizations) + 1, _required(name, "name"))
            self._organizations[organization.id] = organization
            return organization

    def add_client(self, client_id: str, secret: str) -> ApiClient:
        """Register an API client (HTTP Basic credentials of the token endpoint)."""
        with self.lock:
            if client_id in self._clients:
                raise ValueError(f"client {client_id!r} already exists")
            client = ApiClient(_required(client_id, "client_id"), _required(secret, "secret"))
            self._clients[client_id] = client
            return client

    def add_user(
        self,
        username: str,
        password: str,
        *,
        first_name: str = "API",
        last_name: str = "User",
        email: str | None = None,
        organization_ids: Iterable[int] | None = None,
    ) -> ApiUser:
        """An API user; it may access the partner organization unless told otherwise."""
        with self.lock:
            key = _required(username, "username").lower()
            if key in self._users:
                raise ValueError(f"user {username!r} already exists")
            allowed = frozenset(
                (self.organization.id,) if organization_ids is None else organization_ids
            )
            for organization_id in allowed:
                self.organization_by_id(organization_id)
            user = ApiUser(
                _guid("user", len(self._users) + 1), username, password, first_name, last_name,
                email or username, allowed,
            )  # fmt: skip
            self._users[key] = user
            return user

    # -- seeding: customers and price list -----------------------------------------------------

    def add_invoice_profile(
        self, name: str, *, annual: bool = False, organization_id: int | None = None
    ) -> InvoiceProfile:
        """A billing motion; the `annual` one receives annual-billed seat subscriptions."""
        with self.lock:
            organization = self.organization_by_id(organization_id or self.organization.id)
            if annual and self._annual_profile(organization.id) is not None:
                raise ValueError(f"{organization.name} already has an annual invoice profile")
            profile = InvoiceProfile(
                self._take("profile"), organization.id, _required(name, "name"), annual
            )
            self._profiles[profile.id] = profile
            return profile

    def add_tenant(
        self,
        name: str,
        domain: str,
        *,
        reference: str | None = None,
        invoice_profile_id: int | None = None,
        organization_id: int | None = None,
    ) -> CustomerTenant:
        """A customer tenant; its invoice profile defaults to the organization's first
        non-annual one."""
        with self.lock:
            organization = self.organization_by_id(organization_id or self.organization.id)
            if invoice_profile_id is None:
                profiles = [
                    p for p in self._profiles.values()
                    if p.organization_id == organization.id and not p.annual
                ]  # fmt: skip
                if not profiles:
                    raise ValueError(f"{organization.name} has no invoice profile; add one first")
                invoice_profile_id = profiles[0].id
            profile = self.invoice_profile(invoice_profile_id)
            if profile.organization_id != organization.id:
                raise ValueError("the invoice profile belongs to another organization")
            tenant_id = self._take("tenant")
            tenant = CustomerTenant(
                tenant_id, organization.id, _required(name, "name"),
                _required(domain, "domain").lower(), reference, profile.id,
                _guid("tenant", tenant_id),
            )  # fmt: skip
            self._tenants[tenant.id] = tenant
            return tenant

    def add_agreement_product(
        self,
        part_number: str,
        name: str,
        *,
        term: Term | None,
        billing_cycle: BillingCycle | int = BillingCycle.MONTHLY,
        sales_price: Amount,
        retail_price: Amount,
        family: str = "Microsoft 365",
        unit: str = "Licenses",
        legal_name: str | None = None,
    ) -> AgreementProduct:
        """A price-list row; prices per billing period (`sales_price` = the partner's cost).

        `term=None` makes a usage product such as the Azure plan (billed monthly).
        """
        cycle = BillingCycle(billing_cycle)
        if term not in ("P1M", "P1Y", None):
            raise ValueError(f"term must be 'P1M', 'P1Y' or None, not {term!r}")
        if cycle == BillingCycle.ANNUAL and term != "P1Y":
            raise ValueError("only a P1Y term can be billed annually")
        cost, retail = _decimal(sales_price, "sales_price"), _decimal(retail_price, "retail_price")
        with self.lock:
            key = (_required(part_number, "part_number"), term, cycle)
            if key in self._prices:
                raise ValueError(f"{part_number} {term}/{cycle.name} is already on the price list")
            product = self._products.get(part_number)
            if product is None:
                if family not in self._families:
                    self._families[family] = self._take("family")
                product = Product(
                    self._take("product"), part_number, _required(name, "name"),
                    legal_name or name, self._families[family], family, unit,
                )  # fmt: skip
                self._products[part_number] = product
            row = AgreementProduct(
                self._take("price"), self._take("variant"), product, term, cycle, cost, retail
            )
            self._prices[key] = row
            return row

    # -- seeding: subscriptions and their history ----------------------------------------------

    def add_subscription(
        self,
        tenant_id: int,
        part_number: str,
        quantity: int = 1,
        *,
        start_on: date,
        term: Term | None = "P1M",
        billing_cycle: BillingCycle | int = BillingCycle.MONTHLY,
        name: str | None = None,
        status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
        is_trial: bool = False,
        auto_renew: bool = True,
        sales_price: Amount | None = None,
        order_id: str | None = None,
        invoice_profile_id: int | None = None,
    ) -> Subscription:
        """A subscription of a tenant to a price-list row (`part_number`, `term`, cycle).

        Annual-billed seats go to the organization's annual invoice profile, everything else to
        the tenant's (assumed-shapes §3.6). `sales_price` fixes the reseller's retail price per
        billing period; by default it is the list's retail price. Usage subscriptions take
        `term=None`.
        """
        cycle = BillingCycle(billing_cycle)
        fixed = None if sales_price is None else _decimal(sales_price, "sales_price")
        with self.lock:
            tenant = self.tenant(tenant_id)
            price = self._prices.get((part_number, term, cycle))
            if price is None:
                raise ValueError(f"{part_number} {term}/{cycle.name} is not on the price list")
            _check_quantity(quantity)
            self._check_open(start_on, "start_on")
            if invoice_profile_id is None:
                invoice_profile_id = tenant.invoice_profile_id
                if cycle == BillingCycle.ANNUAL:
                    annual = self._annual_profile(tenant.organization_id)
                    if annual is None:
                        raise ValueError("annual-billed seats need an annual invoice profile")
                    invoice_profile_id = annual.id
            elif self.invoice_profile(invoice_profile_id).organization_id != tenant.organization_id:
                raise ValueError("the invoice profile belongs to another organization")
            subscription_id = self._take("subscription")
            subscription = Subscription(
                subscription_id, tenant.id, price, start_on, name or price.product.name,
                invoice_profile_id, order_id or str(self._take("order")),
                _guid("subscription", subscription_id), [(start_on, quantity)],
                SubscriptionStatus(status), is_trial, auto_renew, fixed,
            )  # fmt: skip
            self._subscriptions[subscription.id] = subscription
            return subscription

    def set_quantity(self, subscription_id: int, quantity: int, *, on: date) -> Subscription:
        """Change the quantity from day `on` on; a change inside a month prorates its billing."""
        _check_quantity(quantity)
        with self.lock:
            subscription = self.subscription(subscription_id)
            self._check_open(on, "on")
            if on < subscription.start_on:
                raise ValueError(f"on={on} is before the subscription starts")
            history = [entry for entry in subscription.history if entry[0] != on]
            history.append((on, quantity))
            subscription.history = sorted(history)
            return subscription

    def set_status(self, subscription_id: int, status: SubscriptionStatus) -> Subscription:
        """Change what `Status` shows; billing follows the quantity history only."""
        with self.lock:
            subscription = self.subscription(subscription_id)
            subscription.status = SubscriptionStatus(status)
            return subscription

    def add_usage(
        self,
        subscription_id: int,
        *,
        year: int,
        month: int,
        category: str,
        meter: str,
        quantity: Amount,
        unit_price: Amount,
        retail_unit_price: Amount,
        unit: str = "1 Hour",
    ) -> Usage:
        """Metered usage of a usage subscription (the Azure plan) in one month."""
        with self.lock:
            subscription = self.subscription(subscription_id)
            if subscription.provision_type != ProvisionType.USAGE:
                raise ValueError(f"subscription {subscription_id} is not a usage subscription")
            first, last = month_bounds(year, month)
            self._check_open(first, "month")
            if last < subscription.start_on:
                raise ValueError("usage before the subscription starts")
            usage = Usage(
                subscription.id, year, month, _required(category, "category"),
                _required(meter, "meter"), _decimal(quantity, "quantity"),
                _decimal(unit_price, "unit_price"),
                _decimal(retail_unit_price, "retail_unit_price"), unit,
            )  # fmt: skip
            self._usage.append(usage)
            return usage

    # -- billing -------------------------------------------------------------------------------

    def close_month(self, year: int, month: int) -> list[BillingStatement]:
        """Bill one calendar month: create its statements and records, once.

        Returns the new statements (none when nothing was charged). Afterwards the month's
        history is frozen: quantity changes and usage must come later.
        """
        with self.lock:
            if self._closed and (year, month) <= max(self._closed):
                raise ValueError(f"{year}-{month:02d} is closed already, or before a closed month")
            drafts = MonthlyBilling(self, year, month).charges()
            first, last = month_bounds(year, month)
            created: list[BillingStatement] = []
            for key in sorted(drafts, key=lambda k: (*k[:3], k.order_id or "")):
                statement_id = self._take("statement")
                records = tuple(
                    replace(draft, id=self._take("record"), statement_id=statement_id)
                    for draft in drafts[key]
                )
                statement = BillingStatement(
                    statement_id, key.organization_id, key.invoice_profile_id,
                    key.provision_type, key.order_id, first, last, self.currency, records,
                )  # fmt: skip
                self._statements[statement.id] = statement
                created.append(statement)
            self._closed.add((year, month))
            return created

    @property
    def today(self) -> date | None:
        """The day after the last closed month, or None before any month is closed."""
        with self.lock:
            if not self._closed:
                return None
            return month_bounds(*max(self._closed))[1] + timedelta(days=1)

    # -- authentication ------------------------------------------------------------------------

    def authenticate_client(self, client_id: str, secret: str) -> ApiClient | None:
        """The client with these credentials, or None."""
        with self.lock:
            client = self._clients.get(client_id)
        return client if client is not None and _same(client.secret, secret) else None

    def authenticate_user(self, username: str, password: str) -> ApiUser | None:
        """The user with these credentials (the username in any case), or None."""
        user = self.find_user(username)
        return user if user is not None and _same(user.password, password) else None

    def find_user(self, username: str) -> ApiUser | None:
        """A user by username, in any case."""
        with self.lock:
            return self._users.get(username.lower())

    def expire_tokens(self, *, refresh: bool = False) -> None:
        """Expire every access token now, for "token expired mid-run" tests; `refresh=True`
        expires the refresh tokens as well, forcing a new password grant."""
        self.tokens.expire_all(refresh=refresh)

    # -- queries -------------------------------------------------------------------------------

    def organization_by_id(self, organization_id: int) -> Organization:
        """An organization by id; KeyError if unknown."""
        with self.lock:
            return _get(self._organizations, organization_id, "organization")

    def organizations(self) -> list[Organization]:
        """Every organization, the partner first."""
        with self.lock:
            return sorted(self._organizations.values(), key=lambda o: o.id)

    def invoice_profile(self, profile_id: int) -> InvoiceProfile:
        """An invoice profile by id; KeyError if unknown."""
        with self.lock:
            return _get(self._profiles, profile_id, "invoice profile")

    def invoice_profiles(self) -> list[InvoiceProfile]:
        """Every invoice profile, by id."""
        with self.lock:
            return sorted(self._profiles.values(), key=lambda p: p.id)

    def tenant(self, tenant_id: int) -> CustomerTenant:
        """A customer tenant by id; KeyError if unknown."""
        with self.lock:
            return _get(self._tenants, tenant_id, "customer tenant")

    def tenants(self) -> list[CustomerTenant]:
        """Every customer tenant, by id."""
        with self.lock:
            return sorted(self._tenants.values(), key=lambda t: t.id)

    def agreement_products(self) -> list[AgreementProduct]:
        """The price list, in the order it was seeded."""
        with self.lock:
            return sorted(self._prices.values(), key=lambda row: row.price_id)

    def subscription(self, subscription_id: int) -> Subscription:
        """A subscription by id; KeyError if unknown."""
        with self.lock:
            return _get(self._subscriptions, subscription_id, "subscription")

    def subscriptions(self) -> list[Subscription]:
        """Every subscription, by id."""
        with self.lock:
            return sorted(self._subscriptions.values(), key=lambda s: s.id)

    def usage(self, year: int, month: int) -> list[Usage]:
        """The usage seeded for one month."""
        with self.lock:
            return [u for u in self._usage if (u.year, u.month) == (year, month)]

    def statement(self, statement_id: int) -> BillingStatement:
        """A billing statement by id; KeyError if unknown."""
        with self.lock:
            return _get(self._statements, statement_id, "billing statement")

    def statements(self) -> list[BillingStatement]:
        """Every statement, newest billing period first (assumed-shapes §3.6), then by id."""
        with self.lock:
            return sorted(self._statements.values(), key=lambda s: (-s.start_on.toordinal(), s.id))

    # -- internals -----------------------------------------------------------------------------

    def _annual_profile(self, organization_id: int) -> InvoiceProfile | None:
        found = [p for p in self._profiles.values() if p.organization_id == organization_id]
        return next((profile for profile in found if profile.annual), None)

    def _check_open(self, day: date, what: str) -> None:
        """History is frozen once billed: nothing may change in or before a closed month."""
        if self._closed and (day.year, day.month) <= max(self._closed):
            year, month = max(self._closed)
            raise ValueError(f"{what}={day} is not after the last closed month {year}-{month:02d}")

    def _take(self, kind: str) -> int:
        self._next[kind] += 1
        return self._next[kind] - 1


def _required(value: str, what: str) -> str:
    if not value or not value.strip():
        raise ValueError(f"{what} must not be blank")
    return value


def _check_quantity(quantity: int) -> None:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ValueError(f"quantity must be a whole number >= 0, not {quantity!r}")


def _same(stored: str, given: str) -> bool:
    return hmac.compare_digest(stored.encode(), given.encode())


def _get(items: dict[int, T], key: int, what: str) -> T:
    found = items.get(key)
    if found is None:
        raise KeyError(f"no {what} with id {key}")
    return found


# -- statement generation (assumed-shapes §3.6, §3.7) -----------------------------------------


class MonthlyBilling:
    """Prices one calendar month of a state's subscriptions into draft billing records.

    Monthly-billed seats are prorated by days, one record per run of equal quantity;
    annual-billed seats are charged whole in the month their term year starts; usage is one
    record per meter. Trials are free. Drafts have id 0 until `CloudiqState.close_month`.
    """

    def __init__(self, state: CloudiqState, year: int, month: int) -> None:
        self.state = state
        self.first, self.last = month_bounds(year, month)
        self.days_in_month = self.last.day
        following = self.last + timedelta(days=1)
        # Statements of a month appear early in the next one (the reference's example: the 3rd).
        self.created_at = midnight(following.replace(day=3)) + timedelta(hours=4)

    def charges(self) -> dict[StatementKey, list[BillingRecord]]:
        """Draft records per statement, in subscription order."""
        drafts: dict[StatementKey, list[BillingRecord]] = {}
        for subscription in self.state.subscriptions():
            if subscription.is_trial:
                continue
            for key, record in self._charge(subscription):
                drafts.setdefault(key, []).append(record)
        return drafts

    def _charge(self, subscription: Subscription) -> list[tuple[StatementKey, BillingRecord]]:
        if subscription.provision_type == ProvisionType.USAGE:
            return [(self._key(subscription), record) for record in self._usage(subscription)]
        if subscription.billing_cycle == BillingCycle.ANNUAL:
            # Each annual order is invoiced on a statement of its own (§3.6).
            key = self._key(subscription, subscription.order_id)
            return [(key, record) for record in self._annual(subscription)]
        return [(self._key(subscription), record) for record in self._monthly(subscription)]

    def _monthly(self, subscription: Subscription) -> list[BillingRecord]:
        first = max(self.first, subscription.start_on)
        if first > self.last:
            return []
        cost, retail = subscription.price.sales_price, subscription.sales_price
        records = []
        for start, end, quantity in quantity_periods(subscription.history, first, self.last):
            days = (end - start).days + 1
            records.append(self._record(
                subscription, (start, end), Decimal(quantity),
                (cost, prorate(cost, quantity, days, self.days_in_month)),
                (retail, prorate(retail, quantity, days, self.days_in_month)),
            ))  # fmt: skip
        return records

    def _annual(self, subscription: Subscription) -> list[BillingRecord]:
        start = subscription.start_on
        if self.first.month != start.month or self.first.year < start.year:
            return []
        term_start = shift_months(start, 12 * (self.first.year - start.year))
        quantity = subscription.quantity_on(term_start)
        if quantity == 0:
            return []
        term_end = shift_months(term_start, 12) - timedelta(days=1)
        cost, retail = subscription.price.sales_price, subscription.sales_price
        return [self._record(
            subscription, (term_start, term_end), Decimal(quantity),
            (cost, to_cents(cost * quantity)), (retail, to_cents(retail * quantity)),
        )]  # fmt: skip

    def _usage(self, subscription: Subscription) -> list[BillingRecord]:
        return [
            self._record(
                subscription, (self.first, self.last), usage.quantity,
                (usage.unit_price, to_cents(usage.unit_price * usage.quantity)),
                (usage.retail_unit_price, to_cents(usage.retail_unit_price * usage.quantity)),
                unit=usage.unit, meter=(usage.category, usage.meter),
            )
            for usage in self.state.usage(self.first.year, self.first.month)
            if usage.subscription_id == subscription.id
        ]  # fmt: skip

    def _key(self, subscription: Subscription, order_id: str | None = None) -> StatementKey:
        profile = self.state.invoice_profile(subscription.invoice_profile_id)
        return StatementKey(
            profile.organization_id, profile.id, subscription.provision_type, order_id
        )

    def _record(
        self,
        subscription: Subscription,
        period: tuple[date, date],
        quantity: Decimal,
        cost: tuple[Decimal, Decimal],
        retail: tuple[Decimal, Decimal],
        *,
        unit: str | None = None,
        meter: tuple[str, str] | None = None,
    ) -> BillingRecord:
        """A draft record; `cost` and `retail` are (unit price, total)."""
        start, end = period
        # The term around the month's end, so one subscription shows one term per statement.
        _, term_end = subscription.term_on(max(self.last, start))
        return BillingRecord(
            id=0, statement_id=0, created_at=self.created_at,
            tenant=self.state.tenant(subscription.tenant_id), product=subscription.product,
            subscription_id=subscription.id, subscription_name=subscription.name,
            publisher_subscription_id=subscription.publisher_subscription_id,
            subscription_start_on=subscription.start_on, subscription_end_on=term_end,
            start_on=start, end_on=end, quantity=quantity,
            unit=unit or subscription.product.unit, unit_price=cost[0], amount=cost[1],
            retail_unit_price=retail[0], retail_total=retail[1],
            currency=self.state.currency, provision_type=subscription.provision_type,
            billing_cycle=subscription.billing_cycle, term=subscription.term,
            meter_category=meter[0] if meter else None, meter_name=meter[1] if meter else None,
        )  # fmt: skip


# -- HTTP: errors and query conventions (assumed-shapes §3.2, §3.3) ---------------------------

_ERROR_CODES = {
    400: "400 BadRequest", 401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 NotFound",
    405: "405 MethodNotAllowed", 429: "429 TooManyRequests",
}  # fmt: skip
_UNAUTHORIZED = "Authorization has been denied for this request."
_INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT32 = range(-(2**31), 2**31)
_DEFAULT_PAGE_SIZE = 50


def _number(value: object) -> float:
    """Decimals go on the wire as JSON numbers looking like the reference's (23.76, 20.0).

    `float()` only re-spells a value of at most 15 significant digits, which round-trips
    exactly; anything longer is refused rather than silently changed.
    """
    if isinstance(value, Decimal):
        if len(value.as_tuple().digits) > 15:
            raise ValueError(f"{value} has too many digits to send as an exact JSON number")
        return float(value)
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, default=_number, ensure_ascii=False).encode()


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, _json_bytes(payload), "application/json; charset=utf-8", headers or {})


class CloudiqApiError(Exception):
    """Ends a request with the API's error body (assumed-shapes §3.2)."""

    def __init__(
        self,
        status: int,
        message: str,
        parameters: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.parameters = parameters or {}
        self.headers = headers or {}

    def response(self) -> Response:
        """The error as the API sends it."""
        body = {
            "ErrorCode": _ERROR_CODES[self.status], "Message": self.message,
            "Parameters": self.parameters, "ObjectErrors": [],
        }  # fmt: skip
        return _json(body, self.status, self.headers)


def _not_found(what: str, key: object) -> CloudiqApiError:
    return CloudiqApiError(404, f"{what} with id {key} was not found.")


def _bad_value(name: str, value: str) -> CloudiqApiError:
    return CloudiqApiError(400, f"The value '{value}' is not valid for {name}.", {name: value})


def _integer(name: str, text: str) -> int:
    if not _INTEGER.fullmatch(text) or int(text) not in _INT32:
        raise _bad_value(name, text)
    return int(text)


class _Query:
    """The query string with case-insensitive names; an empty value counts as absent."""

    def __init__(self, request: Request) -> None:
        self._values = {name.lower(): values[-1] for name, values in request.query.items()}

    def text(self, name: str) -> str | None:
        """A string parameter."""
        return self._values.get(name.lower()) or None

    def integer(self, name: str) -> int | None:
        """An integer parameter; 400 when it is not one."""
        text = self.text(name)
        return None if text is None else _integer(name, text)

    def filter(self, name: str) -> int | None:
        """An integer filter, where 0 means no filter (the SDK always sends its defaults)."""
        return self.integer(name) or None

    def flag(self, name: str) -> bool | None:
        """A boolean parameter (`true`/`false`, any case)."""
        text = self.text(name)
        if text is None:
            return None
        if text.lower() not in ("true", "false"):
            raise _bad_value(name, text)
        return text.lower() == "true"

    def instant(self, name: str) -> datetime | None:
        """A `YYYY-MM-DD` date (midnight UTC) or ISO 8601 timestamp; no offset means UTC."""
        text = self.text(name)
        if text is None:
            return None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise _bad_value(name, text) from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

    def page(self) -> tuple[int, int]:
        """`page` (1-based) and `pageSize` (default 50); values below 1 take the defaults."""
        page, size = self.integer("page") or 1, self.integer("pageSize") or _DEFAULT_PAGE_SIZE
        return max(page, 1), size if size > 0 else _DEFAULT_PAGE_SIZE


def _paged(items: Sequence[T], query: _Query, view: Callable[[T], dict[str, Any]]) -> Response:
    """`{"Items": [...], "TotalHits": n}`; a page past the end is empty (assumed-shapes §3.3)."""
    page, size = query.page()
    chosen = items[(page - 1) * size : page * size]
    return _json({"Items": [view(item) for item in chosen], "TotalHits": len(items)})


# -- HTTP: views (PascalCase, vendor-apis §C.3, assumed-shapes §3.4-3.7) ----------------------


def _ref(key: int, name: str) -> dict[str, Any]:
    return {"Id": key, "Name": name}


def _offset(day: date) -> str:
    """A `DateTimeOffset` at midnight UTC."""
    return f"{day.isoformat()}T00:00:00+00:00"


def _naive(day: date | None) -> str | None:
    """A `DateTime` without offset."""
    return None if day is None else f"{day.isoformat()}T00:00:00"


def _money(value: Decimal, currency: str) -> dict[str, Any]:
    return {"Value": value, "CurrencyCode": currency}


class _Views:
    """Renders state objects as the API's JSON."""

    def __init__(self, state: CloudiqState) -> None:
        self.state = state

    def user(self, user: ApiUser) -> dict[str, Any]:
        return {
            "Id": user.id, "UserName": user.username, "FirstName": user.first_name,
            "LastName": user.last_name, "Email": user.email, "EmailConfirmed": True,
            "LockoutEnabled": False, "LockoutEnd": None, "PhoneNumber": None,
            "PhoneNumberConfirmed": False, "TwoFactorEnabled": False, "TenantAdmin": False,
        }  # fmt: skip

    def organization(self, organization: Organization) -> dict[str, Any]:
        return _ref(organization.id, organization.name)

    def profile(self, profile: InvoiceProfile) -> dict[str, Any]:
        return {
            "Id": profile.id, "Organization": self._organization_ref(profile.organization_id),
            "Name": profile.name, "InvoiceReference": None, "CustomerReference": None,
            "RequisitionNumber": None,
        }  # fmt: skip

    def tenant(self, tenant: CustomerTenant) -> dict[str, Any]:
        return {
            "Id": tenant.id, "Name": tenant.name, "Publisher": _ref(*_MICROSOFT),
            "Program": _ref(*_CSP_PROGRAM), "PublisherCustomerId": tenant.publisher_customer_id,
            "ExternalPublisherCustomerId": None, "Domain": tenant.domain,
            "DomainPrefix": tenant.domain_prefix, "Reference": tenant.reference,
            "CustomerTenantType": _TENANT_TYPE_T2, "EntityStatus": 0,
            "Organization": self._organization_ref(tenant.organization_id),
            "InvoiceProfile": self._profile_ref(tenant.invoice_profile_id), "Consumer": None,
            "ResellerMarkup": Decimal(0), "DefaultSubscriptionPriceType": _LIST_PRICE,
        }  # fmt: skip

    def subscription(self, subscription: Subscription) -> dict[str, Any]:
        tenant = self.state.tenant(subscription.tenant_id)
        product = subscription.product
        term_start, term_end = subscription.term_on(self.state.today or subscription.start_on)
        cancellable = None if subscription.term is None else term_start + _CANCELLATION_WINDOW
        return {
            "Id": subscription.id,
            "PublisherSubscriptionId": subscription.publisher_subscription_id,
            "Publisher": _ref(*_MICROSOFT),
            "Organization": self._organization_ref(tenant.organization_id),
            "CustomerTenant": _ref(tenant.id, tenant.name),
            "Product": {
                "Id": product.id, "PartNumber": product.part_number,
                "PublisherProductId": product.publisher_product_id, "ItemName": product.name,
            },
            "Quantity": subscription.quantity, "Name": subscription.name,
            "Status": int(subscription.status), "ProvisionType": int(subscription.provision_type),
            "OrderId": subscription.order_id, "CreationDate": _offset(subscription.start_on),
            "BillingCycle": int(subscription.billing_cycle), "Markup": Decimal(0),
            "IsTrial": subscription.is_trial, "StartDate": _naive(subscription.start_on),
            "EndDate": _naive(term_end),
            "PriceType": _LIST_PRICE if subscription.fixed_sales_price is None else _FIXED_PRICE,
            "SalesPrice": subscription.sales_price,
            "InvoiceProfile": self._profile_ref(subscription.invoice_profile_id),
            "PartNumber": product.part_number, "TermDuration": subscription.term,
            "AutoRenewEnabled": subscription.auto_renew,
            "CancellationAllowedUntilDate": _offset(cancellable) if cancellable else None,
        }  # fmt: skip

    def agreement_product(self, row: AgreementProduct) -> dict[str, Any]:
        product, currency = row.product, self.state.currency
        return {
            "UniqueId": f"{_AGREEMENT[0]}-{row.price_id}", "Name": product.name,
            "PriceId": row.price_id,
            "ProductVariant": {
                "Id": row.variant_id, "PartNumber": product.part_number,
                "ProductName": product.name,
                "Product": {
                    "Id": product.id, "PartNumber": product.part_number,
                    "PublisherProductId": product.publisher_product_id,
                    "ItemLegalName": product.legal_name, "ItemName": product.name,
                },
                "Publisher": _ref(*_MICROSOFT), "Program": _ref(*_CSP_PROGRAM),
                "PurchasePeriod": row.term, "DefaultBillingCycleId": int(row.billing_cycle),
                "AvailableBillingCycleIds": [int(row.billing_cycle)],
                "PurchaseUnit": product.unit,
                "ProductFamily": _ref(product.family_id, product.family_name),
                "ProductCategory": product.category, "IsTrial": False,
            },
            "Agreement": _ref(*_AGREEMENT),
            "SalesPrice": _money(row.sales_price, currency),
            "RecommendedRetailPrice": _money(row.retail_price, currency),
            "MonthMultiplier": row.month_multiplier,
            "PriceListName": f"Microsoft CSP ({currency})", "AgreementType": _AGREEMENT_TYPE,
            "MinimumQuantity": 1, "MaximumQuantity": None,
        }  # fmt: skip

    def statement(self, statement: BillingStatement) -> dict[str, Any]:
        return {
            "Id": statement.id, "TotalSalesPrice": _money(statement.total, statement.currency),
            "InvoiceProfile": self._profile_ref(statement.invoice_profile_id),
            "Organization": self._organization_ref(statement.organization_id),
            "StartDate": _offset(statement.start_on), "EndDate": _offset(statement.end_on),
            "ProvisionType": int(statement.provision_type), "OrderId": statement.order_id,
        }  # fmt: skip

    def record(self, record: BillingRecord) -> dict[str, Any]:
        tenant, product = record.tenant, record.product
        view: dict[str, Any] = {
            "Id": record.id, "BillingStatementId": record.statement_id,
            "Created": record.created_at.strftime("%Y-%m-%dT%H:%M:%S"),  # a DateTime (§3.3)
            # A string here, an integer everywhere else (assumed-shapes §3.7).
            "CustomerTenant": {
                "Id": str(tenant.id), "Name": tenant.name,
                "PublisherCustomerTenantId": tenant.publisher_customer_id,
                "Reference": tenant.reference, "Domain": tenant.domain,
            },
            "Subscription": {
                "Id": record.subscription_id, "Name": record.subscription_name,
                "PublisherSubscriptionId": record.publisher_subscription_id,
                "StartDate": _naive(record.subscription_start_on),
                "EndDate": _naive(record.subscription_end_on),
            },
            "Product": {
                "Id": product.id, "PartNumber": product.part_number,
                "InvoicePartNumber": product.part_number, "ItemLegalName": product.legal_name,
                "ItemName": product.name, "ProductFamilyName": product.family_name,
                "ProductCategoryName": product.category,
            },
            "StartDate": _naive(record.start_on), "EndDate": _naive(record.end_on),
            "Quantity": record.quantity, "IncludedQuantity": Decimal("0.0"),
            "InvoicePartNumber": product.part_number, "Unit": record.unit,
            "ItemUnitPrice": _money(record.unit_price, record.currency),
            "Amount": record.amount, "ResellerSalesUnitPrice": record.retail_unit_price,
            "ResellerSalesPriceTotal": record.retail_total, "Currency": record.currency,
            "ProvisionType": int(record.provision_type),
            "BillingCycle": int(record.billing_cycle), "TermDuration": record.term,
        }  # fmt: skip
        if record.meter_category is not None:
            view["MeterCategory"] = record.meter_category
            view["MeterName"] = record.meter_name
        return view

    def _organization_ref(self, organization_id: int) -> dict[str, Any]:
        return self.organization(self.state.organization_by_id(organization_id))

    def _profile_ref(self, profile_id: int) -> dict[str, Any]:
        return _ref(profile_id, self.state.invoice_profile(profile_id).name)


# -- HTTP: the token endpoint (assumed-shapes §3.1) -------------------------------------------


class _TokenError(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def _token_body(error: str | None = None, tokens: IssuedTokens | None = None) -> dict[str, Any]:
    """The token shape, which successes and failures share."""
    return {
        "AccessToken": tokens.access_token if tokens else None, "IdentityToken": None,
        "Error": error, "ExpiresIn": tokens.expires_in if tokens else 0,
        "TokenType": "Bearer" if tokens else None,
        "RefreshToken": tokens.refresh_token if tokens else None,
    }  # fmt: skip


class _TokenEndpoint:
    """`POST /connect/token`: password and refresh-token grants with HTTP Basic client auth."""

    def __init__(self, state: CloudiqState) -> None:
        self.state = state

    def grant(self, request: Request) -> Response:
        # Tokens must never be cached (RFC 6749 §5.1).
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        try:
            client = self._client(request)
            username = self._username(self._form(request), client)
        except _TokenError as failure:
            return _json(_token_body(failure.error), failure.status, no_store)
        tokens = self.state.tokens.issue(username, client.client_id)
        return _json(_token_body(tokens=tokens), 200, no_store)

    def _client(self, request: Request) -> ApiClient:
        scheme, _, encoded = (request.header("Authorization") or "").strip().partition(" ")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        client_id, colon, secret = decoded.partition(":")
        client = None
        if scheme.lower() == "basic" and colon:
            # RFC 6749 §2.3.1: both halves are form-encoded before base64.
            client = self.state.authenticate_client(unquote(client_id), unquote(secret))
        if client is None:
            raise _TokenError(401, "invalid_client")
        return client

    @staticmethod
    def _form(request: Request) -> dict[str, Any]:
        """The form body; a body of another type carries no parameters."""
        if "form-urlencoded" not in (request.header("Content-Type") or "").lower():
            return {}
        return parse_form(request.body.decode("utf-8", errors="replace"))

    def _username(self, form: dict[str, Any], client: ApiClient) -> str:
        """Whom the grant in `form` is for."""
        match form.get("grant_type"):
            case "password":
                return self._password(form)
            case "refresh_token":
                return self._refresh(form, client)
            case _:
                raise _TokenError(400, "unsupported_grant_type")

    def _password(self, form: dict[str, Any]) -> str:
        if REQUIRED_SCOPE not in str(form.get("scope", "")).split():
            raise _TokenError(400, "invalid_scope")
        user = self.state.authenticate_user(
            str(form.get("username", "")), str(form.get("password", ""))
        )
        if user is None:
            raise _TokenError(400, "invalid_grant")
        return user.username

    def _refresh(self, form: dict[str, Any], client: ApiClient) -> str:
        username = self.state.tokens.redeem(str(form.get("refresh_token", "")), client.client_id)
        if username is None or self.state.find_user(username) is None:
            raise _TokenError(400, "invalid_grant")
        return username


# -- HTTP: the resources ----------------------------------------------------------------------

UserHandler = Callable[[Request, ApiUser], Response]


def _lookup(request: Request, find: Callable[[int], T], what: str) -> T:
    """The object whose id is in the path: 400 if the id is not an integer, 404 if unknown."""
    key = _integer("id", request.path_params["id"])
    try:
        return find(key)
    except KeyError:
        raise _not_found(what, key) from None


class _Resources:
    """The read-only resources a billing client uses, each answering for one API user."""

    def __init__(self, state: CloudiqState) -> None:
        self.state = state
        self.views = _Views(state)

    def routes(self) -> list[tuple[str, UserHandler]]:
        one = "/(?P<id>[^/]+)"
        return [
            ("/me", self.me),
            ("/organizations", self.organizations),
            ("/customertenants", self.tenants),
            (f"/customertenants{one}", self.tenant),
            ("/invoiceprofiles", self.invoice_profiles),
            ("/subscriptions", self.subscriptions),
            (f"/subscriptions{one}", self.subscription),
            ("/agreementproducts", self.agreement_products),
            ("/billingstatements", self.statements),
            (f"/billingstatements{one}/billingrecordsfile", self.records_file),
        ]

    def me(self, request: Request, user: ApiUser) -> Response:
        return _json(self.views.user(user))

    def organizations(self, request: Request, user: ApiUser) -> Response:
        visible = [o for o in self.state.organizations() if o.id in user.organization_ids]
        return _paged(visible, _Query(request), self.views.organization)

    def tenants(self, request: Request, user: ApiUser) -> Response:
        query = _Query(request)
        allowed = self._organizations(query, user)
        search, domain = (query.text("search") or "").lower(), query.text("domain")
        publisher, program = query.filter("publisherId"), query.filter("programId")
        found = [
            t for t in self.state.tenants()
            if t.organization_id in allowed
            and (not search or any(search in (v or "").lower()
                                   for v in (t.name, t.domain, t.reference)))
            and (domain is None or t.domain == domain.lower())
            and publisher in (None, _MICROSOFT[0]) and program in (None, _CSP_PROGRAM[0])
        ]  # fmt: skip
        return _paged(found, query, self.views.tenant)

    def tenant(self, request: Request, user: ApiUser) -> Response:
        tenant = _lookup(request, self.state.tenant, "CustomerTenant")
        if tenant.organization_id not in user.organization_ids:
            raise _not_found("CustomerTenant", tenant.id)
        return _json(self.views.tenant(tenant))

    def invoice_profiles(self, request: Request, user: ApiUser) -> Response:
        query = _Query(request)
        allowed = self._organizations(query, user)
        found = [p for p in self.state.invoice_profiles() if p.organization_id in allowed]
        return _paged(found, query, self.views.profile)

    def subscriptions(self, request: Request, user: ApiUser) -> Response:
        query = _Query(request)
        allowed = self._organizations(query, user)
        tenant_id, statuses = query.filter("customerTenantId"), query.filter("statuses")
        is_trial, search = query.flag("isTrial"), (query.text("search") or "").lower()
        found = [
            s for s in self.state.subscriptions()
            if self.state.tenant(s.tenant_id).organization_id in allowed
            and tenant_id in (None, s.tenant_id)
            and (statuses is None or s.status & statuses)
            and is_trial in (None, s.is_trial)
            and (not search or search in s.name.lower() or search in s.product.part_number.lower())
        ]  # fmt: skip
        return _paged(found, query, self.views.subscription)

    def subscription(self, request: Request, user: ApiUser) -> Response:
        found = _lookup(request, self.state.subscription, "Subscription")
        if self.state.tenant(found.tenant_id).organization_id not in user.organization_ids:
            raise _not_found("Subscription", found.id)
        return _json(self.views.subscription(found))

    def agreement_products(self, request: Request, user: ApiUser) -> Response:
        query = _Query(request)
        self._organizations(query, user)  # the one price list, but the organization is checked
        search = (query.text("search") or "").lower()
        found = [
            row for row in self.state.agreement_products()
            if not search or search in row.product.name.lower()
            or search in row.product.part_number.lower()
        ]  # fmt: skip
        return _paged(found, query, self.views.agreement_product)

    def statements(self, request: Request, user: ApiUser) -> Response:
        query = _Query(request)
        allowed = self._organizations(query, user)
        profile, provision = query.filter("invoiceProfileId"), query.filter("provisionType")
        start, end = query.instant("from"), query.instant("to")
        found = [
            s for s in self.state.statements()
            if s.organization_id in allowed and profile in (None, s.invoice_profile_id)
            and provision in (None, s.provision_type) and s.overlaps(start, end)
        ]  # fmt: skip
        return _paged(found, query, self.views.statement)

    def records_file(self, request: Request, user: ApiUser) -> Response:
        """Base64 of the UTF-8 JSON array of records, never zipped (assumed-shapes §3.7)."""
        statement = _lookup(request, self.state.statement, "BillingStatement")
        if statement.organization_id not in user.organization_ids:
            raise _not_found("BillingStatement", statement.id)
        records = _json_bytes([self.views.record(record) for record in statement.records])
        return _json({
            "BillingStatement": self.views.statement(statement),
            "FileName": f"billing-records-{statement.id}.json",
            "Data": base64.b64encode(records).decode("ascii"),
        })  # fmt: skip

    def _organizations(self, query: _Query, user: ApiUser) -> frozenset[int]:
        """The organizations to list: the one asked for (403 if not the user's) or all of his."""
        asked = query.filter("organizationId")
        if asked is None:
            return user.organization_ids
        if asked not in user.organization_ids:
            raise CloudiqApiError(403, f"Access to organization {asked} is denied.")
        return frozenset({asked})


# -- the server -------------------------------------------------------------------------------

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class CloudiqSandbox(SandboxServer):
    """The Crayon API over HTTP on 127.0.0.1; point a client at `api_url`.

    Args:
        state: the partner account to serve (a fresh empty one by default); shared, not copied.
        requests_per_minute: a per-client-IP limit answered with 429; None (default) for none,
            as the API documents no limit (vendor-apis §C.3).
        retry_after: seconds to put in `Retry-After` on 429; None sends no header.
        clock: monotonic seconds for the rate limiter; by default the state's clock.
    """

    def __init__(
        self,
        state: CloudiqState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        requests_per_minute: int | None = None,
        retry_after: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(host=host, port=port)
        self.state = state if state is not None else CloudiqState()
        self.retry_after = retry_after
        self.limiter = None
        if requests_per_minute is not None:
            self.limiter = SlidingWindowLimiter(
                requests_per_minute, 60.0, clock or self.state.clock
            )
        self._route("POST", "/connect/token", _TokenEndpoint(self.state).grant)
        for path, handler in _Resources(self.state).routes():
            self._route("GET", path, self._authenticated(handler))
        for method in _METHODS:
            self.router.add(method, ".*", self._unknown)

    @property
    def api_url(self) -> str:
        """`url` plus `/api/v1`: what a Crayon API client takes as its base URL."""
        return f"{self.url}/api/v1"

    def handle(self, request: Request) -> Response:
        """Rate-limit per client IP if configured, then route under the state's lock."""
        if self.limiter is not None and not self.limiter.allow(request.client_ip):
            headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
            return CloudiqApiError(429, "Too many requests.", headers=headers).response()
        with self.state.lock:
            try:
                return super().handle(request)
            except CloudiqApiError as error:
                return error.response()

    def _route(self, method: str, path: str, handler: Handler) -> None:
        """Register `handler`, with or without a trailing slash; other methods answer 405."""
        pattern = f"/api/v1{path}/?"
        self.router.add(method, pattern, handler)

        def not_allowed(request: Request) -> Response:
            raise CloudiqApiError(
                405,
                f"The requested resource does not support http method '{request.method}'.",
                headers={"Allow": method},
            )

        for other in _METHODS:
            if other != method:
                self.router.add(other, pattern, not_allowed)

    def _authenticated(self, handler: UserHandler) -> Handler:
        def guarded(request: Request) -> Response:
            scheme, _, token = (request.header("Authorization") or "").strip().partition(" ")
            username = None
            if scheme.lower() == "bearer":
                username = self.state.tokens.holder(token.strip())
            user = self.state.find_user(username) if username is not None else None
            if user is None:
                raise CloudiqApiError(401, _UNAUTHORIZED, headers=_INVALID_TOKEN)
            return handler(request, user)

        return guarded

    @staticmethod
    def _unknown(request: Request) -> Response:
        raise CloudiqApiError(404, f"No resource at {request.path}.")
