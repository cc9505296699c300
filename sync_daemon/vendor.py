"""What every vendor source hands the planner: customers, priced products and usage counts.

A source turns one vendor's API into a `Snapshot` of plain data; everything downstream
(mapping, products, invoices) works on snapshots only, so a new vendor is a new source.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class SourceCustomer:
    """A customer as the vendor knows it; `id` is the vendor's stable identifier as text."""

    id: str
    name: str
    billing_motion: str = ""
    domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceProduct:
    """A vendor SKU with the MSP's unit cost and retail price."""

    sku: str
    name: str
    cost: Decimal
    retail: Decimal


@dataclass(frozen=True, slots=True)
class Usage:
    """How many units of one SKU one customer uses.

    `billable` False (a trial, an inactive org) bills 0 whatever the mapping's minimum says;
    `note` says why. Invoice-driven vendors name the statement the count comes from.
    """

    customer_id: str
    sku: str
    quantity: int
    billing_motion: str = ""
    billable: bool = True
    note: str | None = None
    statement_id: str | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    """A vendor billing statement (Cloud-iQ) that must be applied exactly once.

    `billing_motion` is the invoice profile it belongs to; periods are inclusive dates.
    """

    id: str
    billing_motion: str
    period_start: date
    period_end: date
    total: Decimal
    provision_type: int


@dataclass(frozen=True, slots=True)
class Charge:
    """A one-time charge (proration, usage, annual term) that must land exactly once.

    `key` is deterministic (`cloudiq:charge:<statement>:<tenant>:<sku>:<kind>`), so a re-run or
    a crash can never bill it twice. `name` tells the customer what it is: SKU, period, reason.
    """

    key: str
    statement_id: str
    customer_id: str
    billing_motion: str
    sku: str
    name: str
    kind: Literal["proration", "usage", "annual"]
    quantity: Decimal
    retail: Decimal
    cost: Decimal


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """Vendor data the source could not use; `customer_id` None means the whole source."""

    message: str
    customer_id: str | None = None
    customer: str | None = None
    billing_motion: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one vendor said in one pass.

    A customer named in `problems` keeps its row in the mapping table but is left out of
    planning entirely: missing data must never look like a count that dropped to zero.
    """

    vendor: str
    customers: tuple[SourceCustomer, ...]
    products: tuple[SourceProduct, ...]
    usages: tuple[Usage, ...]
    problems: tuple[SourceProblem, ...] = ()
    statements: tuple[Statement, ...] = ()
    charges: tuple[Charge, ...] = ()

    def customers_with_problems(self) -> frozenset[tuple[str, str]]:
        """(id, billing motion) of customers whose data was unusable this pass."""
        return frozenset((p.customer_id, p.billing_motion) for p in self.problems
                         if p.customer_id is not None)


class VendorSource(Protocol):
    """A vendor the daemon reads from."""

    name: str

    def fetch(self) -> Snapshot:
        """Read the vendor's customers, products and counts."""
        ...

    def check(self) -> str:
        """Prove the credentials work; return a short description of the login."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
