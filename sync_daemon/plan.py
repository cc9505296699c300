"""The shared vocabulary of a sync pass: the changes a plan proposes and the notices it raises.

Plans are plain data computed without I/O (`products.plan`, `invoices.plan`); `apply` executes
them one change at a time. Every change says what it touches, before and after, and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """Which mapped customer a line change belongs to, with names for people."""

    vendor_customer_id: str
    name: str
    psa_customer: str
    billing_motion: str = ""

    @property
    def label(self) -> str:
        """`Vendor name → Syncro name`, as the summary shows it."""
        return f"{self.name} → {self.psa_customer}"


@dataclass(frozen=True, slots=True)
class CreateProduct:
    """Create the Syncro product for a SKU (first sync, or deleted in Syncro)."""

    sku: str
    name: str
    description: str
    cost: Decimal
    retail: Decimal
    taxable: bool
    reason: str


@dataclass(frozen=True, slots=True)
class AdoptProduct:
    """Take over a product the MSP made by hand with exactly the daemon's name."""

    sku: str
    product_id: int
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class UpdateProductPrice:
    """Set a managed product's unit cost and retail price to the vendor's."""

    sku: str
    product_id: int
    name: str
    cost_before: Decimal
    cost_after: Decimal
    retail_before: Decimal
    retail_after: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class CreateLine:
    """Add a line to a recurring invoice; `product_id` None means the product is new this run."""

    customer: CustomerRef
    schedule_id: int
    sku: str
    product_id: int | None
    name: str
    quantity: int
    retail: Decimal
    cost: Decimal
    taxable: bool
    known_line_ids: tuple[int, ...]
    reason: str
    replaces_line_id: int | None = None


@dataclass(frozen=True, slots=True)
class AdoptLine:
    """Take over an existing line of a managed product; its price is kept as if set by hand."""

    customer: CustomerRef
    schedule_id: int
    line_id: int
    sku: str
    product_id: int
    quantity: Decimal
    retail: Decimal
    cost: Decimal
    list_retail: Decimal
    list_cost: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class UpdateLine:
    """Change a managed line's quantity and/or price; None means that field stays."""

    customer: CustomerRef
    schedule_id: int
    line_id: int
    sku: str
    reason: str
    quantity_before: Decimal
    quantity_after: int | None = None
    retail_before: Decimal | None = None
    retail_after: Decimal | None = None
    cost_before: Decimal | None = None
    cost_after: Decimal | None = None


@dataclass(frozen=True, slots=True)
class DeleteLine:
    """Remove a managed line (its SKU is no longer used, e.g. after a package change)."""

    customer: CustomerRef
    schedule_id: int
    line_id: int
    sku: str
    quantity_before: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class AddCharge:
    """Add a one-time charge line for a vendor statement; `key` makes it land exactly once.

    `existing_line_id` is set when an earlier, interrupted run already added the line: the
    change then only records it.
    """

    customer: CustomerRef
    schedule_id: int
    key: str
    statement_id: str
    sku: str
    product_id: int | None
    name: str
    kind: str
    quantity: Decimal
    retail: Decimal
    cost: Decimal
    taxable: bool
    known_line_ids: tuple[int, ...]
    existing_line_id: int | None = None

    @property
    def total(self) -> Decimal:
        """What the customer is charged."""
        return self.quantity * self.retail


Change = CreateProduct | AdoptProduct | UpdateProductPrice | CreateLine | AdoptLine | UpdateLine \
    | DeleteLine | AddCharge
