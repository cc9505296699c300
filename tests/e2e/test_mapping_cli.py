"""`sync-daemon mapping ...` end to end: the real CLI against the sandboxes over HTTP.

Like the sync tests, each scenario is a short story of CLI calls (`build_*`) run side by side
with the others once per module; the tests after it read its outcome. The mapping table is
read back through the CLI (`mapping list`) or, where the listing is not the point, straight
from the state database.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest

from sync_daemon.sandbox.proofpoint import Org
from sync_daemon.state import VendorCustomer
from tests.e2e.conftest import Customer, World, concurrently, parse_json
from tests.support.cli import Result

Rows = list[dict[str, Any]]
LIST_FIELDS = {"vendor", "vendor_customer_id", "vendor_customer", "status", "psa_customer_id",
               "psa_customer", "schedule_id"}


@dataclass
class Seeded:
    """The small MSP every mapping scenario starts from."""

    customers: dict[str, Customer]
    twins: tuple[Customer, Customer]
    orgs: dict[str, Org]


def seed(world: World) -> Seeded:
    """Six Proofpoint orgs; Syncro customers named like them but not quite, one customer with
    two active recurring invoices, one with an active and a paused one, two namesakes."""
    customers = {
        "Harbor Dental": world.customer("Harbor Dental", email="office@harbordental.example"),
        "Granite Law LLP": world.customer("Granite Law LLP", schedules=("Monthly", "Old plan"),
                                          paused=("Old plan",)),
        "Summit Freight": world.customer("Summit Freight",
                                         schedules=("Monthly", "Warehouse backup")),
        "Quarry Vet Group": world.customer("Quarry Vet Group"),
    }
    twins = (world.customer("Twin Pines Clinic"), world.customer("Twin Pines Clinic"))
    orgs = {name: world.org(name, users=5) for name in (
        "Harbor Dental", "Granite Law", "Summit Freight", "Twin Pines Clinic",
        "Quarry Veterinary", "Orchard Bakery")}
    return Seeded(customers, twins, orgs)


def mapping(*args: str) -> tuple[str, ...]:
    """`mapping ARGS... --vendor proofpoint` as CLI arguments."""
    return ("mapping", *args, "--vendor", "proofpoint")


def rows(result: Result) -> Rows:
    """A command's JSON list output; the command must have succeeded."""
    assert result.code == 0, result.stdout + result.stderr
    found: Rows = parse_json(result)
    return found


def names(listing: Rows) -> list[str]:
    return [r["vendor_customer"] for r in listing]


# == refresh and list ============================================================================


@dataclass
class Listing:
    world: World
    seeded: Seeded
    refresh: Result
    all: Rows
    mapped: Rows
    search: Rows
    by_psa: Rows
    csv: Result


def build_listing(world: World) -> Listing:
    """Refresh, map two rows and detach one, then list it five ways at once."""
    s = seed(world)
    refresh = world.cli(*mapping("refresh"))
    world.map((s.orgs["Harbor Dental"], s.customers["Harbor Dental"]),
              (s.orgs["Granite Law"], s.customers["Granite Law LLP"]))
    world.map((s.orgs["Quarry Veterinary"], s.customers["Quarry Vet Group"]), status="detached")
    all_, mapped, search, by_psa, csv_ = world.cli_many(
        mapping("list", "--format", "json"),
        mapping("list", "--status", "mapped", "--format", "json"),
        mapping("list", "--search", "VET GROUP", "--format", "json"),
        mapping("list", "--sort", "psa-customer", "--format", "json"),
        mapping("list", "--format", "csv"))
    return Listing(world, s, refresh, rows(all_), rows(mapped), rows(search), rows(by_psa), csv_)


# == map =========================================================================================


@dataclass
class MapByIdAndName:
    world: World
    seeded: Seeded
    by_id: Result
    by_name: Result
    table: dict[str, VendorCustomer]


def build_map_by_id_and_name(world: World) -> MapByIdAndName:
    """`mapping map` by ids on an empty table, then by exact names in other cases."""
    s = seed(world)
    harbor = s.orgs["Harbor Dental"]
    by_id = world.cli(*mapping("map", str(harbor.eid), str(s.customers["Harbor Dental"].id)))
    by_name = world.cli(*mapping("map", "granite LAW", "GRANITE law llp"))
    return MapByIdAndName(world, s, by_id, by_name, world.table())


@dataclass
class MapRefused:
    world: World
    seeded: Seeded
    ambiguous: Result
    unknown: Result
    several: Result
    table_after_refusals: dict[str, VendorCustomer]
    with_schedule: Result
    table: dict[str, VendorCustomer]


