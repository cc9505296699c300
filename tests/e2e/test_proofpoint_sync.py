"""`sync-daemon sync` for Proofpoint Essentials, end to end.

The real CLI runs as a subprocess against the Syncro and Proofpoint sandboxes over HTTP on
127.0.0.1; every assertion reads Syncro's resulting state from the sandbox (or the sandbox's
request log, the exit code, the JSON summary, the audit log).

Each CLI call costs a second or two of interpreter start, so every scenario below is a short
story of CLI calls (`build_*`), all stories run side by side once per module, and the tests
after each story read its outcome, one behaviour per test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from sync_daemon.sandbox.proofpoint import Org
from sync_daemon.state import ManagedLine, ManagedProduct, SyncRun, VendorCustomer
from tests.e2e.conftest import (
    PACKAGES,
    Customer,
    Line,
    Sync,
    SyncroSnapshot,
    World,
    concurrently,
    parse_json,
)
from tests.support.cli import Result

BUSINESS = "PC_PPE-BUSINESS"
BUSINESS_PLUS = "PC_PPE-BUSINESS_PLUS"
ADVANCED = "PC_PPE-ADVANCED"
PROFESSIONAL = "PC_PPE-PROFESSIONAL"
Rows = list[dict[str, Any]]


def price(package: str) -> tuple[str, Decimal, Decimal]:
    """(vendor product name, cost, retail) the default config gives `package`."""
    return PACKAGES[package]


def only(lines: list[Line]) -> Line:
    """The single line of a list; fails the test otherwise."""
    assert len(lines) == 1, lines
    return lines[0]


def label(org: Org, customer: Customer) -> str:
    """How the summary and the audit log name a mapped customer."""
    return f"{org.name} → {customer.name}"


def changed(sync: Sync) -> Counter[tuple[str, str | None, str | None, str | None]]:
    """The changes of a run without their targets (which hold ids only once applied)."""
    return Counter((c["action"], c["customer"], c["field"], c["after"]) for c in sync.changes())


def quantity_rows(history: Rows, who: str) -> Rows:
    """`line.quantity_set` audit rows of one customer label, newest first."""
    return [r for r in history if r["action"] == "line.quantity_set" and r["customer"] == who]


def rows(result: Result) -> Rows:
    """A command's JSON list output; the command must have succeeded."""
    assert result.code == 0, result.stdout + result.stderr
    found: Rows = parse_json(result)
    return found


def money(value: Any) -> Decimal:
    """A product price as the sandbox renders it (a JSON number) in exact decimal."""
    return Decimal(str(value))


# == the first sync: dry runs, the real run, the re-run =========================================


@dataclass
class StateSnapshot:
    """What the state database holds for the vendor."""

    runs: list[SyncRun]
    audit: int
    products: list[ManagedProduct]
    lines: list[ManagedLine]
    table: dict[str, VendorCustomer]


def state_of(world: World) -> StateSnapshot:
    with world.store() as tx:
        return StateSnapshot(tx.list_runs("proofpoint"), len(tx.list_audit(limit=1000)),
                             tx.list_managed_products(), tx.list_managed_lines(),
                             {r.name: r for r in tx.list_vendor_customers("proofpoint")})


@dataclass
class FirstSync:
    world: World
    customers: dict[str, Customer]
    orgs: dict[str, Org]
    handmade_id: int
    map_result: Result
    dry_text: Result
    dry_json: Sync
    writes_in_dry_runs: int
    syncro_before: SyncroSnapshot
    syncro_after_dry_runs: SyncroSnapshot
    state_before: StateSnapshot
    state_after_dry_runs: StateSnapshot
    first: Sync
    first_write_paths: list[str]
    second: Sync
    writes_in_second: int