ProductChange = CreateProduct | AdoptProduct | UpdateProductPrice
LineChange = CreateLine | AdoptLine | UpdateLine | DeleteLine


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the operator should know: a warning (nothing wrong was billed) or an error."""

    level: Literal["warning", "error"]
    kind: str
    message: str
    customer: str | None = None


@dataclass(frozen=True, slots=True)
class SeatTotals:
    """Seats on the daemon's lines for one vendor, before and after the plan."""

    before: int
    after: int
    zeroed_customers: tuple[str, ...] = ()

    @property
    def decrease_percent(self) -> Decimal:
        """How much the total drops, in percent (0 when it grows)."""
        if self.before <= 0 or self.after >= self.before:
            return Decimal(0)
        return (Decimal(self.before - self.after) * 100 / self.before).quantize(Decimal("0.1"))


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one pass would do for one vendor."""

    vendor: str
    changes: tuple[Change, ...]
    notices: tuple[Notice, ...]
    seats: SeatTotals = field(default_factory=lambda: SeatTotals(0, 0))

    @property
    def product_changes(self) -> tuple[ProductChange, ...]:
        """Changes to products; applied before line changes, which may need their ids."""
        return tuple(c for c in self.changes if isinstance(c, ProductChange))

    @property
    def line_changes(self) -> tuple[LineChange, ...]:
        """Changes to recurring-invoice lines."""
        return tuple(c for c in self.changes if isinstance(c, LineChange))


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field of one change, as the summary and the audit log show it."""

    action: str
    target: str
    customer: str | None
    field: str | None
    before: str | None
    after: str | None
    reason: str


def describe(change: Change, *, target: str | None = None) -> list[FieldChange]:
    """The change as rows of (action, target, customer, field, before, after, reason).

    `target` overrides the target text, e.g. with the id a create returned.
    """
    match change:
        case CreateProduct():
            where = target or f"product {change.name}"
            return [FieldChange("product.created", where, None, None, None,
                                f"{change.name} cost {money(change.cost)} "
                                f"retail {money(change.retail)}", change.reason)]
        case AdoptProduct():
            return [FieldChange("product.adopted", target or f"product:{change.product_id}",
                                None, None, None, change.name, change.reason)]
        case UpdateProductPrice():
            where = target or f"product:{change.product_id}"
            prices = (("price_cost", change.cost_before, change.cost_after),
                      ("price_retail", change.retail_before, change.retail_after))
            return [FieldChange("product.price_set", where, None, name, money(before),
                                money(after), change.reason)
                    for name, before, after in prices if before != after]
        case CreateLine():
            return [FieldChange("line.created", target or f"schedule:{change.schedule_id}",
                                change.customer.label, change.sku, None,
                                f"quantity {change.quantity} at {money(change.retail)}",
                                change.reason)]
        case AdoptLine():
            return [FieldChange("line.adopted", target or f"line:{change.line_id}",
                                change.customer.label, change.sku, None,
                                f"quantity {number(change.quantity)} at {money(change.retail)}",
                                change.reason)]
        case UpdateLine():
            where = target or f"line:{change.line_id}"
            rows = []
            if change.quantity_after is not None:
                rows.append(FieldChange("line.quantity_set", where, change.customer.label,
                                        f"{change.sku} quantity", number(change.quantity_before),
                                        str(change.quantity_after), change.reason))
            for name, before, after in (("retail", change.retail_before, change.retail_after),
                                        ("cost", change.cost_before, change.cost_after)):
                if after is not None:
                    rows.append(FieldChange("line.price_set", where, change.customer.label,
                                            f"{change.sku} {name}", _money(before),
                                            money(after),
                                            change.reason))
            return rows
        case DeleteLine():
            return [FieldChange("line.deleted", target or f"line:{change.line_id}",
                                change.customer.label, change.sku,
                                f"quantity {number(change.quantity_before)}", None,
                                change.reason)]
        case AddCharge():
            return [FieldChange("charge.added", target or f"schedule:{change.schedule_id}",
                                change.customer.label, change.sku, None,
                                f"{number(change.quantity)} at {money(change.retail)} "
                                f"= {money(change.total)}",
                                f"{change.name} [{change.key}]")]


def number(value: Decimal) -> str:
    """A quantity as people write it: 10, not 10.0; 2.5 stays 2.5."""
    return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)


def money(value: Decimal) -> str:
    """An amount as invoices show it: at least two decimals (36.0 → 36.00), more only when the
    amount has them (a unit price of 0.0960 stays 0.096)."""
    exact = value.normalize()
    return str(exact.quantize(_CENTS) if exact.as_tuple().exponent > -2 else exact)  # type: ignore[operator]


def _money(value: Decimal | None) -> str | None:
    return None if value is None else money(value)


_CENTS = Decimal("0.01")
