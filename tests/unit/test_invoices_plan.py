"""`plan_lines`, `billed_quantity` and `seat_totals`: the recurring-line rules, table by table.

The property tests at the end apply a plan with a small simulator of Syncro and the state
(`apply_lines`) and plan again: the second plan must be empty.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sync_daemon.connectors.syncro import Schedule, ScheduleLine
from sync_daemon.invoices.plan import LineInputs, billed_quantity, plan_lines, seat_totals
from sync_daemon.plan import (
    AdoptLine,
    CreateLine,
    CustomerRef,
    DeleteLine,
    FieldChange,
    LineChange,
    Notice,
    SeatTotals,
    UpdateLine,
    describe,
    money,
)
from sync_daemon.products.plan import ProductTarget
from sync_daemon.state import ManagedLine, VendorCustomer
from sync_daemon.state.records import VendorCustomerStatus
from sync_daemon.vendor import Usage
from tests.support.builders import (
    D,
    line,
    line_inputs,
    managed_line,
    schedule,
    target,
    usage,
    vendor_customer,
)

A = target("A", 101, retail="2.00", cost="1.00")
B = target("B", 102, retail="5.00", cost="3.00")
PRODUCTS = (A, B)
C1 = vendor_customer("c1", name="Acme Vendor", psa_customer_name="Acme Syncro", schedule_id=1)
REF = CustomerRef("c1", "Acme Vendor", "Acme Syncro", "")
LABEL = "Acme Vendor → Acme Syncro"
FOREIGN = line(90, 1, 999, quantity=4, name="Hand-made service")  # a product the daemon never made
FREE_TEXT = line(91, 1, None, quantity=1, name="Labour")


def plan(inputs: LineInputs) -> tuple[list[LineChange], list[Notice]]:
    changes, notices, _ = plan_lines(inputs)
    return changes, notices


def kinds(notices: Sequence[Notice]) -> list[tuple[str, str]]:
    return [(n.level, n.kind) for n in notices]


# ------------------------------------------------------------------ billed quantity


@pytest.mark.parametrize(("count", "included", "minimum", "billable", "expected"), [
    (10, None, None, True, 10),
    (10, 3, None, True, 7),
    (10, 10, None, True, 0),
    (10, 12, None, True, 0),
    (10, 12, 5, True, 5),
    (2, None, 5, True, 5),
    (0, None, 5, True, 5),
    (0, None, None, True, 0),
    (10, 0, 0, True, 10),
    (8, 3, 4, True, 5),
    (8, 3, 6, True, 6),
    (-3, None, None, True, 0),
    (-3, 2, None, True, 0),
    (10, None, 20, False, 0),
    (10, None, None, False, 0),
    (0, None, 3, False, 0),
])
def test_billed_quantity_is_count_minus_included_at_least_minimum_never_negative(
        count: int, included: int | None, minimum: int | None, billable: bool,
        expected: int) -> None:
    mapping = vendor_customer("c1", minimum=minimum, included=included)

    assert billed_quantity(usage("c1", "A", count, billable=billable), mapping) == expected


# ------------------------------------------------------------------ new lines


def test_a_used_sku_without_a_line_gets_one_with_the_vendors_count() -> None:
    inputs = line_inputs(mappings=[C1], usages=[usage("c1", "A", 7)], products=PRODUCTS,
                         schedules=[schedule(1, lines=[FOREIGN, FREE_TEXT])])

    changes, notices = plan(inputs)

    assert changes == [CreateLine(REF, 1, "A", 101, "PC_A", 7, D("2.00"), D("1.00"), True,
                                  (90, 91), "new for this customer")]
    assert notices == []


@pytest.mark.parametrize("the_usage", [
    usage("c1", "A", 0),
    usage("c1", "A", 9, billable=False, note="on trial"),
    usage("c1", "A", -2),
])
def test_quantity_zero_without_a_line_creates_no_line(the_usage: Usage) -> None:
    inputs = line_inputs(mappings=[C1], usages=[the_usage], products=PRODUCTS,
                         schedules=[schedule(1)])

    changes, _ = plan(inputs)

    assert changes == []


def test_minimum_and_included_decide_the_created_quantity() -> None:
    mapping = dataclasses.replace(C1, minimum=10, included=2)
    inputs = line_inputs(mappings=[mapping], usages=[usage("c1", "A", 5), usage("c1", "B", 40)],
                         products=PRODUCTS, schedules=[schedule(1)])

    changes, _ = plan(inputs)

    assert [(c.sku, c.quantity) for c in changes if isinstance(c, CreateLine)] == [
        ("A", 10), ("B", 38)]


def test_a_product_new_this_run_gives_a_create_line_without_product_id() -> None:
    new = target("C", None, name="PC_C", taxable=False, retail="7", cost="4")
    inputs = line_inputs(mappings=[C1], usages=[usage("c1", "C", 3)], products=[new],
                         schedules=[schedule(1, lines=[line(50, 1, 101)])])

    changes, _ = plan(inputs)

    assert changes == [CreateLine(REF, 1, "C", None, "PC_C", 3, D(7), D(4), False, (50,),
                                  "new for this customer")]


def test_a_sku_without_a_product_is_an_error_not_a_line() -> None:
    inputs = line_inputs(mappings=[C1], usages=[usage("c1", "Z", 3)], products=PRODUCTS,
                         schedules=[schedule(1)])

    changes, notices = plan(inputs)

    assert changes == []
    assert notices == [Notice("error", "missing_price", "Z: no product to bill", LABEL)]


def test_a_not_billable_usage_is_reported_and_sets_its_line_to_zero() -> None:
    inputs = line_inputs(mappings=[dataclasses.replace(C1, minimum=5)],
                         usages=[usage("c1", "A", 9, billable=False, note="on trial")],
                         products=PRODUCTS,
                         managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=5)],
                         schedules=[schedule(1, lines=[line(10, 1, 101, quantity=5)])])

    changes, notices = plan(inputs)

    assert [(c.line_id, c.quantity_after) for c in changes if isinstance(c, UpdateLine)] == [
        (10, 0)]
    assert notices == [Notice("warning", "not_billed", "A: on trial; billed 0", LABEL)]


# ------------------------------------------------------------------ quantities


def one_managed_a(*, line_quantity: int | str, last_quantity: int | str,
                  line_retail: str = "2.00", last_retail: str = "2.00",
                  line_cost: str = "1.00", last_cost: str = "1.00",
                  count: int = 5, products: Sequence[ProductTarget] = PRODUCTS) -> LineInputs:
    """c1 with one managed line 10 of SKU A on schedule 1 (plus lines that are not ours)."""
    return line_inputs(
        mappings=[C1], usages=[usage("c1", "A", count)], products=products,
        managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=last_quantity,
                                    retail=last_retail, cost=last_cost)],
        schedules=[schedule(1, lines=[FOREIGN, FREE_TEXT, line(
            10, 1, 101, quantity=line_quantity, retail=line_retail, cost=line_cost)])])


def test_a_line_that_matches_the_vendor_plans_nothing() -> None:
    assert plan(one_managed_a(line_quantity=5, last_quantity=5)) == ([], [])


@pytest.mark.parametrize(("line_quantity", "last_quantity", "count", "words"), [
    (5, 5, 7, "the vendor's count changed from 5 to 7"),
    (5, 5, 0, "the vendor's count changed from 5 to 0"),
    (9, 5, 5, "quantity set back: changed by hand to 9 in Syncro, the vendor counts 5"),
    (9, 5, 7, "quantity set back: changed by hand to 9 in Syncro, the vendor counts 7"),
    ("5.5", 5, 5, "quantity set back: changed by hand to 5.5 in Syncro"),
])
def test_the_quantity_follows_the_vendor_and_a_hand_edit_is_set_back(
        line_quantity: int | str, last_quantity: int, count: int, words: str) -> None:
    inputs = one_managed_a(line_quantity=line_quantity, last_quantity=last_quantity, count=count)

    changes, notices = plan(inputs)

    assert len(changes) == 1
    change = changes[0]
    assert isinstance(change, UpdateLine)
    assert (change.line_id, change.quantity_before, change.quantity_after) == (
        10, D(line_quantity), count)
    assert (change.retail_after, change.cost_after) == (None, None)
    assert words in change.reason
    assert notices == []


@pytest.mark.parametrize("what", ["retail", "cost"])
@pytest.mark.parametrize(("on_line", "last_written", "listed", "outcome"), [
    ("2.00", "2.00", "2.00", "same"),
    ("2.00", "2.00", "2.50", "updated"),  # still the daemon's price: follow the list
    ("3.00", "2.00", "2.50", "kept"),  # set by hand: keep it, warn
    ("3.00", "2.00", "2.00", "kept"),
    ("2.50", "2.00", "2.50", "same"),  # already at the list price
    ("2.5", "2.50", "2.75", "updated"),
])
def test_a_price_is_updated_only_while_the_line_has_the_daemons_last_price(
        what: str, on_line: str, last_written: str, listed: str, outcome: str) -> None:
    if what == "retail":
        inputs = one_managed_a(line_quantity=5, last_quantity=5,
                               products=[target("A", 101, retail=listed, cost="1.00")],
                               line_retail=on_line, last_retail=last_written)
    else:
        inputs = one_managed_a(line_quantity=5, last_quantity=5,
                               products=[target("A", 101, retail="2.00", cost=listed)],
                               line_cost=on_line, last_cost=last_written)

    changes, notices = plan(inputs)

    if outcome == "updated":
        assert len(changes) == 1
        change = changes[0]
        assert isinstance(change, UpdateLine)
        assert change.quantity_after is None
        assert (getattr(change, f"{what}_before"), getattr(change, f"{what}_after")) == (
            D(on_line), D(listed))
        other = "cost" if what == "retail" else "retail"
        assert (getattr(change, f"{other}_before"), getattr(change, f"{other}_after")) == (
            None, None)
        assert change.reason == "the price list changed"
    else:
        assert changes == []
    kept = [Notice("warning", "price_kept",
                   f"{what} {on_line} set by hand kept (price list {listed})", LABEL)]
    assert notices == (kept if outcome == "kept" else [])


def test_quantity_and_price_changes_share_one_update() -> None:
    inputs = one_managed_a(line_quantity=5, last_quantity=5, count=6,
                           products=[target("A", 101, retail="2.20", cost="1.10")])

    changes, _ = plan(inputs)

    assert changes == [UpdateLine(
        REF, 1, 10, "A", "the vendor's count changed from 5 to 6; the price list changed",
        quantity_before=D(5), quantity_after=6, retail_before=D("2.00"),
        retail_after=D("2.20"), cost_before=D("1.00"), cost_after=D("1.10"))]


# ------------------------------------------------------------------ lines that are not ours


@pytest.mark.parametrize("mapping", [
    C1, dataclasses.replace(C1, status="detached"), dataclasses.replace(C1, status="not_mapped"),
], ids=["mapped", "detached", "not_mapped"])
def test_lines_of_unmanaged_products_are_never_touched(mapping: VendorCustomer) -> None:
    other_vendors_line = line(92, 1, 101, quantity=8)
    inputs = line_inputs(
        mappings=[mapping], usages=[usage("c1", "A", 0), usage("c1", "B", 2)],
        products=PRODUCTS, other_managed_line_ids=[92],
        schedules=[schedule(1, lines=[FOREIGN, FREE_TEXT, other_vendors_line])])

    changes, _ = plan(inputs)

    assert {getattr(c, "line_id", None) for c in changes}.isdisjoint({90, 91, 92})
    assert all(not isinstance(c, AdoptLine | DeleteLine) for c in changes)


def test_a_line_another_vendor_manages_is_not_adopted() -> None:
    inputs = line_inputs(mappings=[C1], usages=[usage("c1", "A", 3)], products=PRODUCTS,
                         other_managed_line_ids=[92],
                         schedules=[schedule(1, lines=[line(92, 1, 101, quantity=3)])])

    changes, _ = plan(inputs)

    assert [type(c) for c in changes] == [CreateLine]


# ------------------------------------------------------------------ adoption


@pytest.mark.parametrize(("count", "update_to"), [(3, None), (5, 5), (0, 0)])
def test_an_unmanaged_line_of_the_managed_product_is_adopted_with_its_price(
        count: int, update_to: int | None) -> None:
    existing = line(60, 1, 101, quantity=3, retail="9.99", cost="0.50")
    inputs = line_inputs(mappings=[C1], usages=[usage("c1", "A", count)], products=PRODUCTS,
                         schedules=[schedule(1, lines=[FOREIGN, existing])])

    changes, notices = plan(inputs)

    assert changes[0] == AdoptLine(
        REF, 1, 60, "A", 101, D(3), D("9.99"), D("0.50"), D("2.00"), D("1.00"),
        reason="a line of PC_A was already on the recurring invoice")
    updates = [(c.line_id, c.quantity_after, c.retail_after, c.cost_after)
               for c in changes[1:] if isinstance(c, UpdateLine)]
    assert updates == ([] if update_to is None else [(60, update_to, None, None)])
    assert len(changes) == 1 + len(updates)
    assert notices == []


def test_the_oldest_unmanaged_line_is_adopted_and_the_others_left() -> None:
    inputs = line_inputs(mappings=[C1], usages=[usage("c1", "A", 1)], products=PRODUCTS,
                         schedules=[schedule(1, lines=[line(62, 1, 101), line(61, 1, 101)])])

    changes, _ = plan(inputs)

    assert [(type(c), c.line_id) for c in changes if isinstance(c, AdoptLine)] == [
        (AdoptLine, 61)]
    assert len(changes) == 1


def test_a_product_new_this_run_adopts_nothing() -> None:
    inputs = line_inputs(mappings=[C1], usages=[usage("c1", "C", 2)],
                         products=[target("C", None)],
                         schedules=[schedule(1, lines=[line(60, 1, None)])])

    changes, _ = plan(inputs)

    assert [type(c) for c in changes] == [CreateLine]


# ------------------------------------------------------------------ deleted, package changes


@pytest.mark.parametrize(("count", "expected"), [(4, 1), (0, 0)])
def test_a_managed_line_deleted_in_syncro_is_created_again(count: int, expected: int) -> None:
    inputs = line_inputs(mappings=[C1], usages=[usage("c1", "A", count)], products=PRODUCTS,
                         managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=4)],
                         schedules=[schedule(1, lines=[FOREIGN])])

    changes, _ = plan(inputs)

    assert changes == [CreateLine(REF, 1, "A", 101, "PC_A", 4, D("2.00"), D("1.00"), True,
                                  (90,), "the line was deleted in Syncro; added again",
                                  replaces_line_id=10)][:expected]


def test_a_package_change_deletes_the_old_line_and_creates_the_new() -> None:
    inputs = line_inputs(mappings=[C1], usages=[usage("c1", "B", 6)], products=PRODUCTS,
                         managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=6)],
                         schedules=[schedule(1, lines=[line(10, 1, 101, quantity=6)])])

    changes, _ = plan(inputs)

    assert sorted(changes, key=lambda c: type(c).__name__) == [
        CreateLine(REF, 1, "B", 102, "PC_B", 6, D("5.00"), D("3.00"), True, (10,),
                   "new for this customer"),
        DeleteLine(REF, 1, 10, "A", D(6), "package changed to B"),
    ]


def test_a_sku_no_longer_used_is_deleted() -> None:
    inputs = line_inputs(mappings=[C1], usages=[], products=PRODUCTS,
                         managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=6)],
                         schedules=[schedule(1, lines=[FOREIGN, line(10, 1, 101, quantity=6)])])

    changes, _ = plan(inputs)

    assert changes == [DeleteLine(REF, 1, 10, "A", D(6), "no longer used at the vendor")]


@pytest.mark.parametrize("old_schedule_exists", [True, False])
def test_a_customer_remapped_to_another_schedule_leaves_its_old_lines(
        old_schedule_exists: bool) -> None:
    old = schedule(2, lines=[line(20, 2, 101, quantity=4), line(21, 2, 999)])
    inputs = line_inputs(
        mappings=[C1], usages=[usage("c1", "A", 4)], products=PRODUCTS,
        managed_lines=[managed_line(20, 2, "c1", "A", 101, quantity=4)],
        schedules={1: schedule(1), 2: old if old_schedule_exists else None})

    changes, _ = plan(inputs)

    deleted = [DeleteLine(REF, 2, 20, "A", D(4),
                          "the customer is now billed on recurring invoice 1")]
    assert [c for c in changes if isinstance(c, DeleteLine)] == (
        deleted if old_schedule_exists else [])
    assert [(c.schedule_id, c.sku, c.quantity) for c in changes if isinstance(c, CreateLine)] == [
        (1, "A", 4)]


# ------------------------------------------------------------------ customer status


def test_a_detached_customers_lines_go_to_zero_with_a_warning() -> None:
    detached = dataclasses.replace(C1, status="detached")
    inputs = line_inputs(
        mappings=[detached], usages=[usage("c1", "A", 9)], products=PRODUCTS,
        managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=5),
                       managed_line(11, 1, "c1", "B", 102, quantity=0),
                       managed_line(20, 2, "c1", "A", 101, quantity=2),
                       managed_line(30, 3, "c1", "A", 101, quantity=2)],  # its schedule is gone
        schedules={1: schedule(1, lines=[FOREIGN, line(10, 1, 101, quantity=5),
                                         line(11, 1, 102, quantity=0)]),
                   2: schedule(2, lines=[line(20, 2, 101, quantity=2)]), 3: None})

    changes, notices = plan(inputs)

    reason = "the customer is gone from the vendor (detached)"
    assert changes == [UpdateLine(REF, 1, 10, "A", reason, D(5), 0),
                       UpdateLine(REF, 2, 20, "A", reason, D(2), 0)]
    assert notices == [Notice("warning", "detached",
                              "gone from the vendor: its lines are set to 0", LABEL)]


def test_a_detached_customer_already_at_zero_plans_nothing() -> None:
    inputs = line_inputs(
        mappings=[dataclasses.replace(C1, status="detached")], products=PRODUCTS,
        managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=0)],
        schedules=[schedule(1, lines=[line(10, 1, 101, quantity=0)])])

    changes, notices = plan(inputs)

    assert changes == []
    assert kinds(notices) == [("warning", "detached")]


def test_a_not_mapped_customer_is_warned_about_and_nothing_is_planned() -> None:
    row = vendor_customer("c1", name="Acme Vendor", status="not_mapped")
    inputs = line_inputs(mappings=[row], usages=[usage("c1", "A", 3)], products=PRODUCTS,
                         managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=1)],
                         schedules=[schedule(1, lines=[line(10, 1, 101, quantity=1),
                                                       line(11, 1, 101)])])

    changes, notices = plan(inputs)

    assert changes == []
    assert notices == [Notice("warning", "unmapped", "not mapped: nothing billed", "Acme Vendor")]


@pytest.mark.parametrize("status", ["mapped", "detached", "not_mapped"])
def test_a_skipped_customer_gets_nothing_at_all(status: VendorCustomerStatus) -> None:
    row = dataclasses.replace(C1, status=status, schedule_id=1 if status != "not_mapped" else None)
    inputs = line_inputs(
        mappings=[row], usages=[usage("c1", "A", 3), usage("c1", "B", 1)], products=PRODUCTS,
        skipped=[("c1", "")],
        managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=9, retail="1")],
        schedules={1: schedule(1, lines=[line(10, 1, 101, quantity=7), line(11, 1, 102)])})

    # Seat totals count what the daemon last wrote (9), not the hand edit in Syncro (7).
    assert plan_lines(inputs) == ([], [], SeatTotals(9, 9))


def test_skipping_one_billing_motion_keeps_the_other() -> None:
    rows = [C1, dataclasses.replace(C1, billing_motion="nce", schedule_id=2)]
    inputs = line_inputs(mappings=rows, products=PRODUCTS, skipped=[("c1", "")],
                         usages=[usage("c1", "A", 3), usage("c1", "A", 4, billing_motion="nce")],
                         schedules=[schedule(1), schedule(2)])

    changes, _ = plan(inputs)

    assert [(c.schedule_id, c.customer.billing_motion, c.quantity) for c in changes
            if isinstance(c, CreateLine)] == [(2, "nce", 4)]


@pytest.mark.parametrize(("schedule_id", "schedules"), [
    (1, {1: None}),
    (1, {}),
    (None, {1: schedule(1)}),
])
def test_a_schedule_gone_from_syncro_is_an_error_and_nothing_is_planned(
        schedule_id: int | None, schedules: dict[int, Schedule | None]) -> None:
    inputs = line_inputs(mappings=[dataclasses.replace(C1, schedule_id=schedule_id)],
                         usages=[usage("c1", "A", 3)], products=PRODUCTS, schedules=schedules,
                         managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=1)])

    changes, notices = plan(inputs)

    assert changes == []
    assert kinds(notices) == [("error", "schedule_missing")]
    assert notices[0].customer == LABEL
    assert f"recurring invoice {schedule_id} no longer exists" in notices[0].message


def test_billing_motions_are_separate_customers_with_their_own_lines() -> None:
    rows = [C1, dataclasses.replace(C1, billing_motion="nce")]
    inputs = line_inputs(
        mappings=rows, products=PRODUCTS,
        usages=[usage("c1", "A", 3), usage("c1", "A", 8, billing_motion="nce")],
        managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=3),
                       managed_line(11, 1, "c1", "A", 101, quantity=3, billing_motion="nce")],
        schedules=[schedule(1, lines=[line(10, 1, 101, quantity=3),
                                      line(11, 1, 101, quantity=3)])])

    changes, _ = plan(inputs)

    assert [(type(c), c.line_id, c.quantity_after) for c in changes
            if isinstance(c, UpdateLine)] == [(UpdateLine, 11, 8)]
    assert len(changes) == 1


def test_customers_are_planned_in_name_order() -> None:
    rows = [vendor_customer("c2", name="zeta", schedule_id=2),
            vendor_customer("c1", name="Alpha", schedule_id=1),
            vendor_customer("c3", name="beta", schedule_id=3)]
    inputs = line_inputs(mappings=rows, products=PRODUCTS,
                         usages=[usage(c, "A", 1) for c in ("c1", "c2", "c3")],
                         schedules=[schedule(1), schedule(2), schedule(3)])

    changes, _ = plan(inputs)

    assert [c.customer.name for c in changes] == ["Alpha", "beta", "zeta"]


# ------------------------------------------------------------------ seat totals


def test_seat_totals_sum_managed_lines_before_and_after_and_name_zeroed_customers() -> None:
    rows = [C1, vendor_customer("c2", name="Bolt", schedule_id=2, psa_customer_name="Bolt Co")]
    inputs = line_inputs(
        mappings=rows, products=PRODUCTS,
        usages=[usage("c1", "A", 0), usage("c2", "A", 6), usage("c2", "B", 1)],
        managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=5),
                       managed_line(11, 1, "c1", "B", 102, quantity=3),
                       managed_line(20, 2, "c2", "A", 101, quantity=4),
                       managed_line(99, 9, "c2", "A", 101, quantity=50)],  # schedule gone
        schedules={1: schedule(1, lines=[FOREIGN, line(10, 1, 101, quantity=5),
                                         line(11, 1, 102, quantity=3)]),
                   2: schedule(2, lines=[line(20, 2, 101, quantity=4),
                                         line(21, 2, 102, quantity=30)]),  # to be adopted
                   9: None})

    changes, _, seats = plan_lines(inputs)

    assert seats == SeatTotals(before=12, after=7, zeroed_customers=(LABEL,))
    assert seats.decrease_percent == D("41.7")
    assert seat_totals(inputs, changes) == seats
    assert seat_totals(inputs, []) == SeatTotals(12, 12)


@pytest.mark.parametrize(("counts", "status", "seats"), [
    ({"A": 0, "B": 0}, "mapped", SeatTotals(8, 0, (LABEL,))),
    ({}, "mapped", SeatTotals(8, 0, (LABEL,))),  # both lines deleted
    ({"A": 0}, "mapped", SeatTotals(8, 0, (LABEL,))),  # one to 0, one deleted
    ({"A": 0, "B": 3}, "mapped", SeatTotals(8, 3)),
    ({"C": 2}, "mapped", SeatTotals(8, 2)),  # package change: still billed
    ({"A": 5, "B": 3}, "mapped", SeatTotals(8, 8)),
    ({"A": 9, "B": 9}, "mapped", SeatTotals(8, 18)),
    ({"A": 5, "B": 3}, "detached", SeatTotals(8, 0, (LABEL,))),
    ({"A": 5, "B": 3}, "not_mapped", SeatTotals(8, 8)),
])
def test_seat_totals_and_zeroed_customers(counts: dict[str, int],
                                          status: VendorCustomerStatus,
                                          seats: SeatTotals) -> None:
    inputs = line_inputs(
        mappings=[dataclasses.replace(C1, status=status)],
        products=[*PRODUCTS, target("C", 103)],
        usages=[usage("c1", sku, count) for sku, count in counts.items()],
        managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=5),
                       managed_line(11, 1, "c1", "B", 102, quantity=3)],
        schedules=[schedule(1, lines=[line(10, 1, 101, quantity=5),
                                      line(11, 1, 102, quantity=3)])])

    assert plan_lines(inputs)[2] == seats


def test_a_customer_already_at_zero_is_not_counted_as_zeroed() -> None:
    inputs = line_inputs(
        mappings=[C1], products=PRODUCTS, usages=[usage("c1", "A", 0)],
        managed_lines=[managed_line(10, 1, "c1", "A", 101, quantity=0)],
        schedules=[schedule(1, lines=[line(10, 1, 101, quantity=0)])])

    assert plan_lines(inputs)[2] == SeatTotals(0, 0)


# ------------------------------------------------------------------ describe


@pytest.mark.parametrize(("change", "rows"), [
    (CreateLine(REF, 1, "A", None, "PC_A", 3, D("2.00"), D(1), True, (), "why"),
     [FieldChange("line.created", "schedule:1", LABEL, "A", None, "quantity 3 at 2.00", "why")]),
    (AdoptLine(REF, 1, 60, "A", 101, D(3), D("9.99"), D(1), D(2), D(1), "why"),
     [FieldChange("line.adopted", "line:60", LABEL, "A", None, "quantity 3 at 9.99", "why")]),
    (UpdateLine(REF, 1, 10, "A", "why", D(5), 7),
     [FieldChange("line.quantity_set", "line:10", LABEL, "A quantity", "5", "7", "why")]),
    (UpdateLine(REF, 1, 10, "A", "why", D(5), None, D(2), D(3), D(1), D("1.5")),
     [FieldChange("line.price_set", "line:10", LABEL, "A retail", "2.00", "3.00", "why"),
      FieldChange("line.price_set", "line:10", LABEL, "A cost", "1.00", "1.50", "why")]),
    (DeleteLine(REF, 1, 10, "A", D(6), "why"),
     [FieldChange("line.deleted", "line:10", LABEL, "A", "quantity 6", None, "why")]),
])
def test_describe_line_changes(change: LineChange, rows: list[FieldChange]) -> None:
    assert describe(change) == rows


@pytest.mark.parametrize(("amount", "shown"), [
    ("36.0", "36.00"), ("3", "3.00"), ("3.1000", "3.10"), ("0.0960", "0.096"),
    ("-45.99", "-45.99"), ("0", "0.00"), ("123.4567", "123.4567"), ("1E+2", "100.00"),
])
def test_money_shows_at_least_cents_and_no_trailing_zeros_beyond(amount: str,
                                                                 shown: str) -> None:
    assert money(D(amount)) == shown


# ------------------------------------------------------------------ shared recurring invoice


def test_two_customers_on_one_schedule_never_adopt_the_same_line() -> None:
    rows = [C1, vendor_customer("c2", name="Bolt", schedule_id=1)]
    inputs = line_inputs(mappings=rows, products=PRODUCTS,
                         usages=[usage("c1", "A", 3), usage("c2", "A", 5)],
                         schedules=[schedule(1, lines=[line(60, 1, 101, quantity=3)])])

    changes, _ = plan(inputs)

    adopted = [c.line_id for c in changes if isinstance(c, AdoptLine)]
    assert len(adopted) == len(set(adopted))
    assert plan(apply_lines(inputs, changes))[0] == []


# ------------------------------------------------------------------ properties


def apply_lines(inputs: LineInputs, changes: Sequence[LineChange]) -> LineInputs:
    """Syncro's schedules and the managed-line records after `changes`, as `apply` leaves them.

    Products new this run get ids from 900 up, as if `plan_products`' changes ran first.
    """
    lines = {sid: {ln.id: ln for ln in s.lines}
             for sid, s in inputs.schedules.items() if s is not None}
    records = {r.syncro_line_id: r for r in inputs.managed_lines}
    others = inputs.all_managed_line_ids - set(records)
    new_ids = {sku: 900 + i for i, sku in enumerate(sorted(inputs.products))
               if inputs.products[sku].product_id is None}
    known = [ln for by_id in lines.values() for ln in by_id] + list(inputs.all_managed_line_ids)
    fresh = itertools.count(max(known, default=0) + 1)
    for change in changes:
        match change:
            case CreateLine():
                product_id = change.product_id or new_ids[change.sku]
                new = line(next(fresh), change.schedule_id, product_id,
                           quantity=change.quantity, retail=change.retail, cost=change.cost)
                lines[change.schedule_id][new.id] = new
                if change.replaces_line_id is not None:
                    records.pop(change.replaces_line_id, None)
                records[new.id] = managed_line(
                    new.id, change.schedule_id, change.customer.vendor_customer_id, change.sku,
                    product_id, quantity=change.quantity, retail=change.retail, cost=change.cost,
                    billing_motion=change.customer.billing_motion)
            case AdoptLine():
                records[change.line_id] = managed_line(
                    change.line_id, change.schedule_id, change.customer.vendor_customer_id,
                    change.sku, change.product_id, quantity=change.quantity,
                    retail=change.list_retail, cost=change.list_cost,
                    billing_motion=change.customer.billing_motion, origin="adopted")
            case UpdateLine():
                old = lines[change.schedule_id][change.line_id]
                quantity = (old.quantity if change.quantity_after is None
                            else Decimal(change.quantity_after))
                lines[change.schedule_id][change.line_id] = dataclasses.replace(
                    old, quantity=quantity,
                    retail=old.retail if change.retail_after is None else change.retail_after,
                    cost=old.cost if change.cost_after is None else change.cost_after)
                record = records.get(change.line_id)
                if record is not None:
                    records[change.line_id] = dataclasses.replace(
                        record, last_quantity=quantity,
                        last_retail=record.last_retail if change.retail_after is None
                        else change.retail_after,
                        last_cost=record.last_cost if change.cost_after is None
                        else change.cost_after)
            case DeleteLine():
                del lines[change.schedule_id][change.line_id]
                records.pop(change.line_id, None)
    products = {sku: dataclasses.replace(t, product_id=new_ids.get(sku, t.product_id))
                for sku, t in inputs.products.items()}
    schedules = {sid: dataclasses.replace(s, lines=tuple(lines[sid].values()))
                 if s is not None else None for sid, s in inputs.schedules.items()}
    return dataclasses.replace(
        inputs, products=products, managed_lines=tuple(records.values()),
        all_managed_line_ids=frozenset(records) | others, schedules=schedules)


NOT_OURS = (201, None)  # a hand-made product and free-text lines
PRICES = st.sampled_from(["1.00", "2.00", "2.50"])
LINE_VALUES = st.tuples(st.sampled_from([D(0), D(1), D(3), D(5), D("2.5")]), PRICES, PRICES)
STATUS_CHOICES: list[VendorCustomerStatus] = ["mapped", "mapped", "mapped", "detached",
                                              "not_mapped"]
STATUSES = st.sampled_from(STATUS_CHOICES)
SMALL = st.none() | st.integers(0, 4)
C_PRODUCT = st.sampled_from([103, None])
SOMETIMES = st.integers(0, 9)
UNMANAGED_LINES = st.lists(st.sampled_from([*NOT_OURS, 101, 102, 103]), max_size=2)
CUSTOMER_COUNT = st.integers(1, 3)
MOTIONS = st.sampled_from(["", "nce"])
ANY_SCHEDULE = st.sampled_from([1, 2, 3, 99, None])
OWN_SCHEDULE = st.sampled_from([0, 0, 99, None])  # 0: the customer's own
USED = st.lists(st.tuples(st.sampled_from("ABCZ"), st.integers(0, 8), st.booleans()),
                unique_by=lambda u: u[0], max_size=3)
RECORDS = st.lists(st.tuples(st.sampled_from("ABC"), st.sampled_from([1, 2, 3]), SOMETIMES,
                             LINE_VALUES, LINE_VALUES), unique_by=lambda r: r[:2], max_size=3)


@st.composite
def line_worlds(draw: st.DrawFn, *, shared: bool = False) -> LineInputs:
    """Up to three customers, three schedules (and a gone one), lines ours and not ours.

    Without `shared`, each customer is mapped to a recurring invoice of its own (or to one
    Syncro no longer has); its managed lines may sit on any schedule (an earlier mapping).
    """
    ids = itertools.count(1000)
    sku_products = {"A": 101, "B": 102, "C": draw(C_PRODUCT)}
    products = {sku: target(sku, pid, retail=retail, cost=cost)
                for sku, pid in sku_products.items()
                for _, retail, cost in [draw(LINE_VALUES)] if draw(SOMETIMES)}
    lines: dict[int, list[ScheduleLine]] = {1: [], 2: [], 3: []}
    others: list[int] = []
    for sid, on_schedule in lines.items():
        for product_id in draw(UNMANAGED_LINES):
            quantity, retail, cost = draw(LINE_VALUES)
            on_schedule.append(line(next(ids), sid, product_id, quantity=quantity,
                                    retail=retail, cost=cost))
        if draw(SOMETIMES) < 3:  # managed by another vendor: never ours to touch or adopt
            others.append(next(ids))
            on_schedule.append(line(others[-1], sid, 101, quantity=3))
    mappings: list[VendorCustomer] = []
    usages: list[Usage] = []
    managed: list[ManagedLine] = []
    for number in range(1, draw(CUSTOMER_COUNT) + 1):
        cid = f"c{number}"
        motion = draw(MOTIONS)
        choice = draw(ANY_SCHEDULE if shared else OWN_SCHEDULE)
        own = number if choice == 0 else choice
        mappings.append(vendor_customer(
            cid, name=f"Customer {number}", status=draw(STATUSES), schedule_id=own,
            minimum=draw(SMALL), included=draw(SMALL), billing_motion=motion))
        usages += [usage(cid, sku, count, billable=billable, billing_motion=motion)
                   for sku, count, billable in draw(USED)]
        for sku, sid, deleted, (quantity, retail, cost), last in draw(RECORDS):
            product_id = sku_products[sku] or 303  # a product since deleted in Syncro
            line_id = next(ids)
            if deleted > 1:  # else: the line was deleted in Syncro
                lines[sid].append(line(line_id, sid, product_id, quantity=quantity,
                                       retail=retail, cost=cost))
            managed.append(managed_line(line_id, sid, cid, sku, product_id, quantity=last[0],
                                        retail=last[1], cost=last[2], billing_motion=motion))
    skipped = [(m.vendor_customer_id, m.billing_motion) for m in mappings
               if draw(SOMETIMES) == 0]
    schedules: dict[int, Schedule | None] = {sid: schedule(sid, lines=ls)
                                             for sid, ls in lines.items()}
    schedules[99] = None
    return line_inputs(mappings=mappings, usages=usages, products=products,
                       managed_lines=managed, schedules=schedules, skipped=skipped,
                       other_managed_line_ids=others)


def billed_after(inputs: LineInputs) -> dict[tuple[str, str, str], int]:
    """(customer, motion, sku) → billed quantity, for mapped customers the plan may change."""
    rows = {(m.vendor_customer_id, m.billing_motion): m for m in inputs.mappings}
    return {(u.customer_id, u.billing_motion, u.sku):
            billed_quantity(u, rows[(u.customer_id, u.billing_motion)])
            for u in inputs.usages if u.sku in inputs.products}


def assert_lines_follow_the_vendor(inputs: LineInputs) -> None:
    """Each planned customer holds exactly one line per used SKU with the billed quantity."""
    billed = billed_after(inputs)
    for mapping in inputs.mappings:
        key = (mapping.vendor_customer_id, mapping.billing_motion)
        sid = mapping.schedule_id
        present = inputs.schedules.get(sid) if sid is not None else None
        if key in inputs.skipped or present is None or mapping.status == "not_mapped":
            continue
        quantities: dict[str, list[Decimal]] = {}
        on_schedule = {ln.id: ln for ln in present.lines}
        for record in inputs.managed_lines:
            if (record.vendor_customer_id, record.billing_motion) == key \
                    and record.syncro_line_id in on_schedule:
                quantities.setdefault(record.sku, []).append(
                    on_schedule[record.syncro_line_id].quantity)
        if mapping.status == "detached":
            assert all(q == 0 for qs in quantities.values() for q in qs)
            continue
        for sku, count in ((s, q) for (c, m, s), q in billed.items() if (c, m) == key):
            assert quantities.get(sku, [D(0)]) == [D(count)], (mapping.name, sku)


@settings(max_examples=50, deadline=None, database=None)
@given(line_worlds())
def test_planning_again_after_applying_plans_nothing(inputs: LineInputs) -> None:
    changes, _, seats = plan_lines(inputs)
    after = apply_lines(inputs, changes)

    again, _, seats_again = plan_lines(after)

    assert again == []
    assert seats_again.before == seats.after
    assert_lines_follow_the_vendor(after)


SHARED_SCHEDULE = line_inputs(
    mappings=[C1, vendor_customer("c2", schedule_id=1)], products=PRODUCTS,
    usages=[usage("c1", "A", 3), usage("c2", "A", 5)],
    schedules=[schedule(1, lines=[line(60, 1, 101, quantity=3), FOREIGN])])


@settings(max_examples=40, deadline=None, database=None)
@given(line_worlds(shared=True))
@example(SHARED_SCHEDULE)
def test_planning_again_plans_nothing_when_customers_share_a_schedule(
        inputs: LineInputs) -> None:
    changes, _, seats = plan_lines(inputs)
    after = apply_lines(inputs, changes)

    again, _, seats_again = plan_lines(after)

    assert again == []
    assert seats_again.before == seats.after
    assert_lines_follow_the_vendor(after)


@settings(max_examples=40, deadline=None, database=None)
@given(line_worlds(shared=True))
@example(SHARED_SCHEDULE)
def test_lines_of_unmanaged_products_are_never_changed_and_quantities_never_negative(
        inputs: LineInputs) -> None:
    lines = {ln.id: ln for s in inputs.schedules.values() if s is not None for ln in s.lines}
    ours = {r.syncro_line_id for r in inputs.managed_lines}
    managed_products = {t.product_id for t in inputs.products.values()}

    changes, _, seats = plan_lines(inputs)

    assert all(c.quantity >= 0 for c in changes if isinstance(c, CreateLine))
    assert all(c.quantity_after >= 0 for c in changes
               if isinstance(c, UpdateLine) and c.quantity_after is not None)
    assert seats.after >= 0

    for change in changes:
        if isinstance(change, CreateLine):
            assert change.product_id in managed_products
            continue
        touched = lines[change.line_id]
        assert touched.product_id not in NOT_OURS
        assert change.line_id in ours or isinstance(change, AdoptLine | UpdateLine)
        if change.line_id not in ours:  # adopted this run
            assert touched.product_id in managed_products
            assert change.line_id not in inputs.all_managed_line_ids


@settings(max_examples=50, deadline=None, database=None)
@given(count=st.integers(-1000, 10**6), included=st.none() | st.integers(0, 10**6),
       minimum=st.none() | st.integers(0, 10**6), billable=st.booleans())
def test_billed_quantity_is_never_negative(count: int, included: int | None,
                                           minimum: int | None, billable: bool) -> None:
    mapping = vendor_customer("c1", minimum=minimum, included=included)

    billed = billed_quantity(usage("c1", "A", count, billable=billable), mapping)

    assert billed >= 0
    if not billable:
        assert billed == 0
    else:
        assert billed >= (minimum or 0)
        assert billed >= count - (included or 0)
        assert billed in {0, minimum or 0, count - (included or 0)}