def build_first_sync(world: World) -> FirstSync:
    """Seven orgs on two stacks (one trial, one unmapped, two with minimum/included) and a
    hand-made `PC_PPE-BUSINESS`: dry run (text and JSON), sync, sync again."""
    world.config(products={"new_products_taxable": False})
    names = ["Alder Dental", "Birch Law", "Cedar Clinic", "Dune Logistics", "Gale Outfitters",
             "Elm Accounting", "Fjord Marine"]
    customers = {name: world.customer(name) for name in names}
    # Made by a technician before the daemon existed: other prices, taxable, its own text.
    handmade = world.syncro.state.products.add(
        BUSINESS, "Email filtering (set up by hand)", price_retail="2.75", price_cost="1.25",
        taxable=True)
    orgs = {
        "Alder Dental": world.org("Alder Dental", users=25, package="business"),
        "Birch Law": world.org("Birch Law", users=15, package="business_plus"),
        "Cedar Clinic": world.org("Cedar Clinic", users=12, stack="us2", trial=True),
        "Dune Logistics": world.org("Dune Logistics", users=12, package="advanced"),
        "Gale Outfitters": world.org("Gale Outfitters", users=40, package="advanced",
                                     stack="us2"),
        "Elm Accounting": world.org("Elm Accounting", users=8, package="professional",
                                    stack="us2"),
        "Fjord Marine": world.org("Fjord Marine", users=77, stack="us2"),  # never mapped
    }
    # Through the CLI, by exact names in another case (the table fills itself on first use).
    map_result = world.cli("mapping", "map", "--vendor", "proofpoint", "dune LOGISTICS",
                           "Dune logistics", "--minimum", "10", "--included", "5")
    world.map(*((orgs[n], customers[n])
                for n in ("Alder Dental", "Birch Law", "Cedar Clinic", "Elm Accounting")))
    world.map((orgs["Gale Outfitters"], customers["Gale Outfitters"]), minimum=2, included=5)
    world.syncro.requests.clear()
    state_before, syncro_before = state_of(world), world.snapshot()

    dry_text, dry_json = world.cli_many(
        ("sync", "--vendor", "proofpoint", "--dry-run"),
        ("sync", "--vendor", "proofpoint", "--dry-run", "--format", "json"))
    writes_in_dry_runs = world.writes()
    state_after_dry_runs, syncro_after_dry_runs = state_of(world), world.snapshot()

    first = world.sync()
    first_write_paths = [r.path for r in world.syncro.requests if r.method != "GET"]
    world.syncro.requests.clear()
    second = world.sync()
    return FirstSync(world, customers, orgs, int(handmade["id"]), map_result, dry_text,
                     Sync(dry_json, parse_json(dry_json)), writes_in_dry_runs, syncro_before,
                     syncro_after_dry_runs, state_before, state_after_dry_runs, first,
                     first_write_paths, second, world.writes())


# == vendor-side changes after a first sync ====================================================


@dataclass
class VendorChanges:
    world: World
    customers: dict[str, Customer]
    orgs: dict[str, Org]
    before: dict[str, list[Line]]
    first: Sync
    second: Sync
    history: Rows
    listing: Rows


def build_vendor_changes(world: World) -> VendorChanges:
    """Five orgs synced; then one grows, one shrinks, one changes package, one leaves."""
    counts = {"Aspen Dental": (10, "business"), "Basalt Law": (20, "business"),
              "Cobalt Clinic": (8, "business"), "Delta Freight": (6, "advanced"),
              "Ember Realty": (30, "business")}
    customers = {name: world.customer(name) for name in counts}
    orgs = {name: world.org(name, users=n, package=p) for name, (n, p) in counts.items()}
    world.map(*((orgs[n], customers[n]) for n in counts))
    first = world.sync()
    before = {n: world.vendor_lines(c.schedule_id) for n, c in customers.items()}

    world.set_users(orgs["Aspen Dental"], 14)
    world.set_users(orgs["Basalt Law"], 16)
    world.proofpoint.state.set_package(orgs["Cobalt Clinic"].primary_domain, "business_plus")
    world.remove_org(orgs["Delta Freight"])
    second = world.sync()
    history, listing = world.cli_many(
        ("history", "--vendor", "proofpoint", "--format", "json"),
        ("mapping", "list", "--vendor", "proofpoint", "--format", "json"))
    return VendorChanges(world, customers, orgs, before, first, second, rows(history),
                         rows(listing))


# == the MSP edits things in Syncro between two syncs ==========================================


RENAMED = "Email Security - Advanced (renamed by the MSP)"
NEW_BUSINESS = ("Proofpoint Essentials Business", Decimal("1.70"), Decimal("3.40"))


