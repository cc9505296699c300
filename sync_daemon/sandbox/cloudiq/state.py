"""The Cloud-iQ partner account in memory: seeding, quantity history, closing months into
statements, credentials, and the queries the API answers from."""

from __future__ import annotations

import hmac
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from sync_daemon.sandbox.cloudiq.billing import MonthlyBilling
from sync_daemon.sandbox.cloudiq.model import (
    AgreementProduct,
    Amount,
    ApiClient,
    ApiUser,
    BillingCycle,
    BillingStatement,
    CustomerTenant,
    InvoiceProfile,
    Organization,
    Product,
    ProvisionType,
    Subscription,
    SubscriptionStatus,
    Term,
    Usage,
)
from sync_daemon.sandbox.cloudiq.periods import month_bounds
from sync_daemon.sandbox.cloudiq.tokens import (
    DEFAULT_EXPIRES_IN,
    DEFAULT_REFRESH_EXPIRES_IN,
    TokenStore,
)
from sync_daemon.sandbox.http import Clock

T = TypeVar("T")

DEFAULT_ORGANIZATION_ID = 12345
_GUIDS = uuid.UUID("6f1c2a7e-3b1d-4c55-9a0e-5c1d0a7e9b21")  # namespace for deterministic GUIDs


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

    def set_agreement_price(
        self,
        part_number: str,
        *,
        term: Term | None,
        billing_cycle: BillingCycle | int = BillingCycle.MONTHLY,
        sales_price: Amount,
        retail_price: Amount,
    ) -> AgreementProduct:
        """Change one price-list row's prices (Crayon's list changed), keeping its ids.

        Subscriptions on that row are billed at the new prices from the next closed month on
        (a retail price fixed with `add_subscription(sales_price=...)` stays fixed).
        Raises `KeyError` when the row is not on the price list.
        """
        cycle = BillingCycle(billing_cycle)
        cost, retail = _decimal(sales_price, "sales_price"), _decimal(retail_price, "retail_price")
        with self.lock:
            old = self._price_row(part_number, term, cycle)
            row = replace(old, sales_price=cost, retail_price=retail)
            self._prices[(part_number, term, cycle)] = row
            for subscription in self._subscriptions.values():
                if subscription.price is old:
                    subscription.price = row
            return row

    def remove_agreement_product(
        self,
        part_number: str,
        *,
        term: Term | None,
        billing_cycle: BillingCycle | int = BillingCycle.MONTHLY,
    ) -> AgreementProduct:
        """Take one row off the price list (Crayon stopped offering it to the partner).

        Subscriptions already on it keep being billed at its prices, so statements name a
        PartNumber the price list no longer has. Raises `KeyError` when the row is not there.
        """
        with self.lock:
            row = self._price_row(part_number, term, BillingCycle(billing_cycle))
            del self._prices[(part_number, term, row.billing_cycle)]
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

    def _price_row(
        self, part_number: str, term: Term | None, cycle: BillingCycle
    ) -> AgreementProduct:
        row = self._prices.get((part_number, term, cycle))
        if row is None:
            raise KeyError(f"{part_number} {term}/{cycle.name} is not on the price list")
        return row

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
