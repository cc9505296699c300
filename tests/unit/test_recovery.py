"""Level-write intents: what one holds, the reconcile decision after a crash, and how the
Applier writes ahead.

`decide` is pure (an intent and what Syncro holds now → recover or abandon); the reconcile
step and the Applier run over a real SQLite state database with stand-ins for Syncro.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest

from sync_daemon.apply import Applier
from sync_daemon.connectors.syncro import Product, Schedule, SyncroClient
from sync_daemon.errors import InvariantError, NotFoundError
from sync_daemon.plan import CustomerRef, DeleteLine, UpdateLine, UpdateProductPrice, describe
from sync_daemon.recovery import (
    RECOVERED,
    LevelIntent,
    decide,
    level_intent,
    recover_level_writes,
)
from sync_daemon.state import StateStore, WriteIntent
from tests.support.builders import (
    T0,
    VENDOR,
    D,
    line,
    managed_line,
    managed_product,
    product,
    schedule,
)

RUN = "crashed-run"
REF = CustomerRef("org-1", "Alder Dental", "Alder Dental Ltd")
SKU = "PPE-BUSINESS"
QUANTITY = UpdateLine(REF, 1, 11, SKU, "the vendor's count changed from 4 to 6",
                      quantity_before=D(4), quantity_after=6)
PRICE = UpdateLine(REF, 1, 11, SKU, "the price list changed", quantity_before=D(4),
                   retail_before=D("3.10"), retail_after=D("3.35"))
DELETE = DeleteLine(REF, 1, 12, "PPE-ADVANCED", D(3), "package changed to PPE-BUSINESS")
PRODUCT = UpdateProductPrice(SKU, 7, "PC_PPE-BUSINESS", D("1.55"), D("1.80"), D("3.10"),
                             D("3.35"), "Syncro's price differs from the vendor's price list")


def intent(change: UpdateLine | UpdateProductPrice | DeleteLine) -> LevelIntent:
    target = (f"product:{change.product_id}" if isinstance(change, UpdateProductPrice)
              else f"line:{change.line_id}")
    return level_intent(change, vendor=VENDOR, run_id=RUN,
                        rows=describe(change, target=target))


def invoice(*lines: tuple[int, int, str, str]) -> Schedule:
    """Schedule 1 with lines (id, quantity, retail, cost)."""
    return schedule(1, lines=[line(i, 1, 7, quantity=q, retail=r, cost=c)
                              for i, q, r, c in lines])


# -- what an intent holds ---------------------------------------------------------------------


@pytest.mark.parametrize("change", [QUANTITY, PRICE, DELETE, PRODUCT],
                         ids=["quantity", "line-price", "delete", "product-price"])
def test_an_intent_survives_json_and_holds_the_audit_rows_of_its_change(
    change: UpdateLine | UpdateProductPrice | DeleteLine,
) -> None:
    written = intent(change)
    payload = json.loads(json.dumps(written.payload()))  # the JSON column's round trip
    stored = WriteIntent(key=written.key, run_id=RUN, kind=written.kind, payload=payload,
                         status="pending", created_at=T0)
    assert LevelIntent.from_stored(stored) == written
    assert list(written.rows) == describe(change, target=written.target)


def test_money_and_quantities_are_stored_as_exact_text() -> None:
    payload = intent(PRODUCT).payload()
    assert payload["sets"] == {"cost": "1.80", "retail": "3.35"}
    assert intent(QUANTITY).payload()["sets"] == {"quantity": "6"}


def test_the_key_names_vendor_kind_run_and_target() -> None:
    assert intent(QUANTITY).key == f"{VENDOR}:line_update:{RUN}:line:11"
    assert intent(DELETE).key == f"{VENDOR}:line_delete:{RUN}:line:12"
    assert intent(PRODUCT).key == f"{VENDOR}:product_price:{RUN}:product:7"


@pytest.mark.parametrize("payload", [{}, {"vendor": VENDOR}, {**intent(QUANTITY).payload(),
                                                             "sets": {"quantity": "six"}}])
def test_an_unreadable_payload_is_an_invariant_error(payload: dict[str, object]) -> None:
    stored = WriteIntent(key="k", run_id=RUN, kind="line_update", payload=payload,
                         status="pending", created_at=T0)
    with pytest.raises(InvariantError, match="unreadable payload"):
        LevelIntent.from_stored(stored)


# -- the decision -----------------------------------------------------------------------------

CASES: list[tuple[str, UpdateLine | UpdateProductPrice | DeleteLine, Schedule | Product | None,
                  str, str]] = [
    ("quantity landed", QUANTITY, invoice((11, 6, "3.10", "1.55")), "recover", "holds what"),
    ("quantity never sent", QUANTITY, invoice((11, 4, "3.10", "1.55")), "abandon",
     "quantity 4, not 6"),
    ("quantity changed by hand since", QUANTITY, invoice((11, 9, "3.10", "1.55")), "abandon",
     "quantity 9, not 6"),
    ("price landed, quantity not its business", PRICE, invoice((11, 5, "3.35", "1.55")),
     "recover", "holds what"),
    ("price never sent", PRICE, invoice((11, 4, "3.10", "1.55")), "abandon",
     "retail 3.10, not 3.35"),
    ("line gone", QUANTITY, invoice(), "abandon", "line is gone"),
    ("invoice gone", QUANTITY, None, "abandon", "recurring invoice is gone"),
    ("delete landed", DELETE, invoice((11, 6, "3.10", "1.55")), "recover", "line is gone"),
    ("delete never sent", DELETE, invoice((12, 3, "5.20", "2.60")), "abandon", "still there"),
    ("delete, invoice gone", DELETE, None, "abandon", "recurring invoice is gone"),
    ("prices landed", PRODUCT, product(7, "PC_PPE-BUSINESS", cost="1.80", retail="3.35"),
     "recover", "holds what"),
    ("prices never sent", PRODUCT, product(7, "PC_PPE-BUSINESS", cost="1.55", retail="3.10"),
     "abandon", "cost 1.55, not 1.80, retail 3.10, not 3.35"),
    ("retail repriced by hand since", PRODUCT,
     product(7, "PC_PPE-BUSINESS", cost="1.80", retail="3.99"), "abandon", "retail 3.99"),
    ("product gone", PRODUCT, None, "abandon", "product is gone"),
]


@pytest.mark.parametrize(("change", "found", "outcome", "why"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_an_intent_is_recovered_only_when_syncro_holds_exactly_what_it_set(
    change: UpdateLine | UpdateProductPrice | DeleteLine, found: Schedule | Product | None,
    outcome: str, why: str,
) -> None:
    decision = decide(intent(change), found)
    assert decision.outcome == outcome
    assert why in decision.why


# -- the reconcile step -----------------------------------------------------------------------


@dataclass
class SyncroReads:
    """What the reconcile step reads from Syncro, and how often."""

    schedules: Mapping[int, Schedule | None]
    products: Mapping[int, Product]
    asked: list[str] = field(default_factory=list)

    def get_schedules(self, ids: set[int]) -> dict[int, Schedule | None]:
        self.asked.append(f"schedules {sorted(ids)}")
        return {i: self.schedules.get(i) for i in ids}

    def get_product(self, product_id: int) -> Product:
        self.asked.append(f"product {product_id}")
        if product_id not in self.products:
            raise NotFoundError("gone", status=404)
        return self.products[product_id]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        with opened.transaction() as tx:
            tx.start_run(VENDOR, "manual", run_id=RUN)
            tx.start_run("cloudiq", "manual", run_id="other-vendor")
            tx.put_managed_line(managed_line(11, 1, "org-1", SKU, 7, quantity=4,
                                             retail="3.10", cost="1.55"))
            tx.put_managed_line(managed_line(12, 1, "org-1", "PPE-ADVANCED", 8, quantity=3))
            tx.put_managed_product(managed_product(SKU, 7))
            for change in (QUANTITY, DELETE, PRODUCT):
                begun = intent(change)
                tx.begin_intent(begun.key, RUN, begun.kind, begun.payload())
            elsewhere = level_intent(QUANTITY, vendor="cloudiq", run_id="other-vendor",
                                     rows=describe(QUANTITY))
            tx.begin_intent(elsewhere.key, "other-vendor", elsewhere.kind, elsewhere.payload())
            tx.begin_intent("cloudiq:charge:s1:t1", "other-vendor", "charge", {"name": "x"})
        yield opened


def crashed_world() -> SyncroReads:
    """The quantity update and the delete landed; the product price update never did."""
    return SyncroReads({1: invoice((11, 6, "3.10", "1.55"))},
                       {7: product(7, "PC_PPE-BUSINESS", cost="1.55", retail="3.10")})


def test_a_landed_write_is_recorded_under_its_run_and_the_rest_abandoned(
    store: StateStore,
) -> None:
    reads = crashed_world()
    decided = recover_level_writes(cast(SyncroClient, reads), store, VENDOR)

    assert {i.kind: d.outcome for i, d in decided} == {
        "line_update": "recover", "line_delete": "recover", "product_price": "abandon"}
    assert reads.asked == ["schedules [1]", "product 7"]  # one read per object
    with store.transaction() as tx:
        audit = list(reversed(tx.list_audit(limit=100)))
        status = {k: (i.status if (i := tx.get_intent(k)) else None)
                  for k in (intent(QUANTITY).key, intent(DELETE).key, intent(PRODUCT).key)}
        pending = [i.key for i in tx.list_pending_intents()]
        updated, deleted = tx.get_managed_line(11), tx.get_managed_line(12)
        owned = tx.get_managed_product(VENDOR, SKU)
    assert [(e.run_id, e.action, e.target, e.before, e.after) for e in audit] == [
        (RUN, "line.quantity_set", "line:11", "4", "6"),
        (RUN, "line.deleted", "line:12", "quantity 3", None)]
    assert all(e.reason.endswith(RECOVERED) for e in audit)
    assert audit[0].reason == QUANTITY.reason + RECOVERED
    assert status == {intent(QUANTITY).key: "settled", intent(DELETE).key: "settled",
                      intent(PRODUCT).key: "abandoned"}
    # Another vendor's intent and the charge intents wait for their own passes.
    assert sorted(pending) == ["cloudiq:charge:s1:t1", "cloudiq:line_update:other-vendor:line:11"]
    assert updated is not None
    assert (updated.last_quantity, updated.last_retail) == (Decimal(6), D("3.10"))
    assert deleted is None
    assert owned is not None
    assert owned.last_price_retail is None  # the price update never landed: nothing recorded


def test_a_recovered_price_update_records_the_price_the_daemon_now_owns(
    store: StateStore,
) -> None:
    reads = SyncroReads({1: invoice((11, 4, "3.10", "1.55"), (12, 3, "2.00", "1.00"))},
                        {7: product(7, "PC_PPE-BUSINESS", cost="1.80", retail="3.35")})
    recover_level_writes(cast(SyncroClient, reads), store, VENDOR)
    with store.transaction() as tx:
        owned = tx.get_managed_product(VENDOR, SKU)
        line_record = tx.get_managed_line(11)
        actions = [e.action for e in tx.list_audit(limit=100)]
    assert owned is not None
    assert (owned.last_price_cost, owned.last_price_retail) == (D("1.80"), D("3.35"))
    assert line_record is not None
    assert line_record.last_quantity == Decimal(4)  # that update never landed
    assert sorted(actions) == ["product.price_set", "product.price_set"]


def test_a_dry_run_only_reads(store: StateStore) -> None:
    reads = crashed_world()
    decided = recover_level_writes(cast(SyncroClient, reads), store, VENDOR, dry_run=True)
    assert [d.outcome for _, d in decided] == ["recover", "recover", "abandon"]
    with store.transaction() as tx:
        assert tx.list_audit(limit=100) == []
        assert len(tx.list_pending_intents()) == 5
        line_record = tx.get_managed_line(11)
    assert line_record is not None
    assert line_record.last_quantity == Decimal(4)


def test_nothing_pending_asks_syncro_nothing(tmp_path: Path) -> None:
    reads = crashed_world()
    with StateStore.open(f"sqlite:///{tmp_path / 'empty.db'}") as empty:
        assert recover_level_writes(cast(SyncroClient, reads), empty, VENDOR) == []
    assert reads.asked == []


# -- the write-ahead in Applier ---------------------------------------------------------------


@dataclass
class RefusingSyncro:
    """A Syncro whose line update answers 404 (the line was deleted by hand)."""

    def update_schedule_line(self, schedule_id: int, line_id: int, **_: object) -> None:
        raise NotFoundError(f"line {line_id} not found", status=404)


@dataclass
class AcceptingSyncro:
    """A Syncro that applies every line update; `intents` is what the state held meanwhile."""

    store: StateStore
    intents: list[str] = field(default_factory=list)

    def update_schedule_line(self, schedule_id: int, line_id: int, **_: object) -> None:
        with self.store.transaction() as tx:
            self.intents += [f"{i.key} {i.status}" for i in tx.list_pending_intents()
                             if i.kind == "line_update" and i.run_id == "applier-run"]


@pytest.fixture
def applier_store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        with opened.transaction() as tx:
            tx.start_run(VENDOR, "manual", run_id="applier-run")
            tx.put_managed_line(managed_line(11, 1, "org-1", SKU, 7, quantity=4))
        yield opened


def test_the_intent_is_committed_before_the_write_and_settled_with_its_record(
    applier_store: StateStore,
) -> None:
    syncro = AcceptingSyncro(applier_store)
    applier = Applier(cast(SyncroClient, syncro), applier_store, run_id="applier-run",
                      vendor=VENDOR, products={})
    assert applier.apply(QUANTITY).error is None
    key = f"{VENDOR}:line_update:applier-run:line:11"
    assert syncro.intents == [f"{key} pending"]
    with applier_store.transaction() as tx:
        settled = tx.get_intent(key)
        audit = tx.list_audit(limit=10)
    assert settled is not None
    assert (settled.status, settled.result_id) == ("settled", 11)
    assert [(e.run_id, e.action, e.reason) for e in audit] == [
        ("applier-run", "line.quantity_set", QUANTITY.reason)]


def test_a_level_write_syncro_refused_abandons_its_intent_at_once(
    applier_store: StateStore,
) -> None:
    applier = Applier(cast(SyncroClient, RefusingSyncro()), applier_store,
                      run_id="applier-run", vendor=VENDOR, products={})
    assert applier.apply(QUANTITY).error == "line 11 not found"
    with applier_store.transaction() as tx:
        abandoned = tx.get_intent(f"{VENDOR}:line_update:applier-run:line:11")
        assert tx.list_audit(limit=10) == []
    assert abandoned is not None
    assert abandoned.status == "abandoned"
