"""One-time charges and statements: exactly once, only for mapped customers, never lost."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest

from sync_daemon.connectors.syncro import ScheduleLine
from sync_daemon.invoices.charges import ChargeInputs, plan_charges
from sync_daemon.invoices.statements import completed_statements, split_baseline
from sync_daemon.plan import AddCharge, describe
from sync_daemon.vendor import Charge, Statement
from tests.support.builders import D, schedule, target, vendor_customer

MOTION = "Monthly"
SKU = "CFQ7TTC0LCHC:0002:P1M"


def charge(customer_id: str = "t1", *, statement: str = "s1", kind: str = "proration",
           retail: str = "-45.99", cost: str = "-41.39", key: str | None = None,
           motion: str = MOTION, sku: str = SKU) -> Charge:
    return Charge(key=key or f"cloudiq:charge:{statement}:{customer_id}:{sku}:{kind}",
                  statement_id=statement, customer_id=customer_id, billing_motion=motion,
                  sku=sku, name=f"{sku} {kind} 2026-10-01..2026-10-31", kind=kind,  # type: ignore[arg-type]
                  quantity=Decimal(1), retail=D(retail), cost=D(cost))


def statement(id: str, start: date, *, motion: str = MOTION) -> Statement:  # noqa: A002
    return Statement(id=id, billing_motion=motion, period_start=start,
                     period_end=start.replace(day=28), total=D("100.00"), provision_type=1)


def inputs(**overrides: object) -> ChargeInputs:
    defaults: dict[str, object] = {
        "mappings": [vendor_customer("t1", billing_motion=MOTION)],
        "charges": [charge()],
        "skipped": frozenset(),
        "products": {SKU: target(SKU, 15000001)},
        "schedules": {1: schedule(1)},
        "settled": frozenset(),
        "pending": frozenset(),
    }
    defaults.update(overrides)
    return ChargeInputs(**defaults)  # type: ignore[arg-type]


def test_a_mapped_customers_charge_becomes_one_one_time_line() -> None:
    changes, notices = plan_charges(inputs())
    assert notices == []
    [change] = changes
    assert (change.schedule_id, change.product_id, change.quantity, change.retail,
            change.cost) == (1, 15000001, Decimal(1), D("-45.99"), D("-41.39"))
    assert change.key == "cloudiq:charge:s1:t1:CFQ7TTC0LCHC:0002:P1M:proration"
    assert change.existing_line_id is None
    assert describe(change)[0].action == "charge.added"


def test_a_settled_charge_is_never_planned_again() -> None:
    changes, _ = plan_charges(inputs(settled={charge().key}))
    assert changes == []


def test_a_pending_charge_whose_line_landed_is_only_recorded() -> None:
    landed = ScheduleLine(id=88000042, schedule_id=1, product_id=15000001, name=charge().name,
                          description=None, quantity=Decimal(1), retail=D("-45.99"),
                          cost=D("-41.39"), taxable=True, one_time_charge=True, position=3)
    changes, _ = plan_charges(inputs(pending={charge().key},
                                     schedules={1: schedule(1, lines=[landed])}))
    assert [c.existing_line_id for c in changes] == [88000042]


def test_a_pending_charge_that_never_landed_is_sent_again() -> None:
    changes, _ = plan_charges(inputs(pending={charge().key}))
    assert [c.existing_line_id for c in changes] == [None]


@pytest.mark.parametrize("status", ["not_mapped", "detached"])
def test_charges_of_customers_not_mapped_are_reported_with_the_amount(status: str) -> None:
    rows = [vendor_customer("t1", billing_motion=MOTION, status=status)]  # type: ignore[arg-type]
    changes, notices = plan_charges(inputs(
        mappings=rows, charges=[charge(), charge(kind="usage", retail="120.50")]))
    assert changes == []
    [notice] = notices
    assert (notice.kind, notice.level) == ("unbilled", "warning")
    assert "74.51 of one-time charges left unbilled" in notice.message


def test_a_customer_with_bad_vendor_data_is_left_alone() -> None:
    changes, notices = plan_charges(inputs(skipped=frozenset({("t1", MOTION)})))
    assert (changes, notices) == ([], [])


def test_the_same_tenant_in_another_billing_motion_is_another_customer() -> None:
    changes, notices = plan_charges(inputs(charges=[charge(motion="Annual")]))
    assert changes == []
    assert [n.kind for n in notices] == ["unbilled"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({"schedules": {1: None}}, "no longer exists"), ({"products": {}}, "has no product")],
)
def test_a_charge_that_cannot_be_billed_yet_is_an_error(overrides: dict[str, object],
                                                        reason: str) -> None:
    changes, notices = plan_charges(inputs(**overrides))
    assert changes == []
    assert [(n.level, n.kind) for n in notices] == [("error", "charge_not_billed")]
    assert reason in notices[0].message


def test_a_product_created_in_the_same_run_is_resolved_at_apply() -> None:
    changes, _ = plan_charges(inputs(products={SKU: target(SKU, None)}))
    assert isinstance(changes[0], AddCharge)
    assert changes[0].product_id is None


def test_the_first_sync_bills_only_the_newest_statement_of_each_motion() -> None:
    old, new = statement("s1", date(2026, 9, 1)), statement("s2", date(2026, 10, 1))
    annual = statement("a1", date(2026, 9, 1), motion="Annual")
    keep, baseline = split_baseline([old, new, annual], first_sync=True)
    assert [s.id for s in keep] == ["s2", "a1"]
    assert [s.id for s in baseline] == ["s1"]
    assert split_baseline([old, new], first_sync=False) == ([old, new], [])


def test_a_statement_is_complete_when_every_mapped_charge_has_landed() -> None:
    s1 = statement("s1", date(2026, 10, 1))
    mapped = {("t1", MOTION)}
    unmapped_charge = charge("t2")
    done = completed_statements([s1], [charge(), unmapped_charge], mapped=mapped,
                                skipped=set(), settled={charge().key})
    assert done == [s1]
    assert completed_statements([s1], [charge()], mapped=mapped, skipped=set(),
                                settled=set()) == []


def test_a_statement_with_a_problem_customer_stays_open() -> None:
    s1 = statement("s1", date(2026, 10, 1))
    done = completed_statements([s1], [charge("t9")], mapped={("t1", MOTION)},
                                skipped={("t9", MOTION)}, settled=set())
    assert done == []


def test_a_statement_without_charges_is_complete() -> None:
    s1 = statement("s1", date(2026, 10, 1))
    other = dataclasses.replace(charge(), statement_id="s2")
    assert completed_statements([s1], [other], mapped={("t1", MOTION)}, skipped=set(),
                                settled=set()) == [s1]
