"""The objects of a Cloud-iQ partner account (vendor-apis §C.3, assumed-shapes §3): the
partner's organizations, users and tenants, the price list, subscriptions and statements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import IntEnum, IntFlag
from typing import Literal, NamedTuple

from sync_daemon.sandbox.cloudiq.periods import midnight, quantity_in_force, term_bounds

Term = Literal["P1M", "P1Y"]
Amount = Decimal | int | str


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


# (id, name) of the one publisher and program every tenant and subscription belongs to.
MICROSOFT = (2, "Microsoft")
CSP_PROGRAM = (3, "Microsoft CSP")


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
        return quantity_in_force(self.history, day)

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