def build_map_refused(world: World) -> MapRefused:
    """Names that match two customers or none, a customer with two active recurring
    invoices; then the same with --schedule."""
    s = seed(world)
    ambiguous = world.cli(*mapping("map", "Twin Pines Clinic", "twin pines clinic"))
    unknown, several = world.cli_many(mapping("map", "Harbor Dental", "Harbor"),
                                      mapping("map", "Summit Freight", "Summit Freight"))
    table_after_refusals = world.table()
    second = s.customers["Summit Freight"].schedule_ids[1]
    with_schedule = world.cli(*mapping("map", "Summit Freight", "Summit Freight",
                                       "--schedule", str(second)))
    return MapRefused(world, s, ambiguous, unknown, several, table_after_refusals,
                      with_schedule, world.table())


# == unmap =======================================================================================


@dataclass
class Unmap:
    world: World
    seeded: Seeded
    mapped: Result
    detached: Result
    table: dict[str, VendorCustomer]


def build_unmap(world: World) -> Unmap:
    """A Mapped row and a Detached row, each unmapped."""
    s = seed(world)
    world.not_mapped(*s.orgs.values())
    world.map((s.orgs["Harbor Dental"], s.customers["Harbor Dental"]))
    world.map((s.orgs["Quarry Veterinary"], s.customers["Quarry Vet Group"]), status="detached")
    mapped = world.cli(*mapping("unmap", "Harbor Dental"))
    detached = world.cli(*mapping("unmap", str(s.orgs["Quarry Veterinary"].eid)))
    return Unmap(world, s, mapped, detached, world.table())


# == suggest (the demo data) =====================================================================


@dataclass
class Suggest:
    world: World
    cobalt: Customer
    suggest: Result
    table_after_suggest: dict[str, VendorCustomer]
    writes_while_suggesting: int
    apply: Result
    table: dict[str, VendorCustomer]


def build_suggest(world: World) -> Suggest:
    """The demo's Syncro account plus a customer whose name is only close to an org's:
    suggest, then suggest --apply."""
    state = world.syncro.state
    customer = state.customers.add(business_name="Cobalt Marine", firstname="Owen",
                                   lastname="Price")
    schedule = state.schedules.add(customer["id"], "Monthly Managed Services")
    cobalt = Customer(int(customer["id"]), "Cobalt Marine", (int(schedule["id"]),))
    world.syncro.requests.clear()
    suggested = world.cli(*mapping("suggest"))
    table_after_suggest, writes = world.table(), world.writes()
    applied = world.cli(*mapping("suggest", "--apply"))
    return Suggest(world, cobalt, suggested, table_after_suggest, writes, applied, world.table())


# == export and import ===========================================================================


@dataclass
class RoundTrip:
    world: World
    seeded: Seeded
    exported: Result
    text: str
    original: dict[str, VendorCustomer]
    imported: Result
    table: dict[str, VendorCustomer]


def build_round_trip(world: World) -> RoundTrip:
    """A table with Mapped (one with minimum/included), Not mapped and Detached rows:
    export it, unmap every Mapped row, import the file."""
    s = seed(world)
    world.not_mapped(*s.orgs.values())
    world.map((s.orgs["Harbor Dental"], s.customers["Harbor Dental"]), minimum=3, included=1)
    world.map((s.orgs["Granite Law"], s.customers["Granite Law LLP"]))
    world.map((s.orgs["Twin Pines Clinic"], s.twins[1]))
    world.map((s.orgs["Quarry Veterinary"], s.customers["Quarry Vet Group"]), status="detached")
    original = world.table()
    path = world.directory / "mapping.csv"
    exported = world.cli(*mapping("export", str(path)))
    text = path.read_text(encoding="utf-8")
    world.not_mapped(*(s.orgs[n] for n in ("Harbor Dental", "Granite Law", "Twin Pines Clinic")))
    imported = world.cli(*mapping("import", str(path)))
    return RoundTrip(world, s, exported, text, original, imported, world.table())


@dataclass
class BadImport:
    world: World
    seeded: Seeded
    result: Result
    before: dict[str, VendorCustomer]
    table: dict[str, VendorCustomer]


