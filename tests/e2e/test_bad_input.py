"""Bad vendor data, end to end: the real CLI against the sandboxes over HTTP, with the vendor's
answers rewritten (served with status 200) to hold one kind of bad data per customer.

Each bad customer must be reported by name with a clear error in the text and JSON summaries,
keep its mapping and its billed lines exactly as they were, while the good customers of the
same pass are synced; the pass exits 1 (partly failed). Garbage in place of a whole answer
(an HTML page, truncated JSON, a JSON error object, an empty list where customers were) is
retried, fails the pass cleanly or is stopped by the safety guard, and nothing is zeroed.
Nothing a pass leaves behind (the state database with its audit log) holds a secret.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sync_daemon.sandbox import DEFAULT_TOKEN
from sync_daemon.sandbox.cloudiq.views import Views
from sync_daemon.sandbox.proofpoint import Org
from tests.e2e.conftest import (
    CLOUDIQ_CLIENT_SECRET,
    CLOUDIQ_PASSWORD,
    PARTNER_DOMAIN,
    PREMIUM,
    PROOFPOINT_PASSWORD,
    PROOFPOINT_USER,
    CloudiqWorld,
    Customer,
    Month,
    Sync,
    SyncroSnapshot,
    SyncroWorld,
    World,
    cloudiq_concurrently,
    concurrently,
)
from tests.support.cli import Result

CHILDREN = rf"/orgs/{PARTNER_DOMAIN.replace('.', '[.]')}/orgs$"
SECRETS = (DEFAULT_TOKEN, PROOFPOINT_PASSWORD, CLOUDIQ_CLIENT_SECRET, CLOUDIQ_PASSWORD)
LONG_NAME = "Jåsmîne Tandlægë Ærøskøbing 🦷 " + "Ωmega " * 60  # 390 characters of Unicode
OLDER, LAST = Month.from_now(-2), Month.from_now(-1)
LONG_AGO = Month.from_now(-9)

Edit = Callable[[list[dict[str, Any]], dict[str, Any]], None]


def _set(key: str, value: Any) -> Edit:
    def edit(_: list[dict[str, Any]], item: dict[str, Any]) -> None:
        item[key] = value
    return edit


def _drop(key: str) -> Edit:
    def edit(_: list[dict[str, Any]], item: dict[str, Any]) -> None:
        del item[key]
    return edit


def _twice(items: list[dict[str, Any]], item: dict[str, Any]) -> None:
    items.append({**item, "active_users": 99})


# kind → (org name, how its org object is rewritten, None if handled, else what the error says)
PROOFPOINT_CASES: dict[str, tuple[str, Edit, str | None]] = {
    "missing field": ("Birch Missing", _drop("active_users"), "org has no active_users"),
    "string for a number": ("Cedar Strings", _set("active_users", "twelve"),
                            "active_users: expected a whole number, got 'twelve'"),
    "number for a string": ("Elm Numbers", _set("name", 12345),
                            "is malformed: name: expected text, got 12345"),
    "wrong type for a flag": ("Kelp Flags", _set("is_active", "perhaps"),
                              "is_active: Input should be a valid boolean"),
    "negative count": ("Fir Negative", _set("active_users", -4),
                       "a seat count cannot be negative (got -4)"),
    "absurd count": ("Gorse Absurd", _set("active_users", 10_000_000),
                     "10000000 is not a plausible seat count (more than 100000)"),
    "duplicate customer id": ("Hazel Twice", _twice,
                              "with different active_users: nothing is billed for it until"),
    "empty name": ("Ivy Blank", _set("name", "  "),
                   "is malformed: name: must not be empty"),
    "numeric string count": ("Dune Digits", _set("active_users", "7"), None),
    "unicode and very long name": ("Juniper Unicode", _set("name", LONG_NAME), None),
}


def secrets_left_in(world: SyncroWorld) -> list[str]:
    """Configured secrets found anywhere in the state database file (audit log included)."""
    data = (world.directory / "state.db").read_bytes()
    return [s for s in SECRETS if s.encode() in data]


def org_list(world: World) -> list[dict[str, Any]]:
    """The child-org list as Proofpoint's us1 answers it now."""
    response = httpx.get(f"{world.proofpoint.stack_url('us1')}/orgs/{PARTNER_DOMAIN}/orgs",
                         headers={"X-User": PROOFPOINT_USER, "X-Password": PROOFPOINT_PASSWORD})
    response.raise_for_status()
    orgs: list[dict[str, Any]] = response.json()["orgs"]
    return orgs


