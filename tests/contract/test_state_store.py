"""The StateStore contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses
import multiprocessing
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection

from sync_daemon.errors import ConfigError, InvariantError
from sync_daemon.state import (
    AuditEntry,
    ManagedLine,
    ManagedProduct,
    PlannedChange,
    StateStore,
    StateTransaction,
    StoredPlan,
    VendorCustomer,
)
from sync_daemon.state.store import alembic_config
from sync_daemon.state.tables import metadata

if TYPE_CHECKING:
    from tests.contract.conftest import TickingClock

T = TypeVar("T")
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
SECRET = "hunter2-not-for-logs"

PRODUCT = ManagedProduct(
    vendor="cloudiq",
    sku="CFQ7TTC0LF8R:0001",
    syncro_product_id=15_000_001,
    origin="created",
    name="PC_CFQ7TTC0LF8R:0001",
)
LINE = ManagedLine(
    syncro_line_id=88_000_003,
    schedule_id=4_100,
    vendor="cloudiq",
    vendor_customer_id="tenant-1",
    sku="CFQ7TTC0LF8R:0001",
    syncro_product_id=15_000_001,
    last_retail=Decimal("12.5000"),
    last_cost=Decimal("10.0000"),
    last_quantity=Decimal("7"),
    origin="created",
)
CUSTOMER = VendorCustomer(
    vendor="proofpoint", vendor_customer_id="acme.example", name="Acme", status="not_mapped"
)


class _AnyTime:
    """Equal to any aware datetime, for fields the store stamps."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, datetime) and other.tzinfo is not None

    __hash__ = None  # type: ignore[assignment]


ANY_TIME: Any = _AnyTime()


def _start_run(store: StateStore, vendor: str = "cloudiq") -> str:
    with store.transaction() as tx:
        return tx.start_run(vendor, "schedule").run_id