def build_bad_import(world: World) -> BadImport:
    """A file with one good line and five bad ones."""
    s = seed(world)
    world.not_mapped(*s.orgs.values())
    before = world.table()
    harbor, granite, summit = (s.customers[n] for n in
                               ("Harbor Dental", "Granite Law LLP", "Summit Freight"))
    header = ("vendor,vendor_customer_id,billing_motion,vendor_customer,status,"
              "psa_customer_id,psa_customer,schedule_id,minimum,included")
    eid = {name: org.eid for name, org in s.orgs.items()}
    h_id, h_schedule = harbor.id, harbor.schedule_id
    lines = [
        header,
        f"proofpoint,{eid['Harbor Dental']},,Harbor,mapped,{h_id},,{h_schedule},,",
        f"proofpoint,999999,,Nobody,mapped,{h_id},,{h_schedule},,",
        f"proofpoint,{eid['Granite Law']},,Granite,mapped,1,,{granite.schedule_id},,",
        f"proofpoint,{eid['Summit Freight']},,Summit,mapped,{summit.id},,{h_schedule},,",
        f"proofpoint,{eid['Orchard Bakery']},,Orchard,mapped,{h_id},,{h_schedule},two,",
        f"proofpoint,{eid['Quarry Veterinary']},,Quarry,mapped,{h_id},,,,",
    ]  # line 2 is good; lines 3 to 7 each have one problem
    path = world.directory / "bad.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = world.cli(*mapping("import", str(path)))
    return BadImport(world, s, result, before, world.table())


# == running the stories =========================================================================


@pytest.fixture(scope="module")
def scenarios(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[Any]]]:
    with concurrently(request, tmp_path_factory, {  # longest first
        "listing": build_listing, "suggest": build_suggest, "map_refused": build_map_refused,
        "map_by_id_and_name": build_map_by_id_and_name, "unmap": build_unmap,
        "round_trip": build_round_trip, "bad_import": build_bad_import,
    }, demo={"suggest"}) as futures:
        yield futures


@pytest.fixture
def listing(scenarios: dict[str, Future[Any]]) -> Listing:
    built: Listing = scenarios["listing"].result()
    return built


@pytest.fixture
def map_by_id_and_name(scenarios: dict[str, Future[Any]]) -> MapByIdAndName:
    built: MapByIdAndName = scenarios["map_by_id_and_name"].result()
    return built


@pytest.fixture
def map_refused(scenarios: dict[str, Future[Any]]) -> MapRefused:
    built: MapRefused = scenarios["map_refused"].result()
    return built


@pytest.fixture
def unmap(scenarios: dict[str, Future[Any]]) -> Unmap:
    built: Unmap = scenarios["unmap"].result()
    return built


@pytest.fixture
def suggest(scenarios: dict[str, Future[Any]]) -> Suggest:
    built: Suggest = scenarios["suggest"].result()
    return built


@pytest.fixture
def round_trip(scenarios: dict[str, Future[Any]]) -> RoundTrip:
    built: RoundTrip = scenarios["round_trip"].result()
    return built


@pytest.fixture
def bad_import(scenarios: dict[str, Future[Any]]) -> BadImport:
    built: BadImport = scenarios["bad_import"].result()
    return built


# == refresh and list ============================================================================


def test_refresh_adds_every_vendor_customer_as_not_mapped(listing: Listing) -> None:
    assert listing.refresh.code == 0, listing.refresh.stderr
    assert listing.refresh.stdout.strip() == (
        "proofpoint: 6 customers; 6 new, 0 detached, 0 back, 0 removed")
    assert sorted(names(listing.all)) == sorted(listing.seeded.orgs)


def test_list_json_has_the_documented_fields(listing: Listing) -> None:
    s = listing.seeded
    assert all(row.keys() >= LIST_FIELDS for row in listing.all)
    by_name = {r["vendor_customer"]: r for r in listing.all}
    harbor = s.customers["Harbor Dental"]
    assert {k: by_name["Harbor Dental"][k] for k in LIST_FIELDS} == {
        "vendor": "proofpoint", "vendor_customer_id": str(s.orgs["Harbor Dental"].eid),
        "vendor_customer": "Harbor Dental", "status": "Mapped", "psa_customer_id": harbor.id,
        "psa_customer": "Harbor Dental", "schedule_id": harbor.schedule_id}
    assert {k: by_name["Orchard Bakery"][k] for k in
            ("status", "psa_customer_id", "psa_customer", "schedule_id")} == {
        "status": "Not mapped", "psa_customer_id": None, "psa_customer": None,
        "schedule_id": None}
    assert by_name["Quarry Veterinary"]["status"] == "Detached"
    assert names(listing.all) == sorted(names(listing.all), key=str.casefold)  # default sort


def test_list_status_keeps_only_that_status(listing: Listing) -> None:
    assert names(listing.mapped) == ["Granite Law", "Harbor Dental"]
    assert {r["status"] for r in listing.mapped} == {"Mapped"}


