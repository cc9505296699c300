"""The pure plan step alone, timed in-process on many customers (issue 7: 50,000 under 2 s CPU).

One vendor pass in its steady state: every customer mapped, its recurring invoice holding two
of the MSP's own lines and three of the daemon's, 10 % of the counts changed since the last
sync. Timed: mapping refresh, product planning, line planning (with the seat totals the guard
reads) and one-time charge planning, as `jobs._plan` calls them.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bench.results import save_section
from sync_daemon.connectors.syncro import Product, Schedule, ScheduleLine
from sync_daemon.invoices.charges import ChargeInputs, plan_charges
from sync_daemon.invoices.plan import LineInputs, plan_lines
from sync_daemon.mapping.refresh import plan_refresh
from sync_daemon.products.plan import ProductRules, plan_products
from sync_daemon.state import ManagedLine, ManagedProduct, VendorCustomer
from sync_daemon.vendor import SourceCustomer, SourceProduct, Usage

VENDOR = "cloudiq"
MOTION = "Monthly"
SKUS = 200
OWN_LINES = 2
VENDOR_LINES = 3


@dataclass(frozen=True)
class _Inputs:
    """The plan step's inputs, built once for every timed run."""

    now: datetime
    rows: list[VendorCustomer]
    seen: list[SourceCustomer]
    source_products: list[SourceProduct]
    managed_products: dict[str, ManagedProduct]
    products: list[Product]
    usages: list[Usage]
    managed_lines: list[ManagedLine]
    all_line_ids: frozenset[int]
    schedules: dict[int, Schedule | None]
    lines: int


def time_planning(customers: int, *, repeat: int = 5, seed: int = 11) -> dict[str, Any]:
    """Build the inputs once, then plan `repeat` times; CPU seconds of the plan step only.

    The median is the result; min and max show the machine's noise (on a shared virtual
    machine one run of the same work has taken up to 1.6 times another).
    """
    inputs = _build(customers, seed)
    timings, changes = [], 0
    for _ in range(repeat):
        cpu_s, changes = _plan_once(inputs, customers)
        timings.append(cpu_s)
    return {"customers": customers, "lines": inputs.lines, "skus": SKUS,
            "cpu_s": statistics.median(timings), "cpu_s_min": min(timings),
            "cpu_s_max": max(timings), "repeat": repeat, "changes": changes,
            "reference_s": _reference_loop()}


def _reference_loop() -> float:
    """CPU seconds of a fixed pure-Python loop (ten million additions): how fast this machine
    runs Python just now, to read the planning time against."""
    started = time.process_time()
    total = 0
    for number in range(10_000_000):
        total += number
    return time.process_time() - started


def _build(customers: int, seed: int) -> _Inputs:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    skus = [f"SKU{i:04d}:P1M" for i in range(SKUS)]
    source_products = [SourceProduct(sku, f"Product {sku}", Decimal("3.00"), Decimal("3.60"))
                       for sku in skus]
    products = [Product(id=500 + i, name=f"PC_{sku}", description=f"Product {sku}",
                        price_cost=Decimal("3.00"), price_retail=Decimal("3.60"), taxable=True,
                        disabled=False, maintain_stock=False) for i, sku in enumerate(skus)]
    product_of = {sku: 500 + i for i, sku in enumerate(skus)}
    managed_products = {sku: ManagedProduct(vendor=VENDOR, sku=sku,
                                            syncro_product_id=product_of[sku], origin="created",
                                            name=f"PC_{sku}", last_price_cost=Decimal("3.00"),
                                            last_price_retail=Decimal("3.60"))
                        for sku in skus}
    rows: list[VendorCustomer] = []
    seen: list[SourceCustomer] = []
    usages: list[Usage] = []
    managed_lines: list[ManagedLine] = []
    schedules: dict[int, Schedule | None] = {}
    line_id = 88_000_000
    for index in range(customers):
        customer_id, schedule_id = str(10_000 + index), 4_100_000 + index
        name = f"Customer {index:06d}"
        rows.append(VendorCustomer(vendor=VENDOR, vendor_customer_id=customer_id,
                                   billing_motion=MOTION, name=name, status="mapped",
                                   psa_customer_id=20_000 + index, psa_customer_name=name,
                                   schedule_id=schedule_id, last_seen_at=now))
        seen.append(SourceCustomer(customer_id, name, MOTION))
        lines = []
        for position in range(OWN_LINES):
            line_id += 1
            lines.append(_line(line_id, schedule_id, 1, name="Managed Services",
                               quantity=Decimal(12), retail=Decimal("45.00"), cost=Decimal(0),
                               position=position))
        for position, sku in enumerate(rng.sample(skus, VENDOR_LINES), OWN_LINES):
            line_id += 1
            quantity = rng.randint(1, 120)
            lines.append(_line(line_id, schedule_id, product_of[sku], name=f"PC_{sku}",
                               quantity=Decimal(quantity), retail=Decimal("3.60"),
                               cost=Decimal("3.00"), position=position))
            managed_lines.append(ManagedLine(
                syncro_line_id=line_id, schedule_id=schedule_id, vendor=VENDOR,
                vendor_customer_id=customer_id, billing_motion=MOTION, sku=sku,
                syncro_product_id=product_of[sku], last_retail=Decimal("3.60"),
                last_cost=Decimal("3.00"), last_quantity=Decimal(quantity), origin="created"))
            changed = quantity + rng.randint(1, 5) if rng.random() < 0.10 else quantity
            usages.append(Usage(customer_id, sku, changed, MOTION))
        schedules[schedule_id] = Schedule(id=schedule_id, customer_id=20_000 + index,
                                          name="Monthly Services", frequency="Monthly",
                                          paused=False, next_run=None, lines=tuple(lines))
    all_line_ids = frozenset(line.syncro_line_id for line in managed_lines)

    return _Inputs(now, rows, seen, source_products, managed_products, products, usages,
                   managed_lines, all_line_ids, schedules, line_id - 88_000_000)


