"""Recurring-invoice lines as a pure function of vendor counts, the mapping and Syncro's lines.

For each mapped customer the schedule holds exactly one line per SKU it uses, with the vendor's
count. Only lines of managed products are the daemon's; every other line is left alone. A
quantity edited by hand is set back; a price edited by hand is kept and reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sync_daemon.connectors.syncro import Schedule, ScheduleLine
from sync_daemon.errors import InvariantError
from sync_daemon.plan import (
    AdoptLine,
    CreateLine,
    CustomerRef,
    DeleteLine,
    LineChange,
    Notice,
    SeatTotals,
    UpdateLine,
    number,
)
from sync_daemon.products.plan import ProductTarget
from sync_daemon.state import ManagedLine, VendorCustomer
from sync_daemon.vendor import Usage

CustomerKey = tuple[str, str]
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class LineInputs:
    """Everything line planning reads, already fetched.

    Attributes:
        mappings: the vendor's mapping-table rows.
        usages: the vendor's counts this pass.
        skipped: customers whose vendor data was unusable; nothing of theirs is planned.
        products: the product each SKU's lines use, after product changes.
        managed_lines: every line the daemon manages for this vendor.
        all_managed_line_ids: lines any vendor manages (never adopted twice).
        schedules: each needed schedule with its lines; None when Syncro no longer has it.
    """

    mappings: Sequence[VendorCustomer]
    usages: Sequence[Usage]
    skipped: frozenset[CustomerKey]
    products: Mapping[str, ProductTarget]
    managed_lines: Sequence[ManagedLine]
    all_managed_line_ids: frozenset[int]
    schedules: Mapping[int, Schedule | None]
    lines: Mapping[tuple[int, int], ScheduleLine] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Every line by (schedule id, line id), built once: planning looks lines up, never
        # scans a recurring invoice for one.
        object.__setattr__(self, "lines", _lines_by_id(self.schedules))


def billed_quantity(usage: Usage, mapping: VendorCustomer) -> int:
    """max(count - included, minimum, 0); not billable (trial, inactive) is always 0."""
    if not usage.billable:
        return 0
    return max(usage.quantity - (mapping.included or 0), mapping.minimum or 0, 0)


def plan_lines(inputs: LineInputs) -> tuple[list[LineChange], list[Notice], SeatTotals]:
    """The line changes for every mapped customer, the notices, and the seat totals."""
    _check_owned_lines(inputs)
    changes: list[LineChange] = []
    notices: list[Notice] = []
    usages = _usages_by_customer(inputs.usages)
    managed = _managed_by_customer(inputs.managed_lines)
    # Lines already owned, plus those adopted below: two customers on one recurring invoice
    # must never both take over the same line.
    claimed = set(inputs.all_managed_line_ids)
    for mapping in sorted(inputs.mappings, key=lambda m: (m.name.casefold(), m.vendor_customer_id)):
        key = (mapping.vendor_customer_id, mapping.billing_motion)
        if key in inputs.skipped:
            continue
        planner = _CustomerPlanner(inputs, mapping, managed.get(key, []), claimed)
        if mapping.status == "not_mapped":
            notices.append(Notice("warning", "unmapped", "not mapped: nothing billed",
                                  customer=mapping.name))
            continue
        if mapping.status == "detached":
            changes += planner.zero_all("the customer is gone from the vendor (detached)")
            notices.append(Notice("warning", "detached",
                                  "gone from the vendor: its lines are set to 0",
                                  customer=planner.ref.label))
            continue
        found, more = planner.plan(usages.get(key, []))
        changes += found
        notices += more
    return changes, notices, seat_totals(inputs, changes)


def seat_totals(inputs: LineInputs, changes: Sequence[LineChange]) -> SeatTotals:
    """Seats on managed lines before and after `changes`, and customers taken to zero."""
    # After the changes only the lines they touch differ, so the totals after are the totals
    # before moved by those lines alone.
    touched: dict[object, tuple[CustomerKey, Decimal] | None] = {}
    labels: dict[CustomerKey, str] = {}
    for change in changes:
        customer = (change.customer.vendor_customer_id, change.customer.billing_motion)
        labels[customer] = change.customer.label
        match change:
            case UpdateLine(line_id=line_id, quantity_after=int() as quantity):
                touched[line_id] = (customer, Decimal(quantity))
            case UpdateLine(line_id=line_id, quantity_before=quantity):
                # A price update confirms the quantity the line holds (apply records it too).
                touched[line_id] = (customer, quantity)
            case DeleteLine(line_id=line_id):
                touched[line_id] = None
            case AdoptLine(line_id=line_id, quantity=quantity):
                touched[line_id] = (customer, quantity)
            case CreateLine(quantity=quantity, schedule_id=schedule_id, sku=sku):
                touched[("new", schedule_id, customer, sku)] = (customer, Decimal(quantity))
    # "Before" is what the daemon last billed, not a hand edit it is about to set back:
    # correcting a typed 99 back to 9 is not a 90 % drop.
    totals_before: dict[CustomerKey, Decimal] = {}
    touched_before: dict[object, tuple[CustomerKey, Decimal]] = {}
    lines = inputs.lines
    for record in inputs.managed_lines:
        if (record.schedule_id, record.syncro_line_id) not in lines:
            continue
        customer = (record.vendor_customer_id, record.billing_motion)
        totals_before[customer] = totals_before.get(customer, ZERO) + record.last_quantity
        if record.syncro_line_id in touched:
            touched_before[record.syncro_line_id] = (customer, record.last_quantity)
    totals_after = dict(totals_before)
    for key, now in touched.items():
        if (was := touched_before.get(key)) is not None:
            totals_after[was[0]] -= was[1]
        if now is not None:
            totals_after[now[0]] = totals_after.get(now[0], ZERO) + now[1]
    zeroed = sorted(labels.get(c) or "|".join(c) for c, total in totals_before.items()
                    if total > 0 and totals_after.get(c, 0) == 0)
    return SeatTotals(before=int(sum(totals_before.values())),
                      after=int(sum(totals_after.values())), zeroed_customers=tuple(zeroed))


class _CustomerPlanner:
    """Plans one mapped customer's lines (kept as a class only to share its inputs)."""

    __slots__ = ("_ref", "claimed", "inputs", "managed", "mapping")

    def __init__(self, inputs: LineInputs, mapping: VendorCustomer,
                 managed: Sequence[ManagedLine], claimed: set[int]) -> None:
        self.inputs = inputs
        self.mapping = mapping
        self.managed = managed
        self.claimed = claimed
        self._ref: CustomerRef | None = None

    @property
    def ref(self) -> CustomerRef:
        """The customer as changes and notices name it; built only for those (most customers
        of a pass need neither)."""
        if self._ref is None:
            m = self.mapping
            self._ref = CustomerRef(m.vendor_customer_id, m.name, m.psa_customer_name or "",
                                    m.billing_motion)
        return self._ref

    def plan(self, usages: Sequence[Usage]) -> tuple[list[LineChange], list[Notice]]:
        schedule_id = self.mapping.schedule_id
        schedule = self.inputs.schedules.get(schedule_id) if schedule_id is not None else None
        if schedule is None:
            return [], [self._schedule_missing(schedule_id)]
        present, gone, elsewhere = self._current(schedule)
        changes: list[LineChange] = (list(self._leave_other_schedules(schedule.id)) if elsewhere
                                     else [])
        notices: list[Notice] = []
        desired: dict[str, int] = {}
        for u in usages:
            desired[u.sku] = billed_quantity(u, self.mapping)
            if not u.billable:
                notices.append(Notice("warning", "not_billed",
                                      f"{u.sku}: {u.note or 'not billable'}; billed 0",
                                      customer=self.ref.label))
        products = self.inputs.products
        for sku in sorted(desired):
            target = products.get(sku)
            if target is None:
                notices.append(Notice("error", "missing_price", f"{sku}: no product to bill",
                                      customer=self.ref.label))
                continue
            found = present.get(sku)
            if found is None:
                changes += self._add(schedule, sku, desired[sku], target, gone.get(sku))
            elif found[1].product_id != target.product_id:
                # The product was recreated (deleted in Syncro): move the line to the new one.
                record, line = present.pop(sku)
                changes.append(DeleteLine(self.ref, record.schedule_id, line.id, sku,
                                          line.quantity, "its product was recreated"))
                changes += self._add(schedule, sku, desired[sku], target, None)
            elif _differs(found[1], desired[sku], target):  # else the usual case: nothing to do
                more_changes, more = self._update(*found, desired[sku], target)
                changes += more_changes
                notices += more
        if present.keys() <= desired.keys():
            return changes, notices
        for sku, (record, line) in sorted(present.items()):
            if sku not in desired:
                reason = (f"package changed to {', '.join(sorted(desired))}" if desired
                          else "no longer used at the vendor")
                changes.append(DeleteLine(self.ref, record.schedule_id, line.id, sku,
                                          line.quantity, reason))
        return changes, notices

    def _schedule_missing(self, schedule_id: int | None) -> Notice:
        """The customer's recurring invoice is gone: nothing of it can be billed or written."""
        gone = sum(1 for record in self.managed if record.schedule_id == schedule_id)
        lines = (f"; the {gone} line(s) the daemon billed on it went with it" if gone else "")
        command = (f"sync-daemon mapping map --vendor {self.mapping.vendor} "
                   f"{self.mapping.vendor_customer_id} PSA_CUSTOMER --schedule ID")
        return Notice("error", "schedule_missing",
                      f"recurring invoice {schedule_id} no longer exists in Syncro{lines}; "
                      f"nothing is billed until the customer is mapped to another one "
                      f"({command})", customer=self.ref.label)

    def zero_all(self, reason: str) -> list[LineChange]:
        changes: list[LineChange] = []
        for record in self.managed:
            line = self.inputs.lines.get((record.schedule_id, record.syncro_line_id))
            if line is not None and line.quantity != 0:
                changes.append(UpdateLine(self.ref, record.schedule_id, line.id, record.sku,
                                          reason, quantity_before=line.quantity,
                                          quantity_after=0))
        return changes

    def _current(self, schedule: Schedule) -> tuple[
        dict[str, tuple[ManagedLine, ScheduleLine]], dict[str, ManagedLine], bool,
    ]:
        """Managed lines on the mapped schedule (still there, or deleted in Syncro), and whether
        any is on another schedule."""
        present: dict[str, tuple[ManagedLine, ScheduleLine]] = {}
        gone: dict[str, ManagedLine] = {}
        elsewhere = False
        lines = self.inputs.lines
        for record in self.managed:
            if record.schedule_id != schedule.id:
                elsewhere = True
                continue
            line = lines.get((schedule.id, record.syncro_line_id))
            if line is None:
                gone[record.sku] = record
            else:
                present[record.sku] = (record, line)
        return present, gone, elsewhere

    def _leave_other_schedules(self, schedule_id: int) -> Iterator[LineChange]:
        """The customer was mapped to another recurring invoice: remove its old lines."""
        for record in self.managed:
            if record.schedule_id == schedule_id:
                continue
            line = self.inputs.lines.get((record.schedule_id, record.syncro_line_id))
            if line is not None:
                yield DeleteLine(self.ref, record.schedule_id, line.id, record.sku, line.quantity,
                                 f"the customer is now billed on recurring invoice {schedule_id}")

    def _update(self, record: ManagedLine, line: ScheduleLine, quantity: int,
                target: ProductTarget) -> tuple[list[LineChange], list[Notice]]:
        """The update of a line that `_differs` from what the vendor and price list say."""
        notices: list[Notice] = []
        reasons: list[str] = []
        quantity_after: int | None = None
        if line.quantity != quantity:
            quantity_after = quantity
            if line.quantity != record.last_quantity:
                reasons.append(f"quantity set back: changed by hand to {number(line.quantity)} in "
                               f"Syncro, the vendor counts {quantity}")
            else:
                reasons.append(f"the vendor's count changed from {number(line.quantity)} "
                               f"to {quantity}")
        retail_after = self._price(line.retail, record.last_retail, target.retail, "retail",
                                   notices)
        cost_after = self._price(line.cost, record.last_cost, target.cost, "cost", notices)
        if retail_after is not None or cost_after is not None:
            reasons.append("the price list changed")
        if not reasons:
            return [], notices
        return [UpdateLine(
            self.ref, record.schedule_id, line.id, record.sku, "; ".join(reasons),
            quantity_before=line.quantity, quantity_after=quantity_after,
            retail_before=line.retail if retail_after is not None else None,
            retail_after=retail_after,
            cost_before=line.cost if cost_after is not None else None, cost_after=cost_after,
        )], notices

    def _price(self, current: Decimal, last_written: Decimal, listed: Decimal, what: str,
               notices: list[Notice]) -> Decimal | None:
        """The new price, or None; a price changed by hand is kept and reported."""
        if current == listed:
            return None
        if current == last_written:
            return listed
        notices.append(Notice(
            "warning", "price_kept",
            f"{what} {current} set by hand kept (price list {listed})", customer=self.ref.label))
        return None

    def _add(self, schedule: Schedule, sku: str, quantity: int, target: ProductTarget,
             gone: ManagedLine | None) -> list[LineChange]:
        # One-time charges (the daemon's own or the MSP's) are never a recurring line.
        adoptable = [line for line in schedule.lines
                     if target.product_id is not None and line.product_id == target.product_id
                     and not line.one_time_charge and line.id not in self.claimed]
        if adoptable:
            line = min(adoptable, key=lambda candidate: candidate.id)
            self.claimed.add(line.id)
            changes: list[LineChange] = [AdoptLine(
                self.ref, schedule.id, line.id, sku, target.product_id or 0, line.quantity,
                line.retail, line.cost, target.retail, target.cost,
                reason=f"a line of {target.name} was already on the recurring invoice")]
            if line.quantity != quantity:
                changes.append(UpdateLine(
                    self.ref, schedule.id, line.id, sku,
                    f"the vendor counts {quantity}", quantity_before=line.quantity,
                    quantity_after=quantity))
            return changes
        if quantity == 0:
            return []
        reason = ("the line was deleted in Syncro; added again" if gone is not None
                  else "new for this customer")
        return [CreateLine(
            self.ref, schedule.id, sku, target.product_id, target.name, quantity, target.retail,
            target.cost, target.taxable, tuple(line.id for line in schedule.lines), reason,
            replaces_line_id=gone.syncro_line_id if gone is not None else None)]