@dataclass
class SyncroEdits:
    world: World
    customers: dict[str, Customer]
    orgs: dict[str, Org]
    before: dict[str, Line]
    product_ids: dict[str, int]
    first: Sync
    second: Sync
    history: Rows


def build_syncro_edits(world: World) -> SyncroEdits:
    """Five orgs synced; then in Syncro the MSP renames PC_PPE-ADVANCED, deletes
    PC_PPE-PROFESSIONAL, disables PC_PPE-BUSINESS, edits one line's price and another's
    quantity; in the config it raises the Business price; one count changes."""
    counts = {"Rowan Advisors": (9, "advanced"), "Xeno Labs": (7, "professional"),
              "Yarrow Homes": (10, "business"), "Poplar Pharmacy": (5, "business_plus"),
              "Quill Studio": (6, "business_plus")}
    customers = {name: world.customer(name) for name in counts}
    orgs = {name: world.org(name, users=n, package=p) for name, (n, p) in counts.items()}
    world.map(*((orgs[n], customers[n]) for n in counts))
    first = world.sync()
    before = {n: only(world.vendor_lines(c.schedule_id)) for n, c in customers.items()}
    product_ids = {name: int(world.products(name)[0]["id"])
                   for name in (BUSINESS, BUSINESS_PLUS, ADVANCED, PROFESSIONAL)}

    state = world.syncro.state
    with state.lock:
        state.products.update(product_ids[ADVANCED], {"name": RENAMED})
        del state.products.records[product_ids[PROFESSIONAL]]  # Syncro has no DELETE route
        state.products.update(product_ids[BUSINESS], {"disabled": True})
        poplar, quill = before["Poplar Pharmacy"], before["Quill Studio"]
        state.lines.update(poplar.schedule_id, poplar.id, {"retail_cents": 499})
        state.lines.update(quill.schedule_id, quill.id, {"quantity": "9"})
    world.set_users(orgs["Rowan Advisors"], 11)
    new_prices = world.config("new-prices.toml", packages={**PACKAGES, "business": NEW_BUSINESS})
    second = world.sync(config=new_prices)
    return SyncroEdits(world, customers, orgs, before, product_ids, first, second,
                       world.history(config=new_prices))


# == stories of their own ========================================================================


@dataclass
class UnknownPackage:
    world: World
    umber: Customer
    vale: Customer
    umber_line: Line
    first: Sync
    second: Sync


def build_unknown_package(world: World) -> UnknownPackage:
    """Two orgs synced; one moves to a package without a price and both counts change."""
    umber_c, vale_c = world.customer("Umber Books"), world.customer("Vale Yoga")
    umber, vale = world.org("Umber Books", users=10), world.org("Vale Yoga", users=20)
    world.map((umber, umber_c), (vale, vale_c))
    first = world.sync()
    umber_line = only(world.vendor_lines(umber_c.schedule_id))
    world.proofpoint.state.set_package(umber.primary_domain, "advanced_plus")  # not priced
    world.set_users(umber, 15)
    world.set_users(vale, 25)
    return UnknownPackage(world, umber_c, vale_c, umber_line, first, world.sync())


@dataclass
class SafetyGuard:
    world: World
    customers: list[Customer]
    baseline: SyncroSnapshot
    table_before: dict[str, VendorCustomer]
    stopped: Result
    writes_while_stopped: int
    after_stop: SyncroSnapshot
    table_after_stop: dict[str, VendorCustomer]
    forced: Sync


def build_safety_guard(world: World) -> SafetyGuard:
    """Five orgs synced; then four of them report no users (a vendor glitch): sync, then
    sync --force."""
    names = ["Guard Alpha", "Guard Bravo", "Guard Charlie", "Guard Delta", "Guard Echo"]
    customers = [world.customer(n) for n in names]
    orgs = [world.org(n, users=20 if n == "Guard Echo" else 10) for n in names]
    world.map(*zip(orgs, customers, strict=True))
    assert world.sync().code == 0
    baseline = world.snapshot()
    for org in orgs[:4]:
        world.set_users(org, 0)
    world.syncro.requests.clear()
    table_before = world.table()
    stopped = world.cli("sync", "--vendor", "proofpoint")
    writes, after_stop, table_after_stop = world.writes(), world.snapshot(), world.table()
    return SafetyGuard(world, customers, baseline, table_before, stopped, writes, after_stop,
                       table_after_stop, world.sync("--force"))


