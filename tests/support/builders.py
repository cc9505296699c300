"""Plain-data builders for the planning tests: short calls with defaults, fixed timestamps.

Every builder returns the real record type; keyword arguments name only what a test cares about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sync_daemon.connectors.syncro import Customer, Product, Schedule, ScheduleLine
from sync_daemon.invoices.plan import CustomerKey, LineInputs
from sync_daemon.products.plan import ProductTarget
from sync_daemon.state import ManagedLine, ManagedProduct, VendorCustomer
from sync_daemon.state.records import Origin, VendorCustomerStatus
from sync_daemon.vendor import SourceCustomer, SourceProduct, Usage

VENDOR = "proofpoint"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)

Money = Decimal | str | int


def D(value: Money) -> Decimal:  # noqa: N802  reads like a literal in tables
    """A Decimal from text or an int."""
    return value if isinstance(value, Decimal) else Decimal(value)


def product(id: int, name: str, *, cost: Money = "1.00", retail: Money = "2.00",  # noqa: A002
            taxable: bool = True, disabled: bool = False, description: str = "") -> Product:
    """A Syncro product."""
    return Product(id=id, name=name, description=description, price_cost=D(cost),
                   price_retail=D(retail), taxable=taxable, disabled=disabled,
                   maintain_stock=False)


def source_product(sku: str, *, name: str | None = None, cost: Money = "1.00",
                   retail: Money = "2.00") -> SourceProduct:
    """A vendor SKU with prices."""
    return SourceProduct(sku=sku, name=name or f"{sku} package", cost=D(cost), retail=D(retail))


def managed_product(sku: str, product_id: int, *, name: str | None = None,
                    origin: Origin = "created") -> ManagedProduct:
    """The daemon's record of owning a product."""
    return ManagedProduct(vendor=VENDOR, sku=sku, syncro_product_id=product_id, origin=origin,
                          name=name or f"PC_{sku}", created_at=T0, updated_at=T0)


def target(sku: str, product_id: int | None, *, retail: Money = "2.00", cost: Money = "1.00",
           taxable: bool = True, name: str | None = None) -> ProductTarget:
    """Where a SKU's lines point after product changes."""
    return ProductTarget(sku=sku, product_id=product_id, name=name or f"PC_{sku}", cost=D(cost),
                         retail=D(retail), taxable=taxable)


def line(id: int, schedule_id: int, product_id: int | None, *,  # noqa: A002
         quantity: Money = 1, retail: Money = "2.00", cost: Money = "1.00",
         name: str | None = None) -> ScheduleLine:
    """A recurring-invoice line."""
    return ScheduleLine(id=id, schedule_id=schedule_id, product_id=product_id,
                        name=name, description=None, quantity=D(quantity), retail=D(retail),
                        cost=D(cost), taxable=True, one_time_charge=False, position=None)


def schedule(id: int, *, customer_id: int = 500, lines: Iterable[ScheduleLine] = (),  # noqa: A002
             paused: bool = False, name: str | None = None) -> Schedule:
    """A recurring invoice with its lines."""
    return Schedule(id=id, customer_id=customer_id, name=name or f"Monthly {id}",
                    frequency="Monthly", paused=paused, next_run=None, lines=tuple(lines))


def managed_line(line_id: int, schedule_id: int, customer_id: str, sku: str, product_id: int,
                 *, quantity: Money = 1, retail: Money = "2.00", cost: Money = "1.00",
                 billing_motion: str = "", origin: Origin = "created") -> ManagedLine:
    """The daemon's record of owning a line, with the values it last wrote."""
    return ManagedLine(syncro_line_id=line_id, schedule_id=schedule_id, vendor=VENDOR,
                       vendor_customer_id=customer_id, billing_motion=billing_motion, sku=sku,
                       syncro_product_id=product_id, last_retail=D(retail), last_cost=D(cost),
                       last_quantity=D(quantity), origin=origin, created_at=T0, updated_at=T0)


def vendor_customer(id: str, *, name: str | None = None,  # noqa: A002
                    status: VendorCustomerStatus = "mapped", psa_customer_id: int | None = 500,
                    psa_customer_name: str | None = "Acme Syncro", schedule_id: int | None = 1,
                    minimum: int | None = None, included: int | None = None,
                    billing_motion: str = "") -> VendorCustomer:
    """A mapping-table row; `not_mapped` rows drop their PSA fields."""
    if status == "not_mapped":
        psa_customer_id, psa_customer_name, schedule_id = None, None, None
    return VendorCustomer(vendor=VENDOR, vendor_customer_id=id, billing_motion=billing_motion,
                          name=name or f"Vendor {id}", status=status,
                          psa_customer_id=psa_customer_id, psa_customer_name=psa_customer_name,
                          schedule_id=schedule_id, minimum=minimum, included=included,
                          first_seen_at=T0, last_seen_at=T0, updated_at=T0)


def usage(customer_id: str, sku: str, quantity: int, *, billable: bool = True,
          note: str | None = None, billing_motion: str = "") -> Usage:
    """One customer's count of one SKU."""
    return Usage(customer_id=customer_id, sku=sku, quantity=quantity,
                 billing_motion=billing_motion, billable=billable, note=note)


def customer(id: int, name: str | None, *, email: str | None = None,  # noqa: A002
             fullname: str | None = None) -> Customer:
    """A Syncro customer."""
    return Customer(id=id, business_name=name, fullname=fullname, email=email, disabled=False)


def source_customer(id: str, name: str, *, domains: Sequence[str] = (),  # noqa: A002
                    billing_motion: str = "") -> SourceCustomer:
    """A customer as the vendor reports it."""
    return SourceCustomer(id=id, name=name, billing_motion=billing_motion,
                          domains=tuple(domains))


def line_inputs(
    *,
    mappings: Sequence[VendorCustomer] = (),
    usages: Sequence[Usage] = (),
    products: Mapping[str, ProductTarget] | Iterable[ProductTarget] = (),
    managed_lines: Sequence[ManagedLine] = (),
    schedules: Mapping[int, Schedule | None] | Iterable[Schedule] = (),
    skipped: Iterable[CustomerKey] = (),
    other_managed_line_ids: Iterable[int] = (),
) -> LineInputs:
    """`LineInputs` from lists; `all_managed_line_ids` is the managed lines plus `other_...`."""
    by_sku = dict(products) if isinstance(products, Mapping) else {p.sku: p for p in products}
    by_id = dict(schedules) if isinstance(schedules, Mapping) else {s.id: s for s in schedules}
    return LineInputs(
        mappings=tuple(mappings), usages=tuple(usages), skipped=frozenset(skipped),
        products=by_sku, managed_lines=tuple(managed_lines),
        all_managed_line_ids=frozenset({m.syncro_line_id for m in managed_lines}
                                       | set(other_managed_line_ids)),
        schedules=by_id)