def answer_children(world: World, *, times: int | None = None, **fault: Any) -> None:
    """From now on us1 answers the child-org list with this (status 200 unless given)."""
    world.proofpoint.stacks["us1"].faults.add(kind="status", method="GET", path=CHILDREN,
                                              times=times, **{"status": 200, **fault})


# == Proofpoint: one org per kind of bad data, all in one pass ================================


@dataclass
class BadOrgs:
    world: World
    good: Customer
    customers: dict[str, Customer]
    before: dict[int, list[tuple[str | None, Decimal]]]
    dry_run: Result
    sync: Sync


def quantities(world: World, customer: Customer) -> list[tuple[str | None, Decimal]]:
    return [(ln.product, ln.quantity) for ln in world.vendor_lines(customer.schedule_id)]


def build_bad_orgs(world: World) -> BadOrgs:
    """Alder (good) and one org per case, 5 users each, mapped and synced; then Alder grows to
    12 users and us1 answers with each case's org rewritten."""
    good = world.customer("Alder Dental")
    alder = world.org("Alder Dental", users=10)
    customers, orgs = {}, {}
    for kind, (name, _, _) in PROOFPOINT_CASES.items():
        customers[kind], orgs[kind] = world.customer(name), world.org(name, users=5)
    world.map((alder, good), *[(orgs[k], customers[k]) for k in PROOFPOINT_CASES])
    assert world.sync().code == 0
    before = {c.id: quantities(world, c) for c in [good, *customers.values()]}
    world.set_users(alder, 12)
    listed = org_list(world)
    by_eid = {item["eid"]: item for item in listed}
    for kind, (_, edit, _) in PROOFPOINT_CASES.items():
        edit(listed, by_eid[orgs[kind].eid])
    answer_children(world, body={"orgs": listed})
    dry_run = world.cli("sync", "--vendor", "proofpoint", "--dry-run")
    return BadOrgs(world, good, customers, before, dry_run, world.sync())


# == Proofpoint: garbage in place of the whole list ==========================================


@dataclass
class Garbage:
    world: World
    customers: list[Customer]
    baseline: SyncroSnapshot
    error_object: Result
    empty: Result
    writes: int
    after: SyncroSnapshot
    table: dict[str, str]
    recovered: Result
    oak: Org


def build_garbage(world: World) -> Garbage:
    """Three orgs synced; then us1 answers a JSON error object with status 200, then an empty
    list, then (once each) an HTML page and truncated JSON before the real answer."""
    names = ["Oak Dental", "Pine Legal", "Quince Farms"]
    customers = [world.customer(n) for n in names]
    orgs = [world.org(n, users=10 * (i + 1)) for i, n in enumerate(names)]
    world.map(*zip(orgs, customers, strict=True))
    assert world.sync().code == 0
    baseline = world.snapshot()
    world.syncro.requests.clear()
    faults = world.proofpoint.stacks["us1"].faults
    answer_children(world, body={"message": "Service temporarily unavailable"})
    error_object = world.cli("sync", "--vendor", "proofpoint")
    faults.clear()
    answer_children(world, body={"orgs": []})
    empty = world.cli("sync", "--vendor", "proofpoint")
    writes, after = world.writes(), world.snapshot()
    table: dict[str, str] = {name: row.status for name, row in world.table().items()}
    faults.clear()
    world.set_users(orgs[0], 11)
    truncated = json.dumps({"orgs": org_list(world)})[:200]
    answer_children(world, times=1, body="<html><body><h1>Bad Gateway</h1></body></html>")
    answer_children(world, times=1, body=truncated)
    recovered = world.cli("sync", "--vendor", "proofpoint")
    return Garbage(world, customers, baseline, error_object, empty, writes, after, table,
                   recovered, orgs[0])