def _plan_once(inputs: _Inputs, customers: int) -> tuple[float, int]:
    """One plan of the inputs, as `jobs._plan` does it: (CPU seconds, changes planned)."""
    started = time.process_time()
    refresh = plan_refresh(VENDOR, inputs.rows, inputs.seen, inputs.now)
    product_changes, targets = plan_products(inputs.source_products, inputs.managed_products,
                                             inputs.products,
                                             ProductRules("PC_", new_products_taxable=True))
    line_changes, _, seats = plan_lines(LineInputs(
        mappings=inputs.rows, usages=inputs.usages, skipped=frozenset(), products=targets,
        managed_lines=inputs.managed_lines, all_managed_line_ids=inputs.all_line_ids,
        schedules=inputs.schedules))
    charge_changes, _ = plan_charges(ChargeInputs(
        mappings=inputs.rows, skipped=frozenset(), products=targets, schedules=inputs.schedules,
        charges=[], settled=frozenset(), pending=frozenset()))
    cpu_s = time.process_time() - started
    if len(refresh.seen) != customers or seats.before <= 0:
        raise AssertionError("the planning inputs are not what this benchmark means to time")
    return cpu_s, len(product_changes) + len(line_changes) + len(charge_changes)


def _line(line_id: int, schedule_id: int, product_id: int, *, name: str, quantity: Decimal,
          retail: Decimal, cost: Decimal, position: int) -> ScheduleLine:
    return ScheduleLine(id=line_id, schedule_id=schedule_id, product_id=product_id, name=name,
                        description=None, quantity=quantity, retail=retail, cost=cost,
                        taxable=product_id != 1, one_time_charge=False, position=position)


TITLE = "Planning (issue 7)"


def report(result: dict[str, Any], command: str) -> str:
    """The result as Markdown, with the machine and the date."""
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}, {platform.system()}")
    met = "met" if result["cpu_s"] < 2 else "**missed**"
    return "\n".join([
        f"## {TITLE}",
        "",
        f"Run `{command}` on {datetime.now(UTC):%Y-%m-%d} ({machine}).",
        "",
        (f"The pure plan step of one pass (mapping refresh, products, recurring lines with the "
         f"seat totals, one-time charges) on {result['customers']:,} customers: "
         f"{result['lines']:,} lines on {result['customers']:,} recurring invoices, "
         f"{result['skus']} SKUs, 10 % of the counts changed ({result['changes']:,} changes "
         f"planned). CPU seconds, the median of {result['repeat']} runs on the same inputs: "
         f"**{result['cpu_s']:.2f} s** ({result['cpu_s_min']:.2f} to "
         f"{result['cpu_s_max']:.2f} s). For scale, this machine ran ten million additions of "
         f"a pure-Python loop in {result['reference_s']:.2f} s CPU just after."),
        "",
        f"Target: under 2 s of CPU for {result['customers']:,} customers: {met}.",
        "",
    ])


def main() -> None:
    """Time planning, print the result and save it as its own section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("customers", nargs="?", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    result = time_planning(args.customers, repeat=args.repeat)
    text = report(result, f"python -m bench.planning {args.customers} --repeat {args.repeat}")
    print(text)
    if not args.no_save:
        save_section(TITLE, text)


if __name__ == "__main__":
    main()
