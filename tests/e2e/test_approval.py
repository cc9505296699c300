"""Approve before write (`approval = "required"`), end to end.

A pass stores its plan and writes nothing to Syncro; `plan show` prints it; `plan approve`
applies exactly that plan (or one customer's part of it) and refuses every change whose Syncro
state moved since planning; `plan reject` discards it; a later pass supersedes it. The stories
run side by side once per module; the tests read their outcomes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync_daemon.sandbox.proofpoint import Org
from sync_daemon.state import SyncRun
from tests.e2e.conftest import (
    PREMIUM,
    CloudiqWorld,
    Customer,
    Line,
    Month,
    Sync,
    SyncroWorld,
    World,
    concurrently,
    open_cloudiq_world,
    parse_json,
)
from tests.support.cli import Result

REQUIRED = {"approval": "required", "schedule": "0 6 * * *"}
Rows = list[dict[str, Any]]


def pending_plan(sync: Sync) -> str:
    """The run id of a sync that stored its plan for approval."""
    assert sync.code == 0, sync.result.stderr
    assert sync.summary["status"] == "pending", sync.summary
    run_id: str = sync.summary["run_id"]
    return run_id


def plan_json(world: SyncroWorld, run_id: str) -> dict[str, Any]:
    result = world.cli("plan", "show", run_id, "--format", "json")
    assert result.code == 0, result.stderr
    data: dict[str, Any] = parse_json(result)
    return data


def approve(world: SyncroWorld, run_id: str, *only: str) -> Sync:
    args = [arg for name in only for arg in ("--only", name)]
    result = world.cli("plan", "approve", run_id, *args, "--format", "json")
    return Sync(result, parse_json(result) if result.stdout.strip() else {})


# == review, approve one customer, approve the rest with one refused ==========================


@dataclass
class Review:
    world: World
    customers: dict[str, Customer]
    orgs: dict[str, Org]
    planned: Sync
    writes_while_pending: int
    shown_text: Result
    shown_pending: Result
    shown_json: dict[str, Any]
    after_planning: dict[str, list[Line]]
    first_approval: Sync
    after_first_approval: dict[str, list[Line]]
    shown_after_first: dict[str, Any]
    second_approval: Sync
    after_second_approval: dict[str, list[Line]]
    shown_after_second: dict[str, Any]
    again: Result
    replanned: Sync
    last_approval: Sync
    settled: Sync
    history: Rows
    runs: list[SyncRun]


def build_review(world: World) -> Review:
    """Three orgs mapped under `approval = "required"`: plan; approve Alder only; a technician
    edits Cedar's invoice; approve the rest (Cedar refused); re-plan; approve; sync again."""
    world.config(proofpoint=REQUIRED)
    users = {"Alder Dental": 25, "Birch Law": 15, "Cedar Clinic": 12}
    customers = {name: world.customer(name) for name in users}
    orgs = {name: world.org(name, users=n) for name, n in users.items()}
    world.map(*((orgs[n], customers[n]) for n in users))

    def lines() -> dict[str, list[Line]]:
        return {n: world.vendor_lines(c.schedule_id) for n, c in customers.items()}

    world.syncro.requests.clear()
    planned = world.sync()
    run_id = pending_plan(planned)
    writes_while_pending = world.writes()
    shown_text, shown_pending = world.cli_many(("plan", "show", run_id[:8]), ("plan", "show"))
    shown_json = plan_json(world, run_id)
    after_planning = lines()

    first_approval = approve(world, run_id, "alder dental")
    after_first_approval = lines()
    shown_after_first = plan_json(world, run_id)

    # A technician changes Cedar's invoice by hand after the plan was made.
    cedar = world.lines(customers["Cedar Clinic"].schedule_id)[0]
    with world.syncro.state.lock:
        world.syncro.state.lines.update(cedar.schedule_id, cedar.id, {"quantity": 13})
    second_approval = approve(world, run_id)
    after_second_approval = lines()
    shown_after_second = plan_json(world, run_id)
    again = world.cli("plan", "approve", run_id)

    replanned = world.sync()
    last_approval = approve(world, pending_plan(replanned))
    settled = world.sync()
    with world.store() as tx:
        runs = tx.list_runs("proofpoint")
    return Review(world, customers, orgs, planned, writes_while_pending, shown_text,
                  shown_pending, shown_json, after_planning, first_approval,
                  after_first_approval, shown_after_first, second_approval,
                  after_second_approval, shown_after_second, again, replanned, last_approval,
                  settled, world.history(), runs)