def test_list_search_is_case_insensitive_and_also_looks_at_the_syncro_name(
    listing: Listing,
) -> None:
    # "vet group" is only in the Syncro customer's name (Quarry Vet Group).
    assert names(listing.search) == ["Quarry Veterinary"]


def test_list_sort_by_syncro_customer_puts_unmapped_last(listing: Listing) -> None:
    psa = [r["psa_customer"] for r in listing.by_psa]
    assert psa[:3] == ["Granite Law LLP", "Harbor Dental", "Quarry Vet Group"]
    assert psa[3:] == [None, None, None]


def test_list_csv_has_a_header_and_the_same_rows(listing: Listing) -> None:
    assert listing.csv.code == 0, listing.csv.stderr
    parsed = list(csv.DictReader(io.StringIO(listing.csv.stdout)))
    assert set(parsed[0]) >= LIST_FIELDS
    assert [r["vendor_customer"] for r in parsed] == names(listing.all)
    harbor = next(r for r in parsed if r["vendor_customer"] == "Harbor Dental")
    assert (harbor["status"], harbor["psa_customer_id"], harbor["schedule_id"]) == (
        "Mapped", str(listing.seeded.customers["Harbor Dental"].id),
        str(listing.seeded.customers["Harbor Dental"].schedule_id))


# == map =========================================================================================


def test_map_by_ids(map_by_id_and_name: MapByIdAndName) -> None:
    m = map_by_id_and_name
    harbor = m.seeded.customers["Harbor Dental"]
    assert m.by_id.code == 0, m.by_id.stderr
    assert f"recurring invoice {harbor.schedule_id}" in m.by_id.stdout
    row = m.table["Harbor Dental"]
    assert (row.status, row.psa_customer_id, row.schedule_id) == (
        "mapped", harbor.id, harbor.schedule_id)


def test_map_by_exact_names_ignoring_case(map_by_id_and_name: MapByIdAndName) -> None:
    m = map_by_id_and_name
    granite = m.seeded.customers["Granite Law LLP"]
    assert m.by_name.code == 0, m.by_name.stderr
    row = m.table["Granite Law"]
    # The customer's only *active* recurring invoice; the paused one does not count.
    assert (row.status, row.psa_customer_id, row.psa_customer_name, row.schedule_id) == (
        "mapped", granite.id, "Granite Law LLP", granite.schedule_ids[0])


def test_an_ambiguous_customer_name_exits_2_listing_the_candidates(
    map_refused: MapRefused,
) -> None:
    m = map_refused
    assert m.ambiguous.code == 2
    for twin in m.seeded.twins:
        assert f"Twin Pines Clinic (id {twin.id})" in m.ambiguous.stderr
    assert "ambiguous" in m.ambiguous.stderr


def test_an_unknown_customer_name_exits_2_listing_close_candidates(
    map_refused: MapRefused,
) -> None:
    m = map_refused
    assert m.unknown.code == 2
    assert "no Syncro customer 'Harbor'" in m.unknown.stderr
    assert f"Harbor Dental (id {m.seeded.customers['Harbor Dental'].id})" in m.unknown.stderr


def test_a_customer_with_several_recurring_invoices_needs_schedule(
    map_refused: MapRefused,
) -> None:
    m = map_refused
    summit = m.seeded.customers["Summit Freight"]
    assert m.several.code == 2
    assert "--schedule" in m.several.stderr
    for schedule_id in summit.schedule_ids:
        assert str(schedule_id) in m.several.stderr
    assert [r.status for r in m.table_after_refusals.values()] == ["not_mapped"] * 6


def test_map_with_schedule_uses_that_recurring_invoice(map_refused: MapRefused) -> None:
    m = map_refused
    summit = m.seeded.customers["Summit Freight"]
    assert m.with_schedule.code == 0, m.with_schedule.stderr
    row = m.table["Summit Freight"]
    assert (row.status, row.psa_customer_id, row.schedule_id) == (
        "mapped", summit.id, summit.schedule_ids[1])


# == unmap =======================================================================================


def test_unmap_sets_a_mapped_customer_back_to_not_mapped(unmap: Unmap) -> None:
    assert unmap.mapped.code == 0, unmap.mapped.stderr
    assert "now Not mapped" in unmap.mapped.stdout
    row = unmap.table["Harbor Dental"]
    assert (row.status, row.psa_customer_id, row.schedule_id) == ("not_mapped", None, None)


