"""`plan_products`: Billing Sync's product rules, one table row per rule, plus idempotency."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_daemon.connectors.syncro import Product
from sync_daemon.plan import (
    AdoptProduct,
    CreateProduct,
    FieldChange,
    ProductChange,
    UpdateProductPrice,
    describe,
)
from sync_daemon.products.plan import ProductRules, ProductTarget, plan_products
from sync_daemon.state import ManagedProduct
from sync_daemon.vendor import SourceProduct
from tests.support.builders import D, managed_product, product, source_product

RULES = ProductRules()


def plan(wanted: Sequence[SourceProduct], managed: Sequence[ManagedProduct] = (),
         syncro: Sequence[Product] = (), rules: ProductRules = RULES,
         ) -> tuple[list[ProductChange], dict[str, ProductTarget]]:
    return plan_products(wanted, {m.sku: m for m in managed}, syncro, rules)


# ------------------------------------------------------------------ creation


@pytest.mark.parametrize(("rules", "name", "taxable"), [
    (ProductRules(), "PC_PE-BUS", True),
    (ProductRules(new_products_taxable=False), "PC_PE-BUS", False),
    (ProductRules(prefix="PP-"), "PP-PE-BUS", True),
    (ProductRules(prefix=""), "PE-BUS", True),
])
def test_a_new_sku_creates_one_product_named_prefix_sku(
        rules: ProductRules, name: str, taxable: bool) -> None:
    wanted = [source_product("PE-BUS", name="Essentials Business", cost="3.10", retail="5.25")]

    changes, targets = plan(wanted, rules=rules)

    assert changes == [CreateProduct(sku="PE-BUS", name=name, description="Essentials Business",
                                     cost=D("3.10"), retail=D("5.25"), taxable=taxable,
                                     reason="new SKU")]
    assert targets == {"PE-BUS": ProductTarget("PE-BUS", None, name, D("3.10"), D("5.25"),
                                               taxable)}


def test_every_wanted_sku_gets_a_target_and_changes_come_in_sku_order() -> None:
    wanted = [source_product(s) for s in ("C", "A", "B")]

    changes, targets = plan(wanted)

    assert [c.sku for c in changes] == ["A", "B", "C"]
    assert set(targets) == {"A", "B", "C"}


# ------------------------------------------------------------------ following by id


@pytest.mark.parametrize("syncro_name", ["PC_A", "Email Security (renamed by the MSP)", "pc_a"])
def test_a_managed_product_is_followed_by_id_whatever_its_name(syncro_name: str) -> None:
    changes, targets = plan([source_product("A")], [managed_product("A", 7)],
                            [product(7, syncro_name, taxable=False)])

    assert changes == []
    assert targets["A"] == ProductTarget("A", 7, syncro_name, D("1.00"), D("2.00"), False)


def test_a_renamed_product_is_kept_even_when_a_new_twin_has_the_daemons_name() -> None:
    syncro = [product(7, "Renamed"), product(3, "PC_A")]

    changes, targets = plan([source_product("A")], [managed_product("A", 7)], syncro)

    assert changes == []
    assert targets["A"].product_id == 7


@pytest.mark.parametrize(("syncro_cost", "syncro_retail", "fields"), [
    ("1.00", "2.00", []),
    ("1", "2.0", []),  # equal amounts written differently are equal
    ("0.90", "2.00", ["price_cost"]),
    ("1.00", "2.50", ["price_retail"]),
    ("0.90", "2.50", ["price_cost", "price_retail"]),
])
def test_only_prices_are_updated_and_only_when_they_differ(
        syncro_cost: str, syncro_retail: str, fields: list[str]) -> None:
    syncro = [product(7, "PC_A", cost=syncro_cost, retail=syncro_retail,
                      description="the MSP's own words")]

    changes, _ = plan([source_product("A", name="New vendor name", cost="1.00", retail="2.00")],
                      [managed_product("A", 7)], syncro)

    assert all(isinstance(c, UpdateProductPrice) for c in changes)
    assert [row.field for c in changes for row in describe(c)] == fields
    if fields:
        assert changes == [UpdateProductPrice(
            sku="A", product_id=7, name="PC_A", cost_before=D(syncro_cost), cost_after=D("1.00"),
            retail_before=D(syncro_retail), retail_after=D("2.00"),
            reason="Syncro's price differs from the vendor's price list")]


def test_the_target_carries_the_vendor_prices_and_the_products_own_taxability() -> None:
    _, targets = plan([source_product("A", cost="4", retail="9")], [managed_product("A", 7)],
                      [product(7, "PC_A", cost="1", retail="1", taxable=False)])

    assert targets["A"] == ProductTarget("A", 7, "PC_A", D(4), D(9), False)


@pytest.mark.parametrize("prices_differ", [False, True])
def test_a_disabled_managed_product_is_followed_and_never_re_enabled(prices_differ: bool) -> None:
    syncro = [product(7, "PC_A", disabled=True, cost="0.50" if prices_differ else "1.00")]

    changes, targets = plan([source_product("A")], [managed_product("A", 7)], syncro)

    assert targets["A"].product_id == 7
    assert [type(c) for c in changes] == ([UpdateProductPrice] if prices_differ else [])
    # No change type can carry `disabled`: the daemon has no way to flip it.
    assert all("disabled" not in {f.name for f in dataclasses.fields(c)} for c in changes)


# ------------------------------------------------------------------ deleted, gone


def test_a_managed_product_deleted_in_syncro_is_created_again_and_the_reason_says_so() -> None:
    changes, targets = plan([source_product("A", name="Essentials")], [managed_product("A", 7)],
                            [product(8, "Something else")])

    assert len(changes) == 1
    change = changes[0]
    assert isinstance(change, CreateProduct)
    assert (change.name, change.description) == ("PC_A", "Essentials")
    assert "7" in change.reason
    assert "deleted in Syncro" in change.reason
    assert "recreated" in change.reason
    assert targets["A"].product_id is None


def test_a_deleted_managed_product_with_a_hand_made_twin_adopts_the_twin() -> None:
    changes, targets = plan([source_product("A")], [managed_product("A", 7)],
                            [product(12, "PC_A")])

    assert [type(c) for c in changes] == [AdoptProduct]
    assert targets["A"].product_id == 12


@pytest.mark.parametrize("syncro", [
    [product(9, "PC_OLD", cost="0.01", retail="0.02")],
    [],
    [product(9, "PC_OLD", disabled=True)],
])
def test_a_product_gone_from_the_vendor_is_never_touched(syncro: list[Product]) -> None:
    changes, targets = plan([source_product("A")], [managed_product("OLD", 9)], syncro)

    assert all(c.sku != "OLD" for c in changes)
    assert all(getattr(c, "product_id", None) != 9 for c in changes)
    assert "OLD" not in targets


# ------------------------------------------------------------------ adoption


@pytest.mark.parametrize(("syncro_cost", "syncro_retail", "expected"), [
    ("1.00", "2.00", [AdoptProduct]),
    ("9.00", "2.00", [AdoptProduct, UpdateProductPrice]),
    ("1.00", "9.00", [AdoptProduct, UpdateProductPrice]),
])
def test_a_hand_made_product_with_exactly_the_name_is_adopted(
        syncro_cost: str, syncro_retail: str, expected: list[type]) -> None:
    syncro = [product(40, "PC_A", cost=syncro_cost, retail=syncro_retail, taxable=False)]

    changes, targets = plan([source_product("A")], [], syncro)

    assert [type(c) for c in changes] == expected
    assert changes[0] == AdoptProduct(sku="A", product_id=40, name="PC_A",
                                      reason="a product named PC_A already exists in Syncro")
    assert all(getattr(c, "product_id", None) == 40 for c in changes)
    assert targets["A"] == ProductTarget("A", 40, "PC_A", D("1.00"), D("2.00"), False)


@pytest.mark.parametrize("order", [(41, 40, 42), (42, 41, 40), (40, 41, 42)])
def test_the_oldest_of_several_hand_made_twins_is_adopted(order: tuple[int, ...]) -> None:
    changes, _ = plan([source_product("A")], [], [product(i, "PC_A") for i in order])

    assert changes == [AdoptProduct(sku="A", product_id=40, name="PC_A",
                                    reason="a product named PC_A already exists in Syncro")]


@pytest.mark.parametrize("near_name", ["pc_a", "PC_A ", "PC_AB", "PC-A", "A"])
def test_only_exactly_the_name_is_adopted(near_name: str) -> None:
    changes, _ = plan([source_product("A")], [], [product(40, near_name)])

    assert [type(c) for c in changes] == [CreateProduct]


@pytest.mark.parametrize("wanted_skus", [("A", "B"), ("B",)])
def test_a_product_owned_by_another_sku_is_never_adopted(wanted_skus: tuple[str, ...]) -> None:
    # The MSP renamed A's product to B's daemon name.
    managed = [managed_product("A", 7)]

    changes, targets = plan([source_product(s) for s in wanted_skus], managed,
                            [product(7, "PC_B")])

    assert not any(isinstance(c, AdoptProduct) for c in changes)
    assert [c.sku for c in changes if isinstance(c, CreateProduct)] == ["B"]
    assert targets["B"].product_id is None


def test_an_owned_twin_is_skipped_and_the_next_free_one_adopted() -> None:
    managed = [managed_product("A", 7)]
    syncro = [product(7, "PC_B"), product(8, "PC_B"), product(20, "PC_A")]

    changes, targets = plan([source_product("A"), source_product("B")], managed, syncro)

    assert changes == [AdoptProduct(sku="B", product_id=8, name="PC_B",
                                    reason="a product named PC_B already exists in Syncro")]
    assert (targets["A"].product_id, targets["B"].product_id) == (7, 8)


# ------------------------------------------------------------------ describe


@pytest.mark.parametrize(("change", "rows"), [
    (CreateProduct("A", "PC_A", "Essentials", D("1.5"), D("3"), True, "new SKU"),
     [FieldChange("product.created", "product PC_A", None, None, None,
                  "PC_A cost 1.50 retail 3.00", "new SKU")]),
    (AdoptProduct("A", 40, "PC_A", "why"),
     [FieldChange("product.adopted", "product:40", None, None, None, "PC_A", "why")]),
    (UpdateProductPrice("A", 7, "PC_A", D(1), D(2), D(5), D(5), "why"),
     [FieldChange("product.price_set", "product:7", None, "price_cost", "1.00", "2.00",
                  "why")]),
    (UpdateProductPrice("A", 7, "PC_A", D(1), D(2), D(5), D(6), "why"),
     [FieldChange("product.price_set", "product:7", None, "price_cost", "1.00", "2.00",
                  "why"),
      FieldChange("product.price_set", "product:7", None, "price_retail", "5.00", "6.00",
                  "why")]),
])
def test_describe_product_changes(change: ProductChange, rows: list[FieldChange]) -> None:
    assert describe(change) == rows


def test_describe_uses_the_given_target() -> None:
    rows = describe(CreateProduct("A", "PC_A", "x", D(1), D(2), True, "new SKU"),
                    target="product:99")

    assert [r.target for r in rows] == ["product:99"]


# ------------------------------------------------------------------ properties

SKUS = ("A", "B", "C", "D")
PRICES = st.sampled_from([D("1.00"), D("2.00"), D("2.5")])


@st.composite
def product_worlds(
    draw: st.DrawFn,
) -> tuple[list[SourceProduct], dict[str, ManagedProduct], list[Product]]:
    wanted = [SourceProduct(sku, f"{sku} package", draw(PRICES), draw(PRICES))
              for sku in draw(st.lists(st.sampled_from(SKUS), unique=True))]
    names = st.sampled_from([f"PC_{s}" for s in SKUS] + ["pc_a", "Renamed", "Other"])
    syncro = [Product(id=i, name=draw(names), description="", price_cost=draw(PRICES),
                      price_retail=draw(PRICES), taxable=draw(st.booleans()),
                      disabled=draw(st.booleans()), maintain_stock=False)
              for i in range(1, draw(st.integers(0, 6)) + 1)]
    # Each product is owned by at most one SKU; ids above 100 were deleted in Syncro.
    free_ids = [p.id for p in syncro] + [101, 102, 103, 104]
    managed: dict[str, ManagedProduct] = {}
    for sku in draw(st.lists(st.sampled_from(SKUS), unique=True)):
        available = [i for i in free_ids if i not in {m.syncro_product_id
                                                      for m in managed.values()}]
        managed[sku] = managed_product(sku, draw(st.sampled_from(available)))
    return wanted, managed, syncro


def apply_products(changes: Sequence[ProductChange], managed: Mapping[str, ManagedProduct],
                   syncro: Sequence[Product]) -> tuple[dict[str, ManagedProduct], list[Product]]:
    """What Syncro and the state hold after `changes`, as `apply` would leave them."""
    owned = dict(managed)
    by_id = {p.id: p for p in syncro}
    for change in changes:
        match change:
            case CreateProduct():
                new_id = max([*by_id, 1000]) + 1
                by_id[new_id] = Product(new_id, change.name, change.description, change.cost,
                                        change.retail, change.taxable, False, False)
                owned[change.sku] = managed_product(change.sku, new_id)
            case AdoptProduct():
                owned[change.sku] = managed_product(change.sku, change.product_id,
                                                    origin="adopted")
            case UpdateProductPrice():
                by_id[change.product_id] = dataclasses.replace(
                    by_id[change.product_id], price_cost=change.cost_after,
                    price_retail=change.retail_after)
    return owned, list(by_id.values())


@settings(max_examples=50, deadline=None, database=None)
@given(product_worlds())
def test_planning_products_twice_plans_nothing_the_second_time(
        world: tuple[list[SourceProduct], dict[str, ManagedProduct], list[Product]]) -> None:
    wanted, managed, syncro = world

    changes, _ = plan_products(wanted, managed, syncro, RULES)
    owned, after = apply_products(changes, managed, syncro)
    again, targets = plan_products(wanted, owned, after, RULES)

    assert again == []
    assert all(t.product_id is not None for t in targets.values())
    product_ids = [m.syncro_product_id for m in owned.values()]
    assert len(product_ids) == len(set(product_ids)), "a product is owned by two SKUs"


@settings(max_examples=50, deadline=None, database=None)
@given(product_worlds())
def test_products_touch_only_wanted_skus_and_never_another_skus_product(
        world: tuple[list[SourceProduct], dict[str, ManagedProduct], list[Product]]) -> None:
    wanted, managed, syncro = world
    wanted_skus = {w.sku for w in wanted}

    changes, targets = plan_products(wanted, managed, syncro, RULES)

    assert set(targets) == wanted_skus
    assert {c.sku for c in changes} <= wanted_skus
    assert len([c.sku for c in changes if not isinstance(c, UpdateProductPrice)]) == len(
        {c.sku for c in changes if not isinstance(c, UpdateProductPrice)})
    for change in changes:
        if isinstance(change, AdoptProduct | UpdateProductPrice):
            owner = next((m.sku for m in managed.values()
                          if m.syncro_product_id == change.product_id), change.sku)
            assert owner == change.sku