def _with_engine(url: str, work: Callable[[Connection], T]) -> T:
    """Run `work(connection)` on a plain SQLAlchemy connection to the same database."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            return work(connection)
    finally:
        engine.dispose()


# -- schema and migrations --------------------------------------------------------------------


def test_open_migrates_to_head_and_reopening_changes_nothing(database_url: str) -> None:
    with StateStore.open(database_url) as store:
        assert store.schema_version() == HEAD == "0003_plans"
        run_id = _start_run(store)
    # A plain postgresql:// URL is mapped to psycopg 3.
    plain = database_url.replace("postgresql+psycopg://", "postgresql://")
    with StateStore.open(plain) as again:
        assert again.schema_version() == HEAD
        with again.transaction() as tx:
            assert tx.get_run(run_id) is not None


def test_migrations_build_exactly_the_tables_the_code_declares(database_url: str) -> None:
    StateStore.open(database_url).close()
    diffs = _with_engine(
        database_url,
        lambda connection: compare_metadata(MigrationContext.configure(connection), metadata),
    )
    assert diffs == []


def test_downgrade_to_base_drops_everything_and_open_rebuilds_it(database_url: str) -> None:
    StateStore.open(database_url).close()

    def downgrade(connection: Connection) -> list[str]:
        command.downgrade(alembic_config(connection), "base")
        return sorted(inspect(connection).get_table_names())

    assert _with_engine(database_url, downgrade) == ["alembic_version"]
    with StateStore.open(database_url) as store:
        assert store.schema_version() == HEAD


def test_0003_allows_pending_and_approval_runs_and_its_downgrade_keeps_them(
        database_url: str) -> None:
    with StateStore.open(database_url) as store:
        plan_id = _plan(store)
        with store.transaction() as tx:
            approval = tx.start_run("proofpoint", "approval").run_id
            tx.append_audit([AuditEntry(run_id=approval, vendor="proofpoint",
                                        action="line.created", target="line:1", reason="r")])

    def downgrade(connection: Connection) -> list[tuple[str, str, str]]:
        command.downgrade(alembic_config(connection), "0002_run_locks")
        rows = connection.execute(text("SELECT run_id, trigger, status FROM sync_runs"))
        return sorted((r[0], r[1], r[2]) for r in rows)

    assert _with_engine(database_url, downgrade) == sorted([
        (plan_id, "manual", "stopped"), (approval, "manual", "running")])
    with StateStore.open(database_url) as store:  # back up to the head
        assert store.schema_version() == HEAD
        with store.transaction() as tx:
            assert len(tx.list_audit(limit=10)) == 1
            assert tx.list_plans(limit=None) == []


def _open_and_write(url: str, vendor: str, ready: Any) -> None:
    ready.wait(timeout=20)
    with StateStore.open(url) as store:
        _start_run(store, vendor)


@pytest.mark.parametrize("start", ["threads", "processes"])
def test_stores_opening_a_new_database_at_once_migrate_it_once(
    database_url: str, start: str
) -> None:
    # Processes share only the database lock; threads also share Alembic's module globals.
    fork = multiprocessing.get_context("fork")
    ready = fork.Barrier(4) if start == "processes" else threading.Barrier(4)
    spawn = fork.Process if start == "processes" else threading.Thread
    workers = [
        spawn(target=_open_and_write, args=(database_url, vendor, ready), daemon=True)
        for vendor in "abcd"
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30  # a broken lock must fail the test, not hang the run
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    assert not any(worker.is_alive() for worker in workers)
    with StateStore.open(database_url) as store, store.transaction() as tx:
        assert store.schema_version() == HEAD
        assert sorted(run.vendor for run in tx.list_runs()) == ["a", "b", "c", "d"]


def test_a_second_store_reads_while_the_first_holds_a_write(
    store: StateStore, store_url: str
) -> None:
    with StateStore.open(store_url) as other:
        with store.transaction() as tx:
            run = tx.start_run("cloudiq", "manual")
            with other.transaction() as peek:  # would wait on a lock if readers were blocked
                assert peek.get_run(run.run_id) is None
        with other.transaction() as peek:
            assert peek.get_run(run.run_id) == run


# -- value types ------------------------------------------------------------------------------

AMOUNTS = ["19.8000", "0.0001", "-0.0001", "0", "1234.5", "99999999999999.9999"]


def test_money_round_trips_exactly(store: StateStore) -> None:
    with store.transaction() as tx:
        for n, amount in enumerate(AMOUNTS):
            tx.put_managed_product(
                dataclasses.replace(
                    PRODUCT,
                    sku=f"SKU-{n}",
                    syncro_product_id=n + 1,
                    last_price_cost=Decimal(amount),
                    last_price_retail=Decimal(amount),
                )
            )
    with store.transaction() as tx:
        stored = [tx.get_managed_product("cloudiq", f"SKU-{n}") for n in range(len(AMOUNTS))]
    for amount, product in zip(AMOUNTS, stored, strict=True):
        assert product is not None
        assert product.last_price_cost == Decimal(amount)
        assert str(product.last_price_retail) == str(Decimal(amount).quantize(Decimal("0.0001")))


@pytest.mark.parametrize(
    "amount",
    [Decimal("0.00001"), Decimal("100000000000000"), Decimal("NaN"), 19.8],
    ids=["five-places", "fifteen-digits", "nan", "float"],
)
def test_money_that_cannot_be_stored_exactly_is_refused(store: StateStore, amount: Any) -> None:
    with pytest.raises(InvariantError, match="cannot store"), store.transaction() as tx:
        tx.put_managed_product(dataclasses.replace(PRODUCT, last_price_cost=amount))


def test_large_syncro_ids_round_trip(store: StateStore) -> None:
    big = 2**53 + 1  # beyond what a float (or a 32-bit int) holds exactly
    line = dataclasses.replace(LINE, syncro_line_id=big, schedule_id=2**40, syncro_product_id=big)
    with store.transaction() as tx:
        tx.put_managed_product(dataclasses.replace(PRODUCT, syncro_product_id=big))
        tx.put_managed_line(line)
        tx.put_vendor_customer(dataclasses.replace(CUSTOMER, psa_customer_id=big))
        run_id = tx.start_run("cloudiq", "manual").run_id
        tx.begin_intent("k", run_id, "charge", {})
        tx.settle_intent("k", 2**62)
    with store.transaction() as tx:
        assert tx.find_managed_product_by_syncro_id(big) is not None
        assert tx.get_managed_line(big) == dataclasses.replace(line, updated_at=ANY_TIME)
        customer = tx.get_vendor_customer("proofpoint", "acme.example")
        assert customer is not None
        assert customer.psa_customer_id == big
        intent = tx.get_intent("k")
        assert intent is not None
        assert intent.result_id == 2**62


def test_timestamps_come_back_aware_in_utc(store: StateStore) -> None:
    seen = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    with store.transaction() as tx:
        tx.put_vendor_customer(dataclasses.replace(CUSTOMER, last_seen_at=seen))
    with store.transaction() as tx:
        customer = tx.get_vendor_customer("proofpoint", "acme.example")
    assert customer is not None
    assert customer.last_seen_at == seen
    assert customer.last_seen_at.tzinfo == UTC
    assert customer.last_seen_at.hour == 10


def test_touching_vendor_customers_sets_only_last_seen_at(store: StateStore) -> None:
    other = dataclasses.replace(CUSTOMER, vendor_customer_id="bolt.example", name="Bolt")
    elsewhere = dataclasses.replace(CUSTOMER, vendor="cloudiq")
    seen = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    with store.transaction() as tx:
        for row in (CUSTOMER, other, elsewhere):
            tx.put_vendor_customer(row)
    with store.transaction() as tx:
        before = tx.get_vendor_customer("proofpoint", "acme.example")
        tx.touch_vendor_customers("proofpoint", [("acme.example", ""), ("missing", "")], seen)
        tx.touch_vendor_customers("proofpoint", [], seen)
    with store.transaction() as tx:
        touched = tx.get_vendor_customer("proofpoint", "acme.example")
        untouched = [tx.get_vendor_customer("proofpoint", "bolt.example"),
                     tx.get_vendor_customer("cloudiq", "acme.example")]
    assert before is not None
    assert touched == dataclasses.replace(before, last_seen_at=seen)
    assert all(row is not None and row.last_seen_at != seen for row in untouched)


def test_managed_line_ids_are_every_vendors(store: StateStore) -> None:
    with store.transaction() as tx:
        assert tx.managed_line_ids() == frozenset()
        tx.put_managed_line(LINE)
        tx.put_managed_line(dataclasses.replace(LINE, syncro_line_id=7, vendor="proofpoint",
                                                sku="PPE-BUSINESS"))
        assert tx.managed_line_ids() == {LINE.syncro_line_id, 7}


def test_naive_timestamps_are_refused(store: StateStore) -> None:
    naive = datetime(2026, 3, 1, 12, 30)  # noqa: DTZ001  the point of the test
    with pytest.raises(InvariantError, match="naive"), store.transaction() as tx:
        tx.put_vendor_customer(dataclasses.replace(CUSTOMER, last_seen_at=naive))


# -- records ----------------------------------------------------------------------------------


def test_vendor_customers_put_get_list_upsert_delete(
    store: StateStore, clock: TickingClock
) -> None:
    mapped = VendorCustomer(
        vendor="proofpoint",
        vendor_customer_id="beta.example",
        name="Beta",
        status="mapped",
        psa_customer_id=101,
        psa_customer_name="Beta Ltd",
        schedule_id=7,
        minimum=10,
        included=2,
    )
    motion = VendorCustomer(
        vendor="cloudiq",
        vendor_customer_id="t-1",
        billing_motion="csp",
        name="T",
        status="detached",
    )
    with store.transaction() as tx:
        first = tx.put_vendor_customer(CUSTOMER)
        assert first == dataclasses.replace(CUSTOMER, updated_at=clock.now)
        tx.put_vendor_customer(mapped)
        tx.put_vendor_customer(motion)
    with store.transaction() as tx:
        assert tx.get_vendor_customer("proofpoint", "acme.example") == first
        assert tx.get_vendor_customer("cloudiq", "t-1") is None
        assert tx.get_vendor_customer("cloudiq", "t-1", "csp") is not None
        assert [c.name for c in tx.list_vendor_customers("proofpoint")] == ["Acme", "Beta"]
        assert tx.list_vendor_customers("proofpoint", status="mapped") == [
            dataclasses.replace(mapped, updated_at=ANY_TIME)
        ]
        later = dataclasses.replace(
            first, status="mapped", psa_customer_id=5, first_seen_at=clock.now + timedelta(days=9)
        )
        updated = tx.put_vendor_customer(later)
    assert updated.first_seen_at == first.first_seen_at  # the first sighting is history
    assert updated.updated_at > first.updated_at
    assert (updated.status, updated.psa_customer_id) == ("mapped", 5)
    with store.transaction() as tx:
        assert tx.delete_vendor_customer("proofpoint", "acme.example") is True
        assert tx.delete_vendor_customer("proofpoint", "acme.example") is False
        assert [c.name for c in tx.list_vendor_customers("proofpoint")] == ["Beta"]


def test_managed_products_put_get_find_list_upsert_delete(store: StateStore) -> None:
    other = dataclasses.replace(PRODUCT, vendor="proofpoint", sku="BEP", syncro_product_id=9)
    with store.transaction() as tx:
        stored = tx.put_managed_product(PRODUCT)
        tx.put_managed_product(other)
    with store.transaction() as tx:
        assert tx.get_managed_product("cloudiq", PRODUCT.sku) == stored
        assert tx.find_managed_product_by_syncro_id(9) == dataclasses.replace(
            other, updated_at=ANY_TIME
        )
        assert tx.find_managed_product_by_syncro_id(404) is None
        assert [p.sku for p in tx.list_managed_products()] == [PRODUCT.sku, "BEP"]
        assert [p.sku for p in tx.list_managed_products("proofpoint")] == ["BEP"]
        repriced = tx.put_managed_product(
            dataclasses.replace(stored, last_price_retail=Decimal("3.3"), origin="adopted")
        )
        assert (repriced.last_price_retail, repriced.origin) == (Decimal("3.3"), "adopted")
        assert repriced.created_at == stored.created_at
        assert tx.delete_managed_product("proofpoint", "BEP") is True
        assert tx.list_managed_products() == [repriced]


def test_a_syncro_product_id_belongs_to_one_sku(store: StateStore) -> None:
    with store.transaction() as tx:
        tx.put_managed_product(PRODUCT)
    with pytest.raises(InvariantError, match="refused"), store.transaction() as tx:
        tx.put_managed_product(dataclasses.replace(PRODUCT, sku="OTHER"))


def test_managed_lines_put_get_list_upsert_delete(store: StateStore) -> None:
    second = dataclasses.replace(LINE, syncro_line_id=88_000_001, schedule_id=4_200, sku="B")
    third = dataclasses.replace(LINE, syncro_line_id=88_000_002, vendor="proofpoint", sku="C")
    with store.transaction() as tx:
        for line in (LINE, second, third):
            tx.put_managed_line(line)
    with store.transaction() as tx:
        assert [x.syncro_line_id for x in tx.list_managed_lines()] == [
            88_000_002,
            88_000_003,
            88_000_001,
        ]
        assert [x.sku for x in tx.list_managed_lines(vendor="cloudiq")] == [LINE.sku, "B"]
        assert [x.sku for x in tx.list_managed_lines(schedule_id=4_100)] == ["C", LINE.sku]
        assert [x.sku for x in tx.list_managed_lines("cloudiq", 4_200)] == ["B"]
        written = tx.put_managed_line(dataclasses.replace(LINE, last_quantity=Decimal("9")))
        assert tx.get_managed_line(LINE.syncro_line_id) == written
        assert written.last_quantity == Decimal("9")
        assert tx.delete_managed_line(second.syncro_line_id) is True
        assert tx.delete_managed_line(second.syncro_line_id) is False
        assert tx.get_managed_line(second.syncro_line_id) is None


def test_one_line_per_schedule_customer_and_sku(store: StateStore) -> None:
    with store.transaction() as tx:
        tx.put_managed_line(LINE)
    with pytest.raises(InvariantError, match="refused"), store.transaction() as tx:
        tx.put_managed_line(dataclasses.replace(LINE, syncro_line_id=1))


def test_runs_start_finish_get_and_list_newest_first(store: StateStore) -> None:
    with store.transaction() as tx:
        first = tx.start_run("cloudiq", "schedule")
        second = tx.start_run("proofpoint", "manual")
        third = tx.start_run("cloudiq", "manual")
    assert (first.status, first.finished_at, first.counts) == ("running", None, {})
    with store.transaction() as tx:
        done = tx.finish_run(first.run_id, "partial", {"lines_updated": 3, "skipped": 1}, "one 422")
        assert tx.get_run(first.run_id) == done
        assert tx.get_run("0" * 32) is None
        assert [r.run_id for r in tx.list_runs()] == [third.run_id, second.run_id, first.run_id]
        assert [r.run_id for r in tx.list_runs(vendor="cloudiq", limit=1)] == [third.run_id]
    assert done.status == "partial"
    assert done.counts == {"lines_updated": 3, "skipped": 1}
    assert done.message == "one 422"
    assert done.finished_at is not None
    assert done.finished_at > done.started_at


@pytest.mark.parametrize("status", ["running", "bogus"])
def test_a_run_finishes_once_and_in_a_final_status(store: StateStore, status: Any) -> None:
    run_id = _start_run(store)
    with pytest.raises(InvariantError), store.transaction() as tx:
        tx.finish_run(run_id, status, {})
    with store.transaction() as tx:
        tx.finish_run(run_id, "succeeded", {})
    with pytest.raises(InvariantError, match="already finished"), store.transaction() as tx:
        tx.finish_run(run_id, "failed", {})


def test_audit_log_appends_and_lists_newest_first(store: StateStore) -> None:
    run_a, run_b = _start_run(store), _start_run(store, "proofpoint")
    entries = [
        AuditEntry(
            run_id=run_a,
            vendor="cloudiq",
            action="product.created",
            target="product:15000001",
            reason="new SKU",
        ),
        AuditEntry(
            run_id=run_a,
            vendor="cloudiq",
            action="line.quantity_set",
            target="line:88000003",
            customer="Acme",
            field="quantity",
            before="3",
            after="5",
            reason="licences changed",
        ),
        AuditEntry(
            run_id=run_b,
            vendor="proofpoint",
            action="line.price_set",
            target="line:1",
            field="price_retail",
            before=str(Decimal("1.5000")),
            after="1.75",
            reason="price list",
        ),
    ]
    with store.transaction() as tx:
        tx.append_audit(entries[:2])
        tx.append_audit([])
    with store.transaction() as tx:
        tx.append_audit(entries[2:])
    with store.transaction() as tx:
        newest = tx.list_audit()
        assert [e.target for e in newest] == ["line:1", "line:88000003", "product:15000001"]
        assert [dataclasses.replace(e, id=None) for e in reversed(newest)] == entries
        assert [e.target for e in tx.list_audit(limit=1)] == ["line:1"]
        assert [e.target for e in tx.list_audit(vendor="cloudiq")] == [
            "line:88000003",
            "product:15000001",
        ]
        assert [e.target for e in tx.list_audit(run_id=run_b)] == ["line:1"]


def test_audit_log_is_append_only() -> None:
    audit_methods = {name for name in dir(StateTransaction) if "audit" in name}
    assert audit_methods == {"append_audit", "list_audit"}


def test_an_audit_entry_needs_a_known_run(store: StateStore) -> None:
    orphan = AuditEntry(run_id="nope", vendor="x", action="a", target="t", reason="r")
    with pytest.raises(InvariantError), store.transaction() as tx:
        tx.append_audit([orphan])


def test_statements_are_marked_applied_once(store: StateStore) -> None:
    run_id = _start_run(store)
    with store.transaction() as tx:
        assert tx.has_applied_statements("cloudiq") is False
        assert tx.is_statement_applied("cloudiq", "2026-05") is False
        assert tx.mark_statement_applied("cloudiq", "2026-05", run_id) is True
        assert tx.has_applied_statements("cloudiq") is True
        assert tx.has_applied_statements("proofpoint") is False
        assert tx.mark_statement_applied("cloudiq", "2026-05", run_id) is False
    with store.transaction() as tx:
        assert tx.is_statement_applied("cloudiq", "2026-05") is True
        assert tx.is_statement_applied("proofpoint", "2026-05") is False


def test_write_intents_begin_once_then_settle_or_abandon(store: StateStore) -> None:
    run_id = _start_run(store)
    key = "cloudiq:charge:2026-05:tenant-1:CFQ7TTC0LF8R:0001"
    payload = {"amount": "12.50", "quantity": 3, "lines": [{"sku": "A"}]}
    with store.transaction() as tx:
        assert tx.begin_intent(key, run_id, "charge", payload) is True
        assert tx.begin_intent(key, run_id, "charge", {"other": True}) is False
        assert tx.begin_intent("second", run_id, "charge", {}) is True
    with store.transaction() as tx:
        pending = tx.list_pending_intents()
        assert [i.key for i in pending] == [key, "second"]
        assert (pending[0].payload, pending[0].status, pending[0].result_id) == (
            payload,
            "pending",
            None,
        )
        settled = tx.settle_intent(key, 77_000_001)
        abandoned = tx.abandon_intent("second")
    assert (settled.status, settled.result_id) == ("settled", 77_000_001)
    assert settled.settled_at is not None
    assert settled.settled_at > settled.created_at
    assert (abandoned.status, abandoned.result_id) == ("abandoned", None)
    with store.transaction() as tx:
        assert tx.list_pending_intents() == []
        assert tx.get_intent(key) == settled
        assert tx.get_intent("missing") is None
        assert tx.begin_intent(key, run_id, "charge", payload) is False  # settled keys stay taken
    with pytest.raises(InvariantError, match="no pending"), store.transaction() as tx:
        tx.settle_intent(key, 1)


# -- plans kept for approval -------------------------------------------------------------------


def _plan(store: StateStore, vendor: str = "proofpoint", changes: int = 2) -> str:
    with store.transaction() as tx:
        run_id = tx.start_run(vendor, "manual").run_id
        tx.finish_run(run_id, "pending", {"changes_planned": changes})
        tx.save_plan(
            StoredPlan(run_id=run_id, vendor=vendor, status="pending",
                       created_at=datetime.now(UTC),
                       notices=[{"level": "warning", "kind": "k", "message": "Ä → ü"}],
                       seats={"before": 0, "after": 40}),
            [PlannedChange(run_id=run_id, seq=seq, kind="CreateLine", customer="101",
                           change={"type": "CreateLine", "retail": "3.1000"},
                           fingerprint=f"f{seq}") for seq in range(1, changes + 1)])
    return run_id


def test_a_stored_plan_reads_back_with_its_changes_in_order(store: StateStore) -> None:
    run_id = _plan(store, changes=3)
    with store.transaction() as tx:
        plan = tx.get_plan(run_id)
        changes = tx.list_planned_changes(run_id)
        run = tx.get_run(run_id)
    assert plan is not None
    assert plan.status == "pending"
    assert plan.decided_at is None
    assert plan.notices == [{"level": "warning", "kind": "k", "message": "Ä → ü"}]
    assert plan.seats == {"before": 0, "after": 40}
    assert [(c.seq, c.status, c.fingerprint) for c in changes] == [
        (1, "pending", "f1"), (2, "pending", "f2"), (3, "pending", "f3")]
    assert changes[0].change == {"type": "CreateLine", "retail": "3.1000"}
    assert run is not None
    assert run.status == "pending"


def test_deciding_a_change_happens_once(store: StateStore) -> None:
    run_id = _plan(store)
    with store.transaction() as tx:
        approval = tx.start_run("proofpoint", "approval").run_id
        tx.decide_planned_change(run_id, 1, "applied", applied_run_id=approval)
        tx.decide_planned_change(run_id, 2, "refused", applied_run_id=approval,
                                 message="moved")
    with pytest.raises(InvariantError, match="already decided"), store.transaction() as tx:
        tx.decide_planned_change(run_id, 1, "failed")
    with store.transaction() as tx:
        changes = tx.list_planned_changes(run_id)
    assert [(c.status, c.applied_run_id, c.message) for c in changes] == [
        ("applied", approval, None), ("refused", approval, "moved")]


def test_closing_a_plan_closes_its_pending_changes_unless_approved(store: StateStore) -> None:
    rejected, approved = _plan(store), _plan(store)
    with store.transaction() as tx:
        tx.decide_planned_change(rejected, 1, "applied")
        assert tx.close_plan(rejected, "rejected", message="no") is True
        assert tx.close_plan(rejected, "superseded") is False  # already closed
        assert tx.close_plan(approved, "approved") is True
        assert [c.status for c in tx.list_planned_changes(rejected)] == ["applied", "rejected"]
        assert [c.status for c in tx.list_planned_changes(approved)] == ["pending", "pending"]
        closed = tx.get_plan(rejected)
    assert closed is not None
    assert closed.status == "rejected"
    assert closed.decided_at is not None


def test_plans_list_newest_first_by_vendor_and_status(store: StateStore) -> None:
    older, other, newer = _plan(store), _plan(store, "cloudiq"), _plan(store)
    with store.transaction() as tx:
        tx.close_plan(older, "superseded")
        assert [p.run_id for p in tx.list_plans(limit=None)] == [newer, other, older]
        assert [p.run_id for p in tx.list_plans("proofpoint", status="pending")] == [newer]
        assert tx.get_plan("missing") is None


# -- transactions -----------------------------------------------------------------------------


def test_an_exception_rolls_back_everything_in_the_transaction(store: StateStore) -> None:
    def write_then_fail() -> None:
        with store.transaction() as tx:
            run_id = tx.start_run("cloudiq", "manual").run_id
            tx.put_managed_product(PRODUCT)
            tx.put_managed_line(LINE)
            tx.begin_intent("k", run_id, "charge", {})
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    with store.transaction() as tx:
        assert tx.list_runs() == []
        assert tx.list_managed_products() == []
        assert tx.list_managed_lines() == []
        assert tx.list_pending_intents() == []


def test_a_refused_write_rolls_back_the_whole_transaction(store: StateStore) -> None:
    with store.transaction() as tx:
        tx.put_managed_product(PRODUCT)

    def write_then_conflict() -> None:
        with store.transaction() as tx:
            tx.put_managed_line(LINE)
            tx.put_managed_product(dataclasses.replace(PRODUCT, sku="OTHER"))

    with pytest.raises(InvariantError):
        write_then_conflict()
    with store.transaction() as tx:
        assert tx.list_managed_lines() == []


# -- opening ----------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://sync:{SECRET}@db.internal/state",
        f"no scheme, just {SECRET}",
        f"postgresql://sync:{SECRET}@127.0.0.1:{_closed_port()}/state",
        f"postgresql+psycopg2://sync:{SECRET}@127.0.0.1/state",
    ],
    ids=["unsupported", "not-a-url", "unreachable", "driver-not-installed"],
)
def test_a_url_that_cannot_be_opened_is_a_config_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        StateStore.open(url)
    assert SECRET not in str(raised.value)
    assert raised.value.__cause__ is None
    assert "***" in str(raised.value) or "://" not in url


def test_a_sqlite_path_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot open state database"):
        StateStore.open(f"sqlite:///{tmp_path / 'file' / 'state.db'}")


def test_sqlite_creates_the_parent_directory(tmp_path: Path) -> None:
    with StateStore.open(f"sqlite:///{tmp_path / 'new' / 'dir' / 'state.db'}") as store:
        assert store.schema_version() == HEAD


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    StateStore.open(f"sqlite:///{tmp_path / 'state.db'}").close()
    with closing(sqlite3.connect(tmp_path / "state.db")) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_database_from_a_newer_version_is_a_config_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore.open(url).close()
    _with_engine(url, lambda c: c.execute(text("UPDATE alembic_version SET version_num = '9999'")))
    with pytest.raises(ConfigError, match="newer sync-daemon"):
        StateStore.open(url)
