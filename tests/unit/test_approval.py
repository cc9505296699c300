"""The pure parts of approve-before-write: storing changes, fingerprints, choosing with --only."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_daemon.approval.pending import (
    CHANGE_TYPES,
    SyncroView,
    decode_change,
    encode_change,
    fingerprint,
    schedules_needed,
    select,
)
from sync_daemon.errors import InvariantError, UsageError
from sync_daemon.plan import (
    AddCharge,
    AdoptLine,
    AdoptProduct,
    Change,
    CreateLine,
    CreateProduct,
    CustomerRef,
    DeleteLine,
    UpdateLine,
    UpdateProductPrice,
)
from sync_daemon.state import PlannedChange
from tests.support.builders import D, line, product, schedule

ALDER = CustomerRef("101", "Alder Dental", "Alder Dental Ltd", "")
BIRCH = CustomerRef("102", "Birch Law", "Birch & Co", "Monthly")

NEW_LINE = CreateLine(ALDER, 11, "PPE-BUSINESS", None, "PC_PPE-BUSINESS", 25, D("3.10"),
                      D("1.55"), True, (1, 2), "new", replaces_line_id=5)
EVERY_KIND: list[Change] = [
    CreateProduct("PPE-BUSINESS", "PC_PPE-BUSINESS", "Proofpoint", D("1.55"), D("3.10"), True,
                  "new SKU"),
    AdoptProduct("PPE-ADVANCED", 7, "PC_PPE-ADVANCED", "made by hand"),
    UpdateProductPrice("PPE-PRO", 8, "PC_PPE-PRO", D("2"), D("2.25"), D("4"), D("4.50"),
                       "vendor price"),
    NEW_LINE,
    AdoptLine(BIRCH, 12, 30, "PPE-ADVANCED", 7, D("2.5"), D("3"), D("1"), D("3.10"), D("1.55"),
              "adopted"),
    UpdateLine(ALDER, 11, 31, "PPE-BUSINESS", "count", D("25"), quantity_after=26,
               retail_before=D("3.10"), retail_after=D("3.20")),
    DeleteLine(BIRCH, 12, 32, "PPE-PRO", D("4"), "package changed"),
    AddCharge(BIRCH, 12, "cloudiq:charge:S1:t:AZ", "S1", "AZ", 9, "Azure usage 2026-10",
              "usage", D("1"), D("123.4567"), D("100.00"), True, (40,), existing_line_id=41),
]


# -- storing changes ------------------------------------------------------------------------------


@pytest.mark.parametrize("change", EVERY_KIND, ids=lambda c: type(c).__name__)
def test_every_kind_of_change_survives_json_exactly(change: Change) -> None:
    stored = json.loads(json.dumps(encode_change(change)))
    assert decode_change(stored) == change


def test_every_change_type_is_covered() -> None:
    assert {type(c).__name__ for c in EVERY_KIND} == set(CHANGE_TYPES)


def test_money_is_stored_as_exact_text() -> None:
    encoded = encode_change(EVERY_KIND[-1])
    assert encoded["retail"] == "123.4567"
    assert encoded["type"] == "AddCharge"


@given(quantity=st.integers(0, 10**7),
       retail=st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False))
def test_line_values_round_trip(quantity: int, retail: Decimal) -> None:
    change = dataclasses.replace(NEW_LINE, quantity=quantity, retail=retail)
    assert decode_change(json.loads(json.dumps(encode_change(change)))) == change


@pytest.mark.parametrize("data", [
    {"type": "DropTable"},
    {"type": "DeleteLine", "customer": {"vendor_customer_id": "1"}},
    {"type": "DeleteLine", "customer": dataclasses.asdict(ALDER), "schedule_id": "twelve",
     "line_id": 1, "sku": "X", "quantity_before": "1", "reason": "r"},
])
def test_an_unreadable_stored_change_is_an_invariant_error(data: dict[str, object]) -> None:
    with pytest.raises(InvariantError):
        decode_change(data)


# -- fingerprints -------------------------------------------------------------------------------

SCHEDULE = schedule(11, lines=[line(1, 11, 500, quantity=12, name="Helpdesk"),
                               line(2, 11, 101, quantity=25)])
VIEW = SyncroView(products={7: product(7, "PC_PPE-ADVANCED"), 8: product(8, "PC_PPE-PRO"),
                            500: product(500, "Helpdesk")},
                  schedules={11: SCHEDULE, 12: schedule(12)})


def with_schedule(replacement: object) -> SyncroView:
    return SyncroView(VIEW.products, {**VIEW.schedules, 11: replacement})  # type: ignore[dict-item]


@pytest.mark.parametrize("moved", [
    pytest.param(dataclasses.replace(SCHEDULE, lines=SCHEDULE.lines[:1]), id="line deleted"),
    pytest.param(dataclasses.replace(SCHEDULE, lines=(
        *SCHEDULE.lines, line(3, 11, 600))), id="line added"),
    pytest.param(dataclasses.replace(SCHEDULE, lines=(
        dataclasses.replace(SCHEDULE.lines[0], quantity=D(13)), SCHEDULE.lines[1])),
        id="quantity edited"),
    pytest.param(dataclasses.replace(SCHEDULE, lines=(
        dataclasses.replace(SCHEDULE.lines[0], retail=D("9.99")), SCHEDULE.lines[1])),
        id="price edited"),
    pytest.param(None, id="schedule deleted"),
])
def test_a_line_change_is_fingerprinted_by_its_schedules_lines(moved: object) -> None:
    change = EVERY_KIND[5]
    assert fingerprint(change, with_schedule(moved)) != fingerprint(change, VIEW)


def test_what_a_change_does_not_depend_on_leaves_its_fingerprint_alone() -> None:
    change = EVERY_KIND[5]
    elsewhere = SyncroView({**VIEW.products, 9: product(9, "Something new")},
                           {**VIEW.schedules, 12: schedule(12, lines=[line(5, 12, 7)])})
    reordered = with_schedule(dataclasses.replace(SCHEDULE, lines=SCHEDULE.lines[::-1],
                                                  next_run=date(2027, 1, 1)))
    assert fingerprint(change, elsewhere) == fingerprint(change, VIEW)
    assert fingerprint(change, reordered) == fingerprint(change, VIEW)


def test_a_product_change_is_fingerprinted_by_its_product() -> None:
    update = EVERY_KIND[2]
    repriced = SyncroView({**VIEW.products, 8: product(8, "PC_PPE-PRO", retail="4.10")},
                          VIEW.schedules)
    assert fingerprint(update, repriced) != fingerprint(update, VIEW)
    assert fingerprint(EVERY_KIND[1], repriced) == fingerprint(EVERY_KIND[1], VIEW)


def test_a_product_create_moves_when_a_product_of_its_name_appears() -> None:
    create = EVERY_KIND[0]
    appeared = SyncroView({**VIEW.products, 9: product(9, "PC_PPE-BUSINESS")}, VIEW.schedules)
    other = SyncroView({**VIEW.products, 9: product(9, "PC_PPE-OTHER")}, VIEW.schedules)
    assert fingerprint(create, appeared) != fingerprint(create, VIEW)
    assert fingerprint(create, other) == fingerprint(create, VIEW)


def test_the_schedules_read_for_an_approval_are_those_of_line_changes() -> None:
    assert schedules_needed(EVERY_KIND) == {11, 12}
    assert schedules_needed(EVERY_KIND[:3]) == set()


# -- choosing with --only -----------------------------------------------------------------------


def planned(changes: list[Change]) -> list[tuple[PlannedChange, Change]]:
    return [(PlannedChange(run_id="r", seq=seq, kind=type(c).__name__, customer=None,
                           change={}, fingerprint=""), c)
            for seq, c in enumerate(changes, start=1)]


def seqs(chosen: list[tuple[PlannedChange, Change]]) -> list[int]:
    return [row.seq for row, _ in chosen]


def test_without_only_every_pending_change_is_chosen() -> None:
    assert seqs(select(planned(EVERY_KIND), ())) == list(range(1, 9))


@pytest.mark.parametrize("name", ["101", "alder dental", "ALDER DENTAL LTD"])
def test_only_matches_a_customer_by_id_vendor_name_or_syncro_name(name: str) -> None:
    # Alder's two line changes, and the creation of the product its new line bills.
    assert seqs(select(planned(EVERY_KIND), [name])) == [1, 4, 6]


def test_only_takes_the_adoption_of_a_product_but_never_a_price_update() -> None:
    chosen = select(planned(EVERY_KIND), ["Birch Law"])
    assert seqs(chosen) == [2, 5, 7, 8]
    assert not any(isinstance(c, UpdateProductPrice) for _, c in chosen)


def test_only_with_several_customers_keeps_plan_order() -> None:
    assert seqs(select(planned(EVERY_KIND), ["Birch & Co", "101"])) == [1, 2, 4, 5, 6, 7, 8]


def test_only_naming_nobody_in_the_plan_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--only Nobody"):
        select(planned(EVERY_KIND), ["101", "Nobody"])