@dataclass
class BillTrials:
    world: World
    customer: Customer
    sync: Sync


def build_bill_trials(world: World) -> BillTrials:
    """One org on trial, `bill_trials = true`."""
    tern_c = world.customer("Tern Trials")
    world.map((world.org("Tern Trials", users=12, trial=True), tern_c))
    config = world.config("bill-trials.toml", proofpoint={"bill_trials": True})
    return BillTrials(world, tern_c, world.sync(config=config))


@dataclass
class LargeHandEdit:
    world: World
    customers: list[Customer]
    second: Sync


def build_large_hand_edit(world: World) -> LargeHandEdit:
    """Two orgs of 9 synced; a technician types 99 instead of 9 on one line in Syncro."""
    customers = [world.customer("Wren Bakery"), world.customer("Yew Garage")]
    orgs = [world.org("Wren Bakery", users=9), world.org("Yew Garage", users=9)]
    world.map(*zip(orgs, customers, strict=True))
    assert world.sync().code == 0
    line = only(world.vendor_lines(customers[0].schedule_id))
    with world.syncro.state.lock:
        world.syncro.state.lines.update(line.schedule_id, line.id, {"quantity": "99"})
    return LargeHandEdit(world, customers, world.sync())


# == running the stories =========================================================================


@pytest.fixture(scope="module")
def scenarios(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[Any]]]:
    with concurrently(request, tmp_path_factory, {  # longest first
        "first_sync": build_first_sync, "vendor_changes": build_vendor_changes,
        "syncro_edits": build_syncro_edits, "safety_guard": build_safety_guard,
        "unknown_package": build_unknown_package, "large_hand_edit": build_large_hand_edit,
        "bill_trials": build_bill_trials,
    }) as futures:
        yield futures


@pytest.fixture
def first_sync(scenarios: dict[str, Future[Any]]) -> FirstSync:
    built: FirstSync = scenarios["first_sync"].result()
    return built


@pytest.fixture
def vendor_changes(scenarios: dict[str, Future[Any]]) -> VendorChanges:
    built: VendorChanges = scenarios["vendor_changes"].result()
    return built


@pytest.fixture
def syncro_edits(scenarios: dict[str, Future[Any]]) -> SyncroEdits:
    built: SyncroEdits = scenarios["syncro_edits"].result()
    return built


@pytest.fixture
def unknown_package(scenarios: dict[str, Future[Any]]) -> UnknownPackage:
    built: UnknownPackage = scenarios["unknown_package"].result()
    return built


@pytest.fixture
def safety_guard(scenarios: dict[str, Future[Any]]) -> SafetyGuard:
    built: SafetyGuard = scenarios["safety_guard"].result()
    return built


@pytest.fixture
def bill_trials(scenarios: dict[str, Future[Any]]) -> BillTrials:
    built: BillTrials = scenarios["bill_trials"].result()
    return built


@pytest.fixture
def large_hand_edit(scenarios: dict[str, Future[Any]]) -> LargeHandEdit:
    built: LargeHandEdit = scenarios["large_hand_edit"].result()
    return built


# == first sync ==================================================================================


def test_first_sync_creates_one_pc_product_per_package(first_sync: FirstSync) -> None:
    s = first_sync
    assert s.first.code == 0, s.first.result.stdout + s.first.result.stderr
    assert s.first.summary["status"] == "succeeded"
    for name, package in ((BUSINESS_PLUS, "business_plus"), (ADVANCED, "advanced"),
                          (PROFESSIONAL, "professional")):
        (product,) = s.world.products(name)
        description, cost, retail = price(package)
        assert product["description"] == description
        assert (money(product["price_cost"]), money(product["price_retail"])) == (cost, retail)
        assert product["taxable"] is False  # [products] new_products_taxable = false
        assert product["disabled"] is False
    created = s.first.changes("product.created")
    assert sorted(c["after"].split()[0] for c in created) == [
        ADVANCED, BUSINESS_PLUS, PROFESSIONAL]