# == superseded, rejected, unknown =============================================================


@dataclass
class Lifecycle:
    world: World
    first: Sync
    second: Sync
    approve_superseded: Result
    wrong_customer: Result
    unknown: Result
    reject: Result
    approve_rejected: Result
    reject_again: Result
    shown_none: Result
    third: Sync
    approve_stale: Result
    stale_plan: dict[str, Any]
    writes: int
    status: list[dict[str, Any]]


def build_lifecycle(world: World) -> Lifecycle:
    """Plan twice (the first is superseded), try approving it and an unknown customer or id,
    reject the second; plan a third time and let its vendor's scheduled run come due."""
    world.config(proofpoint=REQUIRED)
    customer = world.customer("Alder Dental")
    world.map((world.org("Alder Dental", users=25), customer))
    world.syncro.requests.clear()
    first, second = world.sync(), world.sync()
    approve_superseded, wrong_customer, unknown = world.cli_many(
        ("plan", "approve", pending_plan(first)),
        ("plan", "approve", pending_plan(second), "--only", "Nobody Ltd"),
        ("plan", "approve", "0123456789abcdef"))
    reject = world.cli("plan", "reject", pending_plan(second))
    approve_rejected, reject_again, shown_none = world.cli_many(
        ("plan", "approve", pending_plan(second)), ("plan", "reject", pending_plan(second)),
        ("plan", "show"))

    third = world.sync()
    stale_id = pending_plan(third)
    status = world.cli("status", "--format", "json")
    assert status.code == 0, status.stderr
    # The plan was made two days ago: its vendor's daily run has been due since.
    with sqlite3.connect(world.directory / "state.db") as db:
        made = (datetime.now(UTC) - timedelta(days=2)).replace(tzinfo=None)
        db.execute("UPDATE plans SET created_at = ? WHERE run_id = ?",
                   (made.isoformat(sep=" "), stale_id))
    approve_stale = world.cli("plan", "approve", stale_id)
    return Lifecycle(world, first, second, approve_superseded, wrong_customer, unknown, reject,
                     approve_rejected, reject_again, shown_none, third, approve_stale,
                     plan_json(world, stale_id), world.writes(), parse_json(status))


@pytest.fixture(scope="module")
def scenarios(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Any]]]:
    with concurrently(request, tmp_path_factory,
                      {"review": build_review, "lifecycle": build_lifecycle}) as built:
        yield built


@pytest.fixture(scope="module")
def review(scenarios: dict[str, Future[Any]]) -> Review:
    built: Review = scenarios["review"].result()
    return built


@pytest.fixture(scope="module")
def lifecycle(scenarios: dict[str, Future[Any]]) -> Lifecycle:
    built: Lifecycle = scenarios["lifecycle"].result()
    return built


# -- planning writes nothing and shows everything ----------------------------------------------


def test_a_pass_under_required_approval_writes_nothing_to_syncro(review: Review) -> None:
    r = review
    assert r.writes_while_pending == 0
    assert all(lines == [] for lines in r.after_planning.values())
    assert r.planned.summary["approve"] == f"sync-daemon plan approve {r.planned.summary['run_id']}"
    assert {c["status"] for c in r.planned.changes()} == {"planned"}


def test_the_pass_logs_plan_pending_with_the_command_to_approve_it(review: Review) -> None:
    events = review.planned.result.log_events()
    pending = [e for e in events if e["event"] == "plan.pending"]
    assert len(pending) == 1
    assert pending[0]["changes"] == 4  # the product and three lines
    assert pending[0]["run_id"] == review.planned.summary["run_id"]
    finished = [e for e in events if e["event"] == "sync.finished"]
    assert finished[0]["status"] == "pending"


