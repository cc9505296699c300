"""One-time charges from vendor statements (prorations, Azure usage, annual terms), planned
without I/O. A charge is event data: it must land exactly once, so each carries a deterministic
key and is skipped once the state says that key was settled.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sync_daemon.connectors.syncro import Schedule
from sync_daemon.invoices.plan import CustomerKey
from sync_daemon.plan import AddCharge, CustomerRef, Notice
from sync_daemon.products.plan import ProductTarget
from sync_daemon.state import VendorCustomer
from sync_daemon.vendor import Charge


@dataclass(frozen=True, slots=True)
class ChargeInputs:
    """What charge planning reads.

    Attributes:
        mappings: the vendor's mapping-table rows.
        charges: the unapplied statements' one-time charges.
        skipped: customers whose vendor data was unusable this pass.
        products: the product each SKU's lines use.
        schedules: each needed schedule with its lines; None when gone from Syncro.
        settled: charge keys already billed.
        pending: charge keys an earlier run began but did not settle.
    """

    mappings: Sequence[VendorCustomer]
    charges: Sequence[Charge]
    skipped: frozenset[CustomerKey]
    products: Mapping[str, ProductTarget]
    schedules: Mapping[int, Schedule | None]
    settled: Collection[str]
    pending: Collection[str]


def plan_charges(inputs: ChargeInputs) -> tuple[list[AddCharge], list[Notice]]:
    """A one-time line per charge of a mapped customer; the unbilled amount of the others."""
    rows = {(m.vendor_customer_id, m.billing_motion): m for m in inputs.mappings}
    changes: list[AddCharge] = []
    notices: list[Notice] = []
    unbilled: dict[str, Decimal] = {}
    for charge in inputs.charges:
        key = (charge.customer_id, charge.billing_motion)
        if key in inputs.skipped or charge.key in inputs.settled:
            continue
        mapping = rows.get(key)
        if mapping is None or mapping.status != "mapped" or mapping.schedule_id is None:
            name = mapping.name if mapping else charge.customer_id
            label = f"{name} ({charge.billing_motion})" if charge.billing_motion else name
            unbilled[label] = unbilled.get(label, Decimal(0)) + charge.quantity * charge.retail
            continue
        ref = CustomerRef(mapping.vendor_customer_id, mapping.name,
                          mapping.psa_customer_name or "", mapping.billing_motion)
        schedule = inputs.schedules.get(mapping.schedule_id)
        target = inputs.products.get(charge.sku)
        if schedule is None or target is None:
            reason = (f"recurring invoice {mapping.schedule_id} no longer exists in Syncro"
                      if schedule is None else f"{charge.sku} has no product")
            notices.append(Notice("error", "charge_not_billed",
                                  f"{charge.name}: {reason}; not billed yet", customer=ref.label))
            continue
        existing = _landed(schedule, charge, target) if charge.key in inputs.pending else None
        changes.append(AddCharge(
            customer=ref, schedule_id=schedule.id, key=charge.key,
            statement_id=charge.statement_id, sku=charge.sku, product_id=target.product_id,
            name=charge.name, kind=charge.kind, quantity=charge.quantity, retail=charge.retail,
            cost=charge.cost, taxable=target.taxable,
            known_line_ids=tuple(line.id for line in schedule.lines),
            existing_line_id=existing))
    notices += [Notice("warning", "unbilled",
                       f"not mapped: {amount:.2f} of one-time charges left unbilled",
                       customer=label) for label, amount in sorted(unbilled.items())]
    return changes, notices


def _landed(schedule: Schedule, charge: Charge, target: ProductTarget) -> int | None:
    """The line an interrupted run added for `charge`, found by its unique name."""
    for line in schedule.lines:
        if line.one_time_charge and line.name == charge.name and (
                target.product_id is None or line.product_id == target.product_id):
            return line.id
    return None