def test_first_sync_adds_a_line_per_mapped_org_with_count_retail_and_cost(
    first_sync: FirstSync,
) -> None:
    s, w = first_sync, first_sync.world
    expected = {"Alder Dental": (BUSINESS, 25, "business"),
                "Birch Law": (BUSINESS_PLUS, 15, "business_plus"),
                "Elm Accounting": (PROFESSIONAL, 8, "professional")}
    for name, (product, count, package) in expected.items():
        line = only(w.vendor_lines(s.customers[name].schedule_id))
        _, cost, retail = price(package)
        assert (line.product, line.quantity, line.retail, line.cost) == (
            product, Decimal(count), retail, cost), name
    birch = only(w.vendor_lines(s.customers["Birch Law"].schedule_id))
    assert birch.taxable is False  # a line of a new product follows new_products_taxable
    assert len(s.first.changes("line.created")) == 5  # Alder, Birch, Dune, Gale, Elm


def test_a_hand_made_pc_product_is_adopted_not_duplicated(first_sync: FirstSync) -> None:
    s, w = first_sync, first_sync.world
    (product,) = w.products(BUSINESS)
    assert product["id"] == s.handmade_id
    assert product["description"] == "Email filtering (set up by hand)"  # only prices follow
    assert (money(product["price_cost"]), money(product["price_retail"])) == (
        Decimal("1.55"), Decimal("3.10"))
    assert only(w.vendor_lines(s.customers["Alder Dental"].schedule_id)).product_id == (
        s.handmade_id)
    assert [c["target"] for c in s.first.changes("product.adopted")] == [
        f"product:{s.handmade_id}"]


def test_lines_of_products_the_daemon_does_not_manage_are_never_touched(
    first_sync: FirstSync,
) -> None:
    s, w = first_sync, first_sync.world
    _, lines_before = s.syncro_before
    own_before = [ln for ln in lines_before if ln["product_id"] == w.msp_product_id]
    own_now = [ln for ln in w.syncro.state.lines.all() if ln["product_id"] == w.msp_product_id]
    assert len(own_before) == len(s.customers)
    assert own_now == own_before  # same ids, quantities, prices, positions
    own_ids = {str(ln["id"]) for ln in own_before}
    assert [p for p in s.first_write_paths if p.rsplit("/", 1)[-1] in own_ids] == []


def test_a_trial_org_is_billed_zero_without_bill_trials(first_sync: FirstSync) -> None:
    s, w = first_sync, first_sync.world
    cedar = s.customers["Cedar Clinic"]
    assert [ln.quantity for ln in w.vendor_lines(cedar.schedule_id)] in ([], [0])
    (warning,) = s.first.notices("warnings", "not_billed")
    assert warning["customer"] == label(s.orgs["Cedar Clinic"], cedar)
    assert "trial" in warning["message"]


def test_minimum_and_included_bill_the_max_of_count_less_included_and_minimum(
    first_sync: FirstSync,
) -> None:
    s, w = first_sync, first_sync.world
    assert s.map_result.code == 0, s.map_result.stderr
    # Dune (mapped by the CLI): 12 users, 5 included, minimum 10 → max(7, 10, 0) = 10.
    dune = only(w.vendor_lines(s.customers["Dune Logistics"].schedule_id))
    assert (dune.product, dune.quantity) == (ADVANCED, Decimal(10))
    # Gale: 40 users, 5 included, minimum 2 → max(35, 2, 0) = 35.
    gale = only(w.vendor_lines(s.customers["Gale Outfitters"].schedule_id))
    assert (gale.product, gale.quantity) == (ADVANCED, Decimal(35))


def test_orgs_on_both_stacks_are_synced(first_sync: FirstSync) -> None:
    s, w = first_sync, first_sync.world
    assert (s.orgs["Alder Dental"].stack, s.orgs["Elm Accounting"].stack) == ("us1", "us2")
    assert only(w.vendor_lines(s.customers["Alder Dental"].schedule_id)).quantity == 25
    assert only(w.vendor_lines(s.customers["Elm Accounting"].schedule_id)).quantity == 8
    for stack in ("us1", "us2"):
        assert w.proofpoint.stacks[stack].requests.count(path=r"/orgs$") > 0, stack