def test_plan_show_prints_every_change_and_how_to_approve(review: Review) -> None:
    r = review
    run_id = r.planned.summary["run_id"]
    assert r.shown_text.code == 0, r.shown_text.stderr
    text = r.shown_text.stdout
    assert f"plan {run_id} pending" in text
    for name in r.customers:
        assert f"{name} → {name}: created PPE-BUSINESS quantity" in text
    assert f"sync-daemon plan approve {run_id}" in text
    # Without a run id: every pending plan, here the one.
    assert r.shown_pending.stdout == r.shown_text.stdout


def test_plan_show_json_lists_changes_with_their_status(review: Review) -> None:
    data = review.shown_json
    assert data["status"] == "pending"
    assert data["pending"] == 4
    assert [c["seq"] for c in data["changes"]] == [1, 2, 3, 4]
    assert {c["status"] for c in data["changes"]} == {"pending"}
    assert {c["customer_id"] for c in data["changes"][1:]} == {
        str(o.eid) for o in review.orgs.values()}


# -- approving one customer, then the rest -----------------------------------------------------


def test_approve_only_applies_that_customer_and_the_product_it_needs(review: Review) -> None:
    r = review
    assert r.first_approval.code == 0, r.first_approval.result.stderr
    assert [c["action"] for c in r.first_approval.changes()] == ["product.created",
                                                                 "line.created"]
    assert [ln.quantity for ln in r.after_first_approval["Alder Dental"]] == [25]
    assert r.after_first_approval["Birch Law"] == []
    assert r.after_first_approval["Cedar Clinic"] == []
    statuses = [c["status"] for c in r.shown_after_first["changes"]]
    assert statuses.count("applied") == 2
    assert statuses.count("pending") == 2
    assert r.shown_after_first["status"] == "pending"


def test_a_change_whose_syncro_state_moved_is_refused_the_rest_applied(review: Review) -> None:
    r = review
    assert r.second_approval.code == 1
    assert r.second_approval.summary["status"] == "partial"
    statuses = {c["customer"]: c["status"] for c in r.second_approval.changes()}
    assert statuses == {"Birch Law → Birch Law": "applied",
                        "Cedar Clinic → Cedar Clinic": "refused"}
    refused = r.second_approval.summary["counts"]["changes_refused"]
    assert refused == 1
    assert [ln.quantity for ln in r.after_second_approval["Birch Law"]] == [15]
    assert r.after_second_approval["Cedar Clinic"] == []
    assert r.after_second_approval["Alder Dental"] == r.after_first_approval["Alder Dental"]


def test_a_fully_decided_plan_is_approved_and_cannot_be_approved_again(review: Review) -> None:
    r = review
    assert r.shown_after_second["status"] == "approved"
    cedar = [c for c in r.shown_after_second["changes"] if c["status"] == "refused"]
    assert len(cedar) == 1
    assert "plan again" in cedar[0]["error"]
    assert r.again.code == 1
    assert "is approved" in r.again.stderr


def test_replanning_after_a_refusal_converges(review: Review) -> None:
    r = review
    assert [c["customer"] for c in r.replanned.changes()] == ["Cedar Clinic → Cedar Clinic"]
    assert r.last_approval.code == 0, r.last_approval.result.stderr
    assert r.settled.code == 0
    assert r.settled.summary["status"] == "succeeded"  # nothing left: no plan to approve
    assert r.settled.changes() == []
    for name, customer in r.customers.items():
        assert [ln.quantity for ln in r.world.vendor_lines(customer.schedule_id)] == [
            {"Alder Dental": 25, "Birch Law": 15, "Cedar Clinic": 12}[name]]


def test_approvals_are_runs_of_their_own_with_the_audit_entries(review: Review) -> None:
    r = review
    approvals = [run for run in r.runs if run.trigger == "approval"]
    assert len(approvals) == 3
    assert sorted(run.status for run in approvals) == ["partial", "succeeded", "succeeded"]
    assert [run.status for run in r.runs if run.trigger == "manual"] == [
        "succeeded", "pending", "pending"]
    audited = {row["run_id"] for row in r.history}
    assert audited == {run.run_id for run in approvals}
    created = [row for row in r.history if row["action"] == "line.created"]
    assert len(created) == 3