def test_unmap_removes_a_detached_customer_from_the_table(unmap: Unmap) -> None:
    assert unmap.detached.code == 0, unmap.detached.stderr
    assert "Removed detached Quarry Veterinary" in unmap.detached.stdout
    assert "Quarry Veterinary" not in unmap.table
    assert len(unmap.table) == 5


# == suggest =====================================================================================


def _line_of(output: str, vendor_customer: str) -> str:
    found = [line for line in output.splitlines() if line.startswith(vendor_customer + " ")]
    assert len(found) == 1, output
    return found[0]


def test_suggest_prints_scores_and_changes_nothing(suggest: Suggest) -> None:
    s = suggest
    assert s.suggest.code == 0, s.suggest.stderr
    acme = _line_of(s.suggest.stdout, "Acme Dental")
    assert "Acme Dental Group (1500001)" in acme
    assert "1.00" in acme
    assert "high" in acme
    assert "medium" in _line_of(s.suggest.stdout, "Cobalt Marine Supply")
    assert {r.status for r in s.table_after_suggest.values()} == {"not_mapped"}
    assert s.writes_while_suggesting == 0


def test_suggest_apply_maps_only_unambiguous_high_confidence_suggestions(
    suggest: Suggest,
) -> None:
    s = suggest
    assert s.apply.code == 0, s.apply.stderr
    status = {name: (row.status, row.psa_customer_name) for name, row in s.table.items()}
    assert status == {
        "Acme Dental": ("mapped", "Acme Dental Group"),
        "Evergreen Law": ("mapped", "Evergreen Law LLP"),
        "Blue Ridge Accounting": ("mapped", "Blue Ridge Accounting"),
        "Summit Pediatrics PC": ("mapped", "Summit Pediatrics"),
        "Riverside Veterinary Clinic": ("mapped", "Riverside Veterinary Clinic"),
        # High confidence, but two active recurring invoices: a person must choose.
        "Harbor Freight Logistics": ("not_mapped", None),
        # Only a medium-confidence match (Cobalt Marine).
        "Cobalt Marine Supply": ("not_mapped", None),
    }
    harbor = _line_of(s.apply.stdout, "Harbor Freight Logistics")
    assert "skipped" in harbor
    assert "several active recurring invoices" in harbor
    assert "skipped: medium confidence" in _line_of(s.apply.stdout, "Cobalt Marine Supply")


# == export and import ===========================================================================


def test_export_writes_every_row_as_csv(round_trip: RoundTrip) -> None:
    r = round_trip
    assert r.exported.code == 0, r.exported.stderr
    exported = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted(row["vendor_customer"] for row in exported) == sorted(r.seeded.orgs)
    harbor = next(row for row in exported if row["vendor_customer"] == "Harbor Dental")
    customer = r.seeded.customers["Harbor Dental"]
    assert (harbor["psa_customer_id"], harbor["schedule_id"], harbor["minimum"],
            harbor["included"]) == (str(customer.id), str(customer.schedule_id), "3", "1")


def test_import_of_an_export_restores_the_mapping(round_trip: RoundTrip) -> None:
    r = round_trip
    assert r.imported.code == 0, r.imported.stdout + r.imported.stderr

    def mapping_of(row: VendorCustomer) -> tuple[object, ...]:
        return (row.status, row.psa_customer_id, row.psa_customer_name, row.schedule_id,
                row.minimum, row.included)

    for name in ("Harbor Dental", "Granite Law", "Twin Pines Clinic", "Summit Freight",
                 "Orchard Bakery"):
        assert mapping_of(r.table[name]) == mapping_of(r.original[name]), name


def test_import_of_an_export_keeps_a_detached_row_detached(round_trip: RoundTrip) -> None:
    quarry, before = round_trip.table["Quarry Veterinary"], round_trip.original["Quarry Veterinary"]
    assert (quarry.status, quarry.psa_customer_id, quarry.schedule_id) == (
        "detached", before.psa_customer_id, before.schedule_id)


def test_an_import_with_bad_lines_reports_each_and_imports_nothing(bad_import: BadImport) -> None:
    b = bad_import
    assert b.result.code == 2
    err = b.result.stderr
    assert "line 3: unknown vendor customer '999999'" in err
    assert "line 4: Syncro has no customer 1" in err
    assert "line 5: recurring invoice" in err
    assert "line 6: minimum 'two' is not a whole number" in err
    assert "line 7: psa_customer_id and schedule_id go together" in err
    assert "line 2" not in err  # the good line
    assert "5 problem(s); nothing was imported" in err
    assert b.table == b.before  # not even the good line