def test_an_unmapped_org_is_untouched_and_reported(first_sync: FirstSync) -> None:
    s, w = first_sync, first_sync.world
    # Fjord's 77 users appear on no recurring invoice, least of all Fjord's own.
    assert w.vendor_lines(s.customers["Fjord Marine"].schedule_id) == []
    assert 77 not in {Decimal(line["quantity"]) for line in w.syncro.state.lines.all()}
    (warning,) = s.first.notices("warnings", "unmapped")
    assert warning["customer"] == "Fjord Marine"
    assert s.first.summary["counts"]["unmapped"] == 1


def test_re_sync_right_after_sends_no_writes_and_reports_no_changes(
    first_sync: FirstSync,
) -> None:
    s = first_sync
    assert s.second.code == 0, s.second.result.stderr
    assert s.writes_in_second == 0  # no POST, PUT or DELETE reached Syncro
    assert s.second.changes() == []
    assert s.second.summary["counts"]["changes_planned"] == 0


def test_dry_run_prints_the_plan_as_text(first_sync: FirstSync) -> None:
    s = first_sync
    out = s.dry_text.stdout
    assert s.dry_text.code == 0, s.dry_text.stderr
    assert "(dry run: nothing applied)" in out
    assert f"created product {ADVANCED}" in out
    assert f"adopted product:{s.handmade_id} {BUSINESS}" in out
    assert "Alder Dental → Alder Dental: created PPE-BUSINESS quantity 25 at 3.10" in out
    assert "[planned]" in out
    assert "0 applied" in out


def test_dry_run_prints_the_plan_as_json(first_sync: FirstSync) -> None:
    s = first_sync
    summary = s.dry_json.summary
    assert s.dry_json.code == 0, s.dry_json.result.stderr
    assert (summary["dry_run"], summary["status"]) == (True, "dry_run")
    assert {c["status"] for c in s.dry_json.changes()} == {"planned"}
    assert summary["counts"]["changes_applied"] == 0
    assert summary["seats"] == {"before": 0, "after": 25 + 15 + 10 + 35 + 8}
    assert changed(s.dry_json) == changed(s.first)  # the plan is what the real run then did


def test_dry_run_changes_nothing_not_even_the_state(first_sync: FirstSync) -> None:
    s = first_sync
    assert s.writes_in_dry_runs == 0
    assert s.syncro_after_dry_runs == s.syncro_before
    after, before = s.state_after_dry_runs, s.state_before
    assert (after.runs, after.audit, after.products, after.lines) == ([], 0, [], [])
    assert after.table == before.table  # not even last_seen_at moved
    # ... so the real sync after it still had all the work to do.
    assert {c["status"] for c in s.first.changes()} == {"applied"}
    assert len(s.first.changes("line.created")) == 5


# == vendor-side changes =========================================================================


def test_vendor_changes_sync_cleanly(vendor_changes: VendorChanges) -> None:
    v = vendor_changes
    assert v.first.code == 0, v.first.result.stdout + v.first.result.stderr
    assert v.second.code == 0, v.second.result.stdout + v.second.result.stderr
    assert v.second.summary["guard"] is None


def test_a_count_increase_sets_the_quantity_and_is_audited(vendor_changes: VendorChanges) -> None:
    v, w = vendor_changes, vendor_changes.world
    aspen = v.customers["Aspen Dental"]
    line = only(w.vendor_lines(aspen.schedule_id))
    assert line.id == only(v.before["Aspen Dental"]).id  # the same line, updated in place
    assert line.quantity == 14
    (row,) = quantity_rows(v.history, label(v.orgs["Aspen Dental"], aspen))
    assert (Decimal(row["before"]), Decimal(row["after"])) == (Decimal(10), Decimal(14))
    assert row["field"] == "PPE-BUSINESS quantity"