# -- superseded, rejected, unknown -------------------------------------------------------------


def test_a_later_pass_supersedes_a_pending_plan(lifecycle: Lifecycle) -> None:
    lc = lifecycle
    assert lc.approve_superseded.code == 1
    assert "superseded" in lc.approve_superseded.stderr
    assert lc.writes == 0


def test_only_naming_no_customer_of_the_plan_is_a_usage_error(lifecycle: Lifecycle) -> None:
    result = lifecycle.wrong_customer
    assert result.code == 2
    assert "--only Nobody Ltd" in result.stderr


def test_an_unknown_run_id_is_a_usage_error(lifecycle: Lifecycle) -> None:
    assert lifecycle.unknown.code == 2
    assert "no stored plan" in lifecycle.unknown.stderr


def test_reject_discards_the_plan(lifecycle: Lifecycle) -> None:
    lc = lifecycle
    assert lc.reject.code == 0, lc.reject.stderr
    assert "Rejected plan" in lc.reject.stdout
    assert lc.approve_rejected.code == 1
    assert "is rejected" in lc.approve_rejected.stderr
    assert lc.reject_again.code == 1
    assert lc.shown_none.stdout.strip() == "No plan is waiting for approval."


def test_a_plan_older_than_the_next_scheduled_run_is_superseded(lifecycle: Lifecycle) -> None:
    lc = lifecycle
    assert lc.approve_stale.code == 1
    assert "superseded" in lc.approve_stale.stderr
    assert lc.stale_plan["status"] == "superseded"
    assert {c["status"] for c in lc.stale_plan["changes"]} == {"superseded"}


def test_status_shows_the_plan_waiting(lifecycle: Lifecycle) -> None:
    (proofpoint,) = lifecycle.status
    assert proofpoint["pending_plan"] == {"run_id": lifecycle.third.summary["run_id"],
                                          "changes": 2}


# -- Cloud-iQ: a one-time charge approved lands once ----------------------------------------------


@dataclass
class Charges:
    world: CloudiqWorld
    customer: Customer
    planned: Sync
    charges_while_pending: int
    approval: Sync
    after: Sync
    again: Sync


@pytest.fixture(scope="module")
def charges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Charges]:
    """Alder went from 20 to 23 Premium seats on the 19th of last month: the statement brings a
    seat line and a proration charge. Plan under approval, approve, then sync twice."""
    last, long_ago = Month.from_now(-1), Month.from_now(-9)
    with open_cloudiq_world(tmp_path_factory.mktemp("charges")) as world:
        world.config(cloudiq={"approval": "required", "schedule": "0 5 * * *"})
        customer = world.customer("Alder Dental Group")
        alder = world.tenant("Alder Dental")
        premium = world.subscribe(alder, PREMIUM, 20, start_on=long_ago.day(19))
        world.ciq.set_quantity(premium.id, 23, on=last.day(19))
        world.close(last)
        world.map(alder, customer)
        planned = world.sync()
        charges_while_pending = len(world.charge_lines(customer.schedule_id))
        approval = approve(world, pending_plan(planned))
        after, again = world.sync(), world.sync()
        yield Charges(world, customer, planned, charges_while_pending, approval, after, again)


def test_an_approved_charge_lands_once_and_the_next_passes_have_nothing_to_do(
        charges: Charges) -> None:
    c = charges
    assert c.charges_while_pending == 0
    assert [r["action"] for r in c.planned.changes("charge.added")] == ["charge.added"]
    assert c.approval.code == 0, c.approval.result.stderr
    assert len(c.approval.changes("charge.added")) == 1
    assert len(c.world.charge_lines(c.customer.schedule_id)) == 1
    assert [ln.quantity for ln in c.world.recurring_lines(c.customer.schedule_id)] == [23]
    for later in (c.after, c.again):
        assert later.code == 0, later.result.stderr
        assert later.summary["status"] == "succeeded"
        assert later.changes() == []