# == Cloud-iQ: one tenant per kind of bad record, then whole-file garbage =====================


RecordEdit = Callable[[dict[str, Any]], None]


def _record(key: str, value: Any) -> RecordEdit:
    def edit(record: dict[str, Any]) -> None:
        record[key] = value
    return edit


def _no_amount(record: dict[str, Any]) -> None:
    del record["Amount"]


def _blank_tenant_name(record: dict[str, Any]) -> None:
    record["CustomerTenant"] = {**record["CustomerTenant"], "Name": ""}


CLOUDIQ_CASES: dict[str, tuple[str, RecordEdit, str]] = {
    "string for a number": ("Text Seats", _record("Quantity", "five"),
                            "Quantity: expected an amount, got 'five'"),
    "number for a string": ("Date Numbers", _record("StartDate", 20260101),
                            "StartDate: expected a date, got 20260101"),
    "negative count": ("Negative Seats", _record("Quantity", -5),
                       "Quantity: -5 is not a seat count"),
    "absurd count": ("Absurd Seats", _record("Quantity", 10_000_000),
                     "Quantity: 10000000 is not a seat count"),
    "missing field": ("Missing Amount", _no_amount, "Amount: missing"),
    "empty name": ("Blank Name", _blank_tenant_name, "CustomerTenant.Name: must not be empty"),
}


@dataclass
class BadRecords:
    world: CloudiqWorld
    good: Customer
    customers: dict[str, Customer]
    before: dict[int, list[tuple[str | None, Decimal]]]
    sync: Sync
    baseline: SyncroSnapshot
    truncated: Result
    empty: Result
    writes: int
    after: SyncroSnapshot


def seat_lines(world: CloudiqWorld, customer: Customer) -> list[tuple[str | None, Decimal]]:
    return [(ln.product, ln.quantity) for ln in world.recurring_lines(customer.schedule_id)]


def records_answer(world: CloudiqWorld, statement: Any, edit: Callable[[list[Any]], Any]) -> None:
    """From now on the statement's records file holds `edit(records)` (base64 JSON)."""
    body = Views(world.ciq).records_file(statement)
    records = json.loads(base64.b64decode(body["Data"]))
    data = edit(records)
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    body["Data"] = base64.b64encode(raw).decode("ascii")
    world.cloudiq.faults.add(kind="status", method="GET", status=200, times=None, body=body,
                             path=rf"/billingstatements/{statement.id}/billingrecordsfile$")