def test_a_count_decrease_sets_the_quantity_and_is_audited(vendor_changes: VendorChanges) -> None:
    v, w = vendor_changes, vendor_changes.world
    basalt = v.customers["Basalt Law"]
    line = only(w.vendor_lines(basalt.schedule_id))
    assert line.id == only(v.before["Basalt Law"]).id
    assert line.quantity == 16
    (row,) = quantity_rows(v.history, label(v.orgs["Basalt Law"], basalt))
    assert (Decimal(row["before"]), Decimal(row["after"])) == (Decimal(20), Decimal(16))
    assert "changed from 20" in row["reason"]


def test_a_package_change_moves_the_count_to_the_new_products_line(
    vendor_changes: VendorChanges,
) -> None:
    v, w = vendor_changes, vendor_changes.world
    cobalt = v.customers["Cobalt Clinic"]
    old = only(v.before["Cobalt Clinic"])
    new = only(w.vendor_lines(cobalt.schedule_id))  # the old line is gone
    assert old.product == BUSINESS
    _, cost, retail = price("business_plus")
    assert (new.product, new.quantity, new.retail, new.cost) == (
        BUSINESS_PLUS, Decimal(8), retail, cost)
    assert w.syncro.state.lines.get(old.id) is None
    deleted = [r for r in v.history if r["action"] == "line.deleted"]
    assert [(r["target"], r["customer"]) for r in deleted] == [
        (f"line:{old.id}", label(v.orgs["Cobalt Clinic"], cobalt))]


def test_a_detached_org_is_listed_detached_and_its_lines_go_to_zero(
    vendor_changes: VendorChanges,
) -> None:
    v, w = vendor_changes, vendor_changes.world
    delta = v.customers["Delta Freight"]
    (row,) = [r for r in v.listing if r["vendor_customer"] == "Delta Freight"]
    assert (row["status"], row["psa_customer_id"]) == ("Detached", delta.id)
    line = only(w.vendor_lines(delta.schedule_id))
    assert (line.id, line.quantity) == (only(v.before["Delta Freight"]).id, Decimal(0))
    (warning,) = v.second.notices("warnings", "detached")
    assert warning["customer"] == label(v.orgs["Delta Freight"], delta)
    assert v.second.summary["mapping"]["detached"] == ["Delta Freight"]


# == MSP edits in Syncro =========================================================================


def test_syncro_edits_sync_cleanly(syncro_edits: SyncroEdits) -> None:
    e = syncro_edits
    assert e.first.code == 0, e.first.result.stdout + e.first.result.stderr
    assert e.second.code == 0, e.second.result.stdout + e.second.result.stderr


def test_a_renamed_product_is_still_used_by_id(syncro_edits: SyncroEdits) -> None:
    e, w = syncro_edits, syncro_edits.world
    renamed_id = e.product_ids[ADVANCED]
    assert w.products(ADVANCED) == []  # no new PC_PPE-ADVANCED
    assert w.product(renamed_id)["name"] == RENAMED  # the MSP's name is kept
    rowan = only(w.vendor_lines(e.customers["Rowan Advisors"].schedule_id))
    assert (rowan.id, rowan.product_id, rowan.quantity) == (
        e.before["Rowan Advisors"].id, renamed_id, Decimal(11))


def test_a_product_deleted_in_syncro_is_recreated_and_lines_point_to_it(
    syncro_edits: SyncroEdits,
) -> None:
    e, w = syncro_edits, syncro_edits.world
    (recreated,) = w.products(PROFESSIONAL)
    assert recreated["id"] != e.product_ids[PROFESSIONAL]
    description, cost, retail = price("professional")
    assert recreated["description"] == description
    assert (money(recreated["price_cost"]), money(recreated["price_retail"])) == (cost, retail)
    (created,) = e.second.changes("product.created")
    assert "deleted in Syncro" in created["reason"]
    xeno = only(w.vendor_lines(e.customers["Xeno Labs"].schedule_id))
    assert (xeno.product_id, xeno.quantity) == (recreated["id"], Decimal(7))


def test_a_disabled_product_stays_disabled_while_its_price_follows(
    syncro_edits: SyncroEdits,
) -> None:
    e, w = syncro_edits, syncro_edits.world
    product = w.product(e.product_ids[BUSINESS])
    assert product["disabled"] is True
    assert (money(product["price_cost"]), money(product["price_retail"])) == (
        Decimal("1.70"), Decimal("3.40"))
    assert w.products(BUSINESS) == [product]  # not replaced by an enabled twin
    yarrow = only(w.vendor_lines(e.customers["Yarrow Homes"].schedule_id))
    assert (yarrow.retail, yarrow.cost, yarrow.quantity) == (
        Decimal("3.40"), Decimal("1.70"), Decimal(10))