def _differs(line: ScheduleLine, quantity: int, target: ProductTarget) -> bool:
    """Whether a line of the daemon's bills another count or price than it should."""
    return line.quantity != quantity or line.retail != target.retail or line.cost != target.cost


def _check_owned_lines(inputs: LineInputs) -> None:
    """Stop the pass on a line of the daemon's whose product or count Syncro sends as null.

    Read as "no product" it would look like a line of a deleted product (removed and added
    again); read as 0 it would be set back like a hand edit of a count nobody can see. Neither
    is safe to act on, and skipping the line would make it look deleted (added twice).

    Raises:
        InvariantError: naming the line, its recurring invoice, the customer and the field.
    """
    for record in inputs.managed_lines:
        line = inputs.lines.get((record.schedule_id, record.syncro_line_id))
        if line is None or (line.product_id is not None and not line.nulls):
            continue
        nulls = sorted({*line.nulls, *(("product_id",) if line.product_id is None else ())}
                       & {"product_id", "quantity"})
        if nulls:
            who = next((m.name for m in inputs.mappings
                        if (m.vendor_customer_id, m.billing_motion)
                        == (record.vendor_customer_id, record.billing_motion)),
                       record.vendor_customer_id)
            raise InvariantError(
                f"syncro: line {line.id} of recurring invoice {record.schedule_id} (the "
                f"daemon's {record.sku} line for {who}) has a null {' and '.join(nulls)}; "
                "nothing was written this pass. Fix the line in Syncro, or delete it (the "
                "next sync adds it again)")


def _usages_by_customer(usages: Sequence[Usage]) -> dict[CustomerKey, list[Usage]]:
    grouped: defaultdict[CustomerKey, list[Usage]] = defaultdict(list)
    for usage in usages:
        grouped[usage.customer_id, usage.billing_motion].append(usage)
    return grouped


def _managed_by_customer(lines: Sequence[ManagedLine]) -> dict[CustomerKey, list[ManagedLine]]:
    grouped: defaultdict[CustomerKey, list[ManagedLine]] = defaultdict(list)
    for line in lines:
        grouped[line.vendor_customer_id, line.billing_motion].append(line)
    return grouped


def _lines_by_id(
    schedules: Mapping[int, Schedule | None],
) -> dict[tuple[int, int], ScheduleLine]:
    """Every line by (schedule id, line id): one lookup each instead of a scan each."""
    return {(schedule_id, line.id): line for schedule_id, schedule in schedules.items()
            if schedule is not None for line in schedule.lines}