def build_bad_records(world: CloudiqWorld) -> BadRecords:
    """Acme (good, 10 Premium seats) and a tenant per case (5 seats), all mapped; the month
    before last is synced. Last month Acme went to 12 seats; its statement's records file
    comes back with each case's record rewritten, then truncated, then empty."""
    world.config()
    good = world.customer("Acme Cloud")
    acme = world.tenant("Acme Cloud")
    acme_sub = world.subscribe(acme, PREMIUM, 10, start_on=LONG_AGO.first)
    customers, tenants = {}, {}
    for kind, (name, _, _) in CLOUDIQ_CASES.items():
        customers[kind], tenants[kind] = world.customer(name), world.tenant(name)
        world.subscribe(tenants[kind], PREMIUM, 5, start_on=LONG_AGO.first)
    world.close(OLDER)
    world.map(acme, good)
    for kind in CLOUDIQ_CASES:
        world.map(tenants[kind], customers[kind])
    assert world.sync().code == 0
    before = {c.id: seat_lines(world, c) for c in [good, *customers.values()]}
    world.ciq.set_quantity(acme_sub.id, 12, on=LAST.first)
    [statement] = world.close(LAST)
    by_tenant = {str(t.id): kind for kind, t in tenants.items()}

    def bad(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for record in records:
            kind = by_tenant.get(str(record["CustomerTenant"]["Id"]))
            if kind is not None:
                CLOUDIQ_CASES[kind][1](record)
        return records

    records_answer(world, statement, bad)
    sync = world.sync()
    baseline = world.snapshot()
    world.syncro.requests.clear()
    world.cloudiq.faults.clear()
    records_answer(world, statement, lambda records: json.dumps(records).encode()[:-40])
    truncated = world.cli("sync", "--vendor", "cloudiq")
    world.cloudiq.faults.clear()
    records_answer(world, statement, lambda records: [])
    empty = world.cli("sync", "--vendor", "cloudiq")
    return BadRecords(world, good, customers, before, sync, baseline, truncated, empty,
                      world.writes(), world.snapshot())


# == the scenarios, built side by side ======================================================


@pytest.fixture(scope="module")
def proofpoint_scenarios(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                         ) -> Iterator[dict[str, Future[Any]]]:
    with concurrently(request, tmp_path_factory, {
            "bad_orgs": build_bad_orgs, "garbage": build_garbage}) as futures:
        yield futures


@pytest.fixture(scope="module")
def cloudiq_scenarios(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                      ) -> Iterator[dict[str, Future[Any]]]:
    with cloudiq_concurrently(request, tmp_path_factory,
                              {"bad_records": build_bad_records}) as futures:
        yield futures


@pytest.fixture(scope="module")
def bad_orgs(proofpoint_scenarios: dict[str, Future[Any]]) -> BadOrgs:
    built: BadOrgs = proofpoint_scenarios["bad_orgs"].result()
    return built


@pytest.fixture(scope="module")
def garbage(proofpoint_scenarios: dict[str, Future[Any]]) -> Garbage:
    built: Garbage = proofpoint_scenarios["garbage"].result()
    return built


@pytest.fixture(scope="module")
def bad_records(cloudiq_scenarios: dict[str, Future[Any]]) -> BadRecords:
    built: BadRecords = cloudiq_scenarios["bad_records"].result()
    return built


# == Proofpoint tests =======================================================================


def errors_about(sync: Sync, text: str) -> list[dict[str, Any]]:
    return [e for e in sync.notices("errors") if text in e["message"]]


@pytest.mark.parametrize("kind", list(PROOFPOINT_CASES))
def test_a_proofpoint_org_with_bad_data_is_reported_or_handled_and_the_rest_sync(
        bad_orgs: BadOrgs, kind: str) -> None:
    b, (name, _, error) = bad_orgs, PROOFPOINT_CASES[kind]
    customer = b.customers[kind]
    assert b.sync.code == 1, b.sync.result.stderr[-3000:]  # partly failed: some customers erred
    row = b.world.table()
    mapped = {r.vendor_customer_id for r in row.values() if r.status == "mapped"}
    assert len(mapped) == len(PROOFPOINT_CASES) + 1  # nobody turned Detached
    if error is None:  # handled: synced like any other org
        assert errors_about(b.sync, name) == []
        [(_, quantity)] = quantities(b.world, customer)
        assert quantity == (7 if kind == "numeric string count" else 5)
        return
    found = errors_about(b.sync, error)
    assert len(found) == 1, b.sync.notices("errors")
    assert found[0]["kind"] == "vendor_data"
    assert name in (found[0]["customer"] or "") or name.replace(" ", "").lower() in (
        found[0]["message"])
    assert error in b.dry_run.stdout  # the text summary says it too
    assert quantities(b.world, customer) == b.before[customer.id]  # untouched, not zeroed
    assert not [c for c in b.sync.changes() if name in (c["customer"] or "")]


def test_the_good_org_in_the_same_pass_is_synced(bad_orgs: BadOrgs) -> None:
    b = bad_orgs
    assert b.before[b.good.id] == [("PC_PPE-BUSINESS", Decimal(10))]
    assert quantities(b.world, b.good) == [("PC_PPE-BUSINESS", Decimal(12))]


def test_a_very_long_unicode_name_is_kept_whole(bad_orgs: BadOrgs) -> None:
    row = bad_orgs.world.table()[LONG_NAME.strip()]
    assert (row.status, row.vendor_customer_id) == (
        "mapped", str(bad_orgs.world.proofpoint.state.org("juniperunicode.example").eid))


def test_a_json_error_object_with_status_200_fails_the_pass_cleanly(garbage: Garbage) -> None:
    g = garbage
    assert g.error_object.code == 1, g.error_object.stdout + g.error_object.stderr
    assert "child org list response has no 'orgs' list" in g.error_object.stderr
    assert "Traceback" not in g.error_object.stderr


def test_an_empty_list_where_customers_were_is_stopped_by_the_guard(garbage: Garbage) -> None:
    g = garbage
    assert g.empty.code == 3, g.empty.stdout + g.empty.stderr
    assert "STOPPED by the safety guard" in g.empty.stdout
    assert g.writes == 0
    assert g.after == g.baseline
    assert g.table == dict.fromkeys(["Oak Dental", "Pine Legal", "Quince Farms"], "mapped")


def test_an_html_page_and_truncated_json_with_status_200_are_retried(garbage: Garbage) -> None:
    g = garbage
    assert g.recovered.code == 0, g.recovered.stdout + g.recovered.stderr
    retries = [e for e in g.recovered.log_events() if e["event"] == "http.retry"]
    assert [("expected JSON" in e["reason"], e["system"]) for e in retries] == [
        (True, "proofpoint"), (True, "proofpoint")]
    assert [ln.quantity for ln in g.world.vendor_lines(g.customers[0].schedule_id)] == [11]


def test_no_secret_is_left_in_the_state_database_or_audit_log(
        bad_orgs: BadOrgs, garbage: Garbage) -> None:
    assert bad_orgs.world.history()  # the audit log has entries to look through
    assert secrets_left_in(bad_orgs.world) == []
    assert secrets_left_in(garbage.world) == []


# == Cloud-iQ tests =========================================================================


@pytest.mark.parametrize("kind", list(CLOUDIQ_CASES))
def test_a_cloudiq_tenant_with_a_bad_record_is_reported_and_the_rest_sync(
        bad_records: BadRecords, kind: str) -> None:
    b, (name, _, error) = bad_records, CLOUDIQ_CASES[kind]
    customer = b.customers[kind]
    assert b.sync.code == 1, b.sync.result.stdout + b.sync.result.stderr[-3000:]
    found = errors_about(b.sync, error)
    assert [e["customer"] for e in found] == [name], b.sync.notices("errors")
    assert seat_lines(b.world, customer) == b.before[customer.id] != []
    assert not [c for c in b.sync.changes() if name in (c["customer"] or "")]
    assert b.world.table()[(name, "Monthly")].status == "mapped"


def test_the_good_tenant_in_the_same_pass_is_synced(bad_records: BadRecords) -> None:
    b = bad_records
    assert [q for _, q in b.before[b.good.id]] == [Decimal(10)]
    assert [q for _, q in seat_lines(b.world, b.good)] == [Decimal(12)]


def test_a_truncated_records_file_fails_the_pass_and_changes_nothing(
        bad_records: BadRecords) -> None:
    b = bad_records
    assert b.truncated.code == 1, b.truncated.stdout + b.truncated.stderr
    assert "is not base64 of UTF-8 JSON" in b.truncated.stderr


def test_an_empty_records_file_is_stopped_by_the_guard(bad_records: BadRecords) -> None:
    b = bad_records
    assert b.empty.code == 3, b.empty.stdout + b.empty.stderr
    assert b.writes == 0
    assert b.after == b.baseline
    assert secrets_left_in(b.world) == []