def test_a_line_price_changed_by_hand_is_kept_and_warned_about(
    syncro_edits: SyncroEdits,
) -> None:
    e, w = syncro_edits, syncro_edits.world
    poplar = e.customers["Poplar Pharmacy"]
    line = only(w.vendor_lines(poplar.schedule_id))
    assert (line.retail, line.quantity) == (Decimal("4.99"), Decimal(5))
    (warning,) = e.second.notices("warnings", "price_kept")
    assert warning["customer"] == label(e.orgs["Poplar Pharmacy"], poplar)
    assert "4.99" in warning["message"]


def test_a_line_quantity_changed_by_hand_is_set_back_and_the_audit_says_why(
    syncro_edits: SyncroEdits,
) -> None:
    e, w = syncro_edits, syncro_edits.world
    quill = e.customers["Quill Studio"]
    line = only(w.vendor_lines(quill.schedule_id))
    assert (line.id, line.quantity) == (e.before["Quill Studio"].id, Decimal(6))
    (row,) = quantity_rows(e.history, label(e.orgs["Quill Studio"], quill))
    assert (Decimal(row["before"]), Decimal(row["after"])) == (Decimal(9), Decimal(6))
    assert "set back" in row["reason"]
    assert "by hand" in row["reason"]


def test_a_large_hand_edit_is_set_back_not_taken_for_a_vendor_glitch(
    large_hand_edit: LargeHandEdit,
) -> None:
    h, w = large_hand_edit, large_hand_edit.world
    assert h.second.code == 0, h.second.result.stdout
    assert only(w.vendor_lines(h.customers[0].schedule_id)).quantity == 9


# == stories of their own ========================================================================


def test_an_org_on_a_package_without_a_price_is_an_error_for_that_org_only(
    unknown_package: UnknownPackage,
) -> None:
    u, w = unknown_package, unknown_package.world
    assert u.first.code == 0, u.first.result.stdout + u.first.result.stderr
    assert u.second.code == 1
    assert u.second.summary["status"] == "partial"
    (error,) = u.second.notices("errors")
    assert error["customer"] == "Umber Books"
    assert "advanced_plus" in error["message"]
    assert only(w.vendor_lines(u.umber.schedule_id)) == u.umber_line  # untouched
    assert w.products("PC_PPE-ADVANCED_PLUS") == []
    assert only(w.vendor_lines(u.vale.schedule_id)).quantity == 25  # the others still sync


def test_the_safety_guard_stops_a_collapse_and_changes_nothing(safety_guard: SafetyGuard) -> None:
    g = safety_guard
    assert g.stopped.code == 3, g.stopped.stdout + g.stopped.stderr
    assert "STOPPED by the safety guard" in g.stopped.stdout
    assert "66.7% (60 → 20)" in g.stopped.stdout
    assert "4 customers would go to zero" in g.stopped.stdout
    assert g.writes_while_stopped == 0
    assert g.after_stop == g.baseline
    assert g.table_after_stop == g.table_before  # not even the mapping table's refresh


def test_sync_force_applies_what_the_guard_stopped(safety_guard: SafetyGuard) -> None:
    g, w = safety_guard, safety_guard.world
    assert g.forced.code == 0, g.forced.result.stdout
    assert [only(w.vendor_lines(c.schedule_id)).quantity for c in g.customers] == [
        0, 0, 0, 0, 20]


def test_a_trial_org_is_billed_at_its_count_with_bill_trials(bill_trials: BillTrials) -> None:
    t, w = bill_trials, bill_trials.world
    assert t.sync.code == 0, t.sync.result.stdout + t.sync.result.stderr
    line = only(w.vendor_lines(t.customer.schedule_id))
    _, cost, retail = price("business")
    assert (line.product, line.quantity, line.retail, line.cost) == (
        BUSINESS, Decimal(12), retail, cost)
    assert t.sync.notices("warnings", "not_billed") == []
