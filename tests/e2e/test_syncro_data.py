"""Bad input from Syncro, end to end: recurring invoices that vanish, records with fields the
reference does not list, and nulls, met by the real CLI over HTTP against the sandbox.

A recurring invoice deleted between the read and the write fails that customer's changes
with a message naming the invoice; the rest of the pass is applied (exit 1). The next pass,
like a pass after an invoice deleted earlier, reports the customer (`schedule_missing`),
writes nothing to the gone invoice, stops owning the lines that went with it and touches no
other customer. Unknown fields change nothing. A null the daemon can default is handled; a
null that would make it misread its own product or line stops the pass before any write,
naming the record and the field.

Extra fields and nulls are put in Syncro's answers as they leave the sandbox (a wrapped
`handle`), so the client parses them exactly as it would parse Syncro's.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from sync_daemon.sandbox.http import Request, Response, json_bytes
from sync_daemon.sandbox.proofpoint import Org
from sync_daemon.state import ManagedLine
from tests.e2e.conftest import Customer, Line, Sync, World, concurrently
from tests.support.cli import Result
from tests.support.effects import audit_problems, duplicates

BUSINESS, ADVANCED = "PC_PPE-BUSINESS", "PC_PPE-ADVANCED"
Record = dict[str, Any]
# Which records of an answer are of which kind: the wrapper keys Syncro uses (§4).
KINDS = {"customer": "customer", "customers": "customer", "product": "product",
         "products": "product", "schedule": "schedule", "schedules": "schedule",
         "schedule_line_item": "line", "lines": "line"}


def clean(result: Result) -> list[str]:
    """What is wrong with a run's output: a traceback, or a stderr line that is not JSON."""
    problems = ["traceback"] if "Traceback" in result.stdout + result.stderr else []
    for line in result.stderr.splitlines():
        if line.startswith("error: "):
            continue  # the one line a failed command prints for people
        try:
            json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"not a JSON log line: {line[:200]}")
    return problems


def events(result: Result, event: str) -> list[Record]:
    """The log events of one name."""
    return [e for e in result.log_events() if e.get("event") == event]


def owned(world: World) -> list[ManagedLine]:
    """The lines the state database says the daemon owns."""
    with world.store() as tx:
        return tx.list_managed_lines(vendor="proofpoint")


def only(lines: list[Line]) -> Line:
    """The single line of a list; fails the test otherwise."""
    assert len(lines) == 1, lines
    return lines[0]


# == rewriting Syncro's answers ==================================================================


Rewrite = Callable[[str, Record], None]


def rewrite_answers(world: World, rewrite: Rewrite) -> None:
    """From now on, every JSON answer of the Syncro sandbox has each customer, product,
    schedule and line record passed through `rewrite(kind, record)` on its way out."""
    handle = world.syncro.handle

    def rewritten(request: Request) -> Response:
        response = handle(request)
        if response.status != 200 or "json" not in (response.content_type or ""):
            return response
        body = json.loads(response.body, parse_float=Decimal)
        _walk(body, rewrite)
        response.body = json_bytes(body)
        return response

    world.syncro.handle = rewritten  # type: ignore[method-assign]


def _walk(body: Any, rewrite: Rewrite) -> None:
    if not isinstance(body, dict):
        return
    for key, value in list(body.items()):
        kind = KINDS.get(key)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                _walk(item, rewrite)  # a schedule's lines first, then the schedule
                if kind is not None:
                    rewrite(kind, item)


# == a recurring invoice vanishes ==============================================================


@dataclass
class Vanished:
    world: World
    customers: dict[str, Customer]
    orgs: dict[str, Org]
    first: Sync
    owned_before: list[ManagedLine]
    second: Sync
    requests_in_second: list[tuple[str, str]]
    owned_after_second: list[ManagedLine]
    third: Sync
    requests_in_third: list[tuple[str, str]]
    owned_after_third: list[ManagedLine]
    problems: list[str]


def build_vanished(world: World) -> Vanished:
    """Alder, Birch and Cedar synced. Then every count changes, Dune is mapped, Cedar's
    recurring invoice is deleted in Syncro, and the invoices of Alder (a line update due) and
    Dune (a line create due) are deleted the moment the pass has read them. Sync, sync again."""
    names = ("Alder Dental", "Birch Law", "Cedar Clinic", "Dune Logistics")
    customers = {name: world.customer(name) for name in names}
    orgs = {name: world.org(name, users=10 + index) for index, name in enumerate(names)}
    world.map(*((orgs[n], customers[n]) for n in names[:3]))
    first = world.sync()
    owned_before = owned(world)

    for name in names[:3]:
        world.set_users(orgs[name], 20)
    world.map((orgs["Dune Logistics"], customers["Dune Logistics"]))
    state = world.syncro.state
    with state.lock:
        state.schedules.delete(customers["Cedar Clinic"].schedule_id)

    def delete(request: Request) -> None:
        with state.lock:
            state.schedules.delete(int(request.path.rsplit("/", 1)[1]))

    for name in ("Alder Dental", "Dune Logistics"):
        # A delay of 0 serves the read, then fires: the pass has the invoice, Syncro has not.
        world.syncro.faults.add(kind="delay", method="GET", seconds=0.0, on_fire=delete,
                                path=rf"/schedules/{customers[name].schedule_id}$")
    world.syncro.requests.clear()
    second = world.sync()
    requests_in_second = [(r.method, r.path) for r in world.syncro.requests]
    owned_after_second = owned(world)
    world.syncro.requests.clear()
    third = world.sync()
    requests = [(r.method, r.path) for r in world.syncro.requests]
    gone = {customers[n].schedule_id for n in ("Alder Dental", "Cedar Clinic", "Dune Logistics")}
    # The audit keeps, as history, the lines it created on invoices that are gone since.
    history = {f"line:{line.syncro_line_id} is in the audit but not in Syncro, and was not "
               "deleted" for line in owned_before if line.schedule_id in gone}
    problems = [p for p in audit_problems(world.syncro.state, world.state_url, "proofpoint")
                if p not in history]
    return Vanished(world, customers, orgs, first, owned_before, second, requests_in_second,
                    owned_after_second, third, requests, owned(world), problems)


# == records with fields the reference does not list ===========================================


EXTRA: Record = {
    "x_partner_extension": {"nested": [1, None, "two", {"deep": True}]},
    "lines_count": 7, "legacy_id": None, "price": "not a price", "renamed_at": "2026-11-21",
}


@dataclass
class ExtraFields:
    world: World
    customers: list[Customer]
    rewritten: Counter[str]
    mapped: Result
    first: Sync
    second: Sync
    writes_in_second: int


def build_extra_fields(world: World) -> ExtraFields:
    """Unknown keys on every customer, product, schedule and line Syncro sends (some named
    like fields of other resources). A hand-made product and the MSP's own lines beside two
    orgs, one mapped through the CLI (which reads customers and recurring invoices): sync,
    sync again."""
    rewritten: Counter[str] = Counter()

    def add_extra_fields(kind: str, record: Record) -> None:
        record.update(EXTRA)
        record[f"{kind}_flags"] = ["beta", "ub"]
        rewritten[kind] += 1

    rewrite_answers(world, add_extra_fields)
    customers = [world.customer("Fern Optics"), world.customer("Gorse Farms")]
    orgs = [world.org("Fern Optics", users=6),
            world.org("Gorse Farms", users=9, package="advanced")]
    world.syncro.state.products.add("Backup - 1 TB", price_retail="30.00", price_cost="12.00")
    mapped = world.cli("mapping", "map", "--vendor", "proofpoint", str(orgs[0].eid),
                       str(customers[0].id))
    world.map((orgs[1], customers[1]))
    first = world.sync()
    world.syncro.requests.clear()
    second = world.sync()
    return ExtraFields(world, customers, rewritten, mapped, first, second, world.writes())


# == nulls =====================================================================================


@dataclass
class Nulls:
    """Records with nulls the daemon can default: handled, one pass."""

    world: World
    customers: dict[str, Customer]
    product_ids: dict[str, int]
    foreign_product: Record
    foreign_line: Line
    mapped: Result
    first: Sync
    second: Sync
    requests_in_second: list[tuple[str, str]]
    lines_after: dict[str, list[Line]]


# Fields the reference marks nullable or a client must tolerate as null (`assumed-shapes.md`
# §1, syncro-api.md §4): every one the daemon reads, and some it does not.
CUSTOMER_NULLS = ("business_name", "email", "disabled", "phone", "properties")
PRODUCT_NULLS = ("description", "price_cost", "price_retail", "taxable", "disabled",
                 "maintain_stock", "product_category", "upc_code", "product_skus")
SCHEDULE_NULLS = ("name", "frequency", "paused", "next_run", "last_run", "contract_id",
                  "subtotal", "last_invoice_paid")
FOREIGN_LINE_NULLS = ("product_id", "name", "description", "quantity", "retail_cents",
                      "cost_cents", "taxable", "one_time_charge", "position", "price_retail",
                      "recurring_type_id", "user_id")
OWNED_LINE_NULLS = ("name", "description", "taxable", "one_time_charge", "position",
                    "product_category", "recurring_type_id", "price_retail", "price_cost")


def null_fields(targets: dict[tuple[str, int], tuple[str, ...]]) -> Rewrite:
    """Set the given fields of the given (kind, id) records to null."""
    def rewrite(kind: str, record: Record) -> None:
        for key in targets.get((kind, int(record["id"])), ()):
            record[key] = None
    return rewrite


def build_nulls(world: World) -> Nulls:
    """Two orgs synced (products taxable, the default). Then nulls in Syncro's answers: on a
    customer mapped through the CLI (Hazel), the managed Business product (its prices are set
    back to the price list; its taxable flag is unknown, so Hazel's new line follows the
    config, now not taxable), a foreign product, Ivy's recurring invoice, the MSP's own line
    on it and Ivy's line of the daemon's. Counts change; sync."""
    names = ("Ivy Dental", "Juniper Law", "Hazel Cafe")
    customers = {name: world.customer(name) for name in names}
    orgs = {"Ivy Dental": world.org("Ivy Dental", users=5),
            "Juniper Law": world.org("Juniper Law", users=7, package="advanced"),
            "Hazel Cafe": world.org("Hazel Cafe", users=3)}
    foreign = world.syncro.state.products.add("Backup - 1 TB", price_retail="30.00",
                                              price_cost="12.00", taxable=True)
    world.map((orgs["Ivy Dental"], customers["Ivy Dental"]),
              (orgs["Juniper Law"], customers["Juniper Law"]))
    first = world.sync()
    ivy = customers["Ivy Dental"]
    foreign_line = only([ln for ln in world.lines(ivy.schedule_id)
                         if ln.product_id == world.msp_product_id])
    product_ids = {name: int(world.products(name)[0]["id"]) for name in (BUSINESS, ADVANCED)}
    own = only(world.vendor_lines(ivy.schedule_id))
    rewrite_answers(world, null_fields({
        ("customer", customers["Hazel Cafe"].id): CUSTOMER_NULLS,
        ("product", product_ids[BUSINESS]): PRODUCT_NULLS,
        ("product", int(foreign["id"])): PRODUCT_NULLS,
        ("schedule", ivy.schedule_id): SCHEDULE_NULLS,
        ("line", foreign_line.id): FOREIGN_LINE_NULLS,
        ("line", own.id): OWNED_LINE_NULLS,
    }))
    untaxed = world.config("untaxed.toml", products={"new_products_taxable": False})
    mapped = world.cli("mapping", "map", "--vendor", "proofpoint",
                       str(orgs["Hazel Cafe"].eid), str(customers["Hazel Cafe"].id),
                       config=untaxed)
    world.set_users(orgs["Ivy Dental"], 6)
    world.set_users(orgs["Juniper Law"], 9)
    world.syncro.requests.clear()
    second = world.sync(config=untaxed)
    return Nulls(world, customers, product_ids, world.product(int(foreign["id"])),
                 foreign_line, mapped, first, second,
                 [(r.method, r.path) for r in world.syncro.requests if r.method != "GET"],
                 {n: world.lines(c.schedule_id) for n, c in customers.items()})


# Nulls that would make the daemon misread its own product or line: case → (record, field).
UNSAFE = {
    "product name": ("product", "name"),
    "owned line product_id": ("line", "product_id"),
    "owned line quantity": ("line", "quantity"),
    "line id": ("line", "id"),
    "schedule lines": ("schedule", "lines"),
}


@dataclass
class UnsafeNull:
    """One null the daemon must not guess about: a pass that stops before writing."""

    result: Result
    writes: int
    record: str
    field: str


@dataclass
class UnsafeNulls:
    world: World
    lines_before: list[tuple[int, str | None, Decimal]]
    cases: dict[str, UnsafeNull]
    after: Sync
    lines_after: list[tuple[int, str | None, Decimal]]
    duplicates: list[str]


def build_unsafe_nulls(world: World) -> UnsafeNulls:
    """Two orgs synced; then one sync per unsafe null (each must stop before any write, with
    a count changed so that there is something to write), then a sync with none."""
    customers = [world.customer("Kale Kitchens"), world.customer("Larch Legal")]
    orgs = [world.org("Kale Kitchens", users=4), world.org("Larch Legal", users=6)]
    world.map(*zip(orgs, customers, strict=True))
    assert world.sync().code == 0
    kale = customers[0]
    product_id = int(world.products(BUSINESS)[0]["id"])
    line = only(world.vendor_lines(kale.schedule_id))
    world.set_users(orgs[0], 5)
    world.set_users(orgs[1], 7)

    def snapshot() -> list[tuple[int, str | None, Decimal]]:
        return sorted((ln.schedule_id, ln.product, ln.quantity)
                      for c in customers for ln in world.vendor_lines(c.schedule_id))

    before = snapshot()
    ids = {"product": product_id, "line": line.id, "schedule": kale.schedule_id}
    named = {"product": f"product {product_id}", "line": f"line {line.id}",
             "schedule": f"schedule {kale.schedule_id}"}
    cases: dict[str, UnsafeNull] = {}
    handle = world.syncro.handle
    for case, (kind, key) in UNSAFE.items():
        world.syncro.handle = handle  # type: ignore[method-assign]
        rewrite_answers(world, _null_one(kind, ids[kind], key))
        world.syncro.requests.clear()
        result = world.cli("sync", "--vendor", "proofpoint")
        # A line without an id is named by its recurring invoice.
        record = named["schedule"] if key == "id" else named[kind]
        cases[case] = UnsafeNull(result, world.writes(), record, key)
    world.syncro.handle = handle  # type: ignore[method-assign]
    after = world.sync()
    return UnsafeNulls(world, before, cases, after, snapshot(), duplicates(world.syncro.state))


def _null_one(kind: str, record_id: int, key: str) -> Rewrite:
    def rewrite(found: str, record: Record) -> None:
        if found == kind and record.get("id") == record_id:
            record[key] = None
    return rewrite


# == running the stories =========================================================================


@pytest.fixture(scope="module")
def scenarios(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[Any]]]:
    with concurrently(request, tmp_path_factory, {  # longest first
        "unsafe_nulls": build_unsafe_nulls,
        "vanished": build_vanished,
        "nulls": build_nulls,
        "extra_fields": build_extra_fields,
    }, workers=3) as futures:
        yield futures


def _built(scenarios: dict[str, Future[Any]], name: str) -> Any:
    return scenarios[name].result()


@pytest.fixture
def vanished(scenarios: dict[str, Future[Any]]) -> Vanished:
    built: Vanished = _built(scenarios, "vanished")
    return built


@pytest.fixture
def extra_fields(scenarios: dict[str, Future[Any]]) -> ExtraFields:
    built: ExtraFields = _built(scenarios, "extra_fields")
    return built


@pytest.fixture
def nulls(scenarios: dict[str, Future[Any]]) -> Nulls:
    built: Nulls = _built(scenarios, "nulls")
    return built


@pytest.fixture
def unsafe_nulls(scenarios: dict[str, Future[Any]]) -> UnsafeNulls:
    built: UnsafeNulls = _built(scenarios, "unsafe_nulls")
    return built



def error_rows(sync: Sync, kind: str) -> dict[str | None, str]:
    """The summary's errors of one kind: message by customer label."""
    return {row["customer"]: row["message"] for row in sync.notices("errors", kind)}


def label(name: str) -> str:
    """How the summary names a customer mapped to the Syncro customer of the same name."""
    return f"{name} → {name}"


# == a recurring invoice vanishes ==============================================================


def test_an_invoice_deleted_between_read_and_write_fails_only_that_customers_changes(
    vanished: Vanished,
) -> None:
    second, customers = vanished.second, vanished.customers
    assert vanished.first.code == 0
    assert second.code == 1  # partly failed
    rows = {row["customer"]: row for row in second.changes()}
    for name, action in (("Alder Dental", "line.quantity_set"), ("Dune Logistics", "line.created")):
        row = rows[label(name)]
        assert (row["action"], row["status"]) == (action, "failed")
        assert f"recurring invoice {customers[name].schedule_id} no longer exists" in row["error"]
    assert rows[label("Birch Law")]["status"] == "applied"
    assert only(vanished.world.vendor_lines(customers["Birch Law"].schedule_id)).quantity == 20


def test_each_failed_change_is_logged_naming_the_customer_and_the_invoice(
    vanished: Vanished,
) -> None:
    assert clean(vanished.second.result) == []
    failed = {e["customer"]: e["error"] for e in events(vanished.second.result, "change.failed")}
    assert set(failed) == {label("Alder Dental"), label("Dune Logistics")}
    for name in ("Alder Dental", "Dune Logistics"):
        invoice = vanished.customers[name].schedule_id
        assert f"recurring invoice {invoice} no longer exists" in failed[label(name)]


def test_an_invoice_deleted_before_the_pass_is_reported_and_nothing_is_sent_to_it(
    vanished: Vanished,
) -> None:
    cedar = vanished.customers["Cedar Clinic"].schedule_id
    message = error_rows(vanished.second, "schedule_missing")[label("Cedar Clinic")]
    assert f"recurring invoice {cedar} no longer exists in Syncro" in message
    assert "mapping map" in message
    assert [m for m, path in vanished.requests_in_second if f"/schedules/{cedar}" in path] \
        == ["GET"]


def test_the_next_sync_reports_each_gone_invoice_and_writes_nothing(vanished: Vanished) -> None:
    third, customers = vanished.third, vanished.customers
    assert third.code == 1
    assert clean(third.result) == []
    gone = ("Alder Dental", "Cedar Clinic", "Dune Logistics")
    errors = error_rows(third, "schedule_missing")
    assert set(errors) == {label(name) for name in gone}
    for name in gone:
        assert f"recurring invoice {customers[name].schedule_id} no longer exists" \
            in errors[label(name)]
    assert third.changes() == []
    assert {method for method, _ in vanished.requests_in_third} == {"GET"}


def test_the_next_sync_leaves_the_other_customer_alone(vanished: Vanished) -> None:
    birch = vanished.customers["Birch Law"]
    assert not [r for r in vanished.third.changes() if r["customer"] == label("Birch Law")]
    assert only(vanished.world.vendor_lines(birch.schedule_id)).quantity == 20
    assert [line.schedule_id for line in vanished.owned_after_third] == [birch.schedule_id]


def test_lines_that_went_with_their_invoice_are_no_longer_owned(vanished: Vanished) -> None:
    customers = vanished.customers
    before = {line.schedule_id for line in vanished.owned_before}
    assert customers["Alder Dental"].schedule_id in before  # there was something to forget
    assert customers["Cedar Clinic"].schedule_id in before
    # Cedar's went in the pass that found its invoice gone; Alder's in the next one.
    assert customers["Cedar Clinic"].schedule_id not in {
        line.schedule_id for line in vanished.owned_after_second}
    assert customers["Alder Dental"].schedule_id in {
        line.schedule_id for line in vanished.owned_after_second}
    assert vanished.problems == []  # the state and the audit agree with Syncro


# == unknown fields ============================================================================


def test_unknown_fields_on_every_record_are_ignored(extra_fields: ExtraFields) -> None:
    assert set(extra_fields.rewritten) == {"customer", "product", "schedule", "line"}
    assert extra_fields.mapped.code == 0, extra_fields.mapped.stderr
    first = extra_fields.first
    assert (first.code, first.summary["errors"], first.summary["warnings"]) == (0, [], [])
    assert sorted((r["action"], r["customer"], r["after"]) for r in first.changes()) == [
        ("line.created", label("Fern Optics"), "quantity 6 at 3.10"),
        ("line.created", label("Gorse Farms"), "quantity 9 at 5.20"),
        ("product.created", None, "PC_PPE-ADVANCED cost 2.60 retail 5.20"),
        ("product.created", None, "PC_PPE-BUSINESS cost 1.55 retail 3.10"),
    ]
    assert clean(first.result) == []


def test_with_unknown_fields_a_second_sync_sends_no_writes(extra_fields: ExtraFields) -> None:
    second = extra_fields.second
    assert (second.code, second.changes(), second.summary["warnings"]) == (0, [], [])
    assert extra_fields.writes_in_second == 0
    for customer, (product, quantity) in zip(
            extra_fields.customers, ((BUSINESS, 6), (ADVANCED, 9)), strict=True):
        line = only(extra_fields.world.vendor_lines(customer.schedule_id))
        assert (line.product, line.quantity) == (product, Decimal(quantity))


# == nulls =====================================================================================


def test_nulls_the_daemon_can_default_are_handled(nulls: Nulls) -> None:
    second = nulls.second
    assert (second.code, second.summary["errors"]) == (0, [])
    assert clean(second.result) == []
    ivy, juniper = nulls.lines_after["Ivy Dental"], nulls.lines_after["Juniper Law"]
    assert [ln.quantity for ln in ivy if ln.product == BUSINESS] == [6]
    assert [ln.quantity for ln in juniper if ln.product == ADVANCED] == [9]


def test_a_managed_product_with_null_prices_is_set_back_to_the_price_list(nulls: Nulls) -> None:
    product = nulls.world.product(nulls.product_ids[BUSINESS])
    assert (Decimal(str(product["price_cost"])), Decimal(str(product["price_retail"]))) \
        == (Decimal("1.55"), Decimal("3.10"))
    assert {(r["field"], r["before"], r["after"]) for r in nulls.second.changes(
        "product.price_set")} == {("price_cost", "0.00", "1.55"), ("price_retail", "0.00", "3.10")}


def test_a_null_taxable_flag_bills_new_lines_as_configured(nulls: Nulls) -> None:
    assert nulls.world.product(nulls.product_ids[BUSINESS])["taxable"] is True  # in Syncro
    line = only([ln for ln in nulls.lines_after["Hazel Cafe"] if ln.product == BUSINESS])
    assert (line.quantity, line.taxable) == (Decimal(3), False)  # new_products_taxable = false


def test_a_customer_with_null_fields_can_be_mapped(nulls: Nulls) -> None:
    assert nulls.mapped.code == 0, nulls.mapped.stderr
    assert "→ Pat Owner" in nulls.mapped.stdout  # no business name: the person's name


def test_foreign_records_with_nulls_are_never_touched(nulls: Nulls) -> None:
    foreign_product = nulls.foreign_product
    assert (foreign_product["price_retail"], foreign_product["taxable"]) \
        == (Decimal("30.00"), True)
    ivy = nulls.customers["Ivy Dental"]
    assert nulls.foreign_line in nulls.world.lines(ivy.schedule_id)
    product_id, line_id = foreign_product["id"], nulls.foreign_line.id
    assert not [p for _, p in nulls.requests_in_second
                if p.endswith((f"/products/{product_id}", f"/{line_id}"))]


def test_an_unsafe_null_stops_the_pass_before_any_write(unsafe_nulls: UnsafeNulls) -> None:
    assert set(unsafe_nulls.cases) == set(UNSAFE)
    for case, outcome in unsafe_nulls.cases.items():
        result = outcome.result
        assert (result.code, outcome.writes) == (1, 0), case
        assert clean(result) == [], case
        (message,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert outcome.record in message, (case, message)
        assert f"{outcome.field} is null" in message or f"null {outcome.field}" in message \
            or f"{outcome.field} is missing or null" in message, (case, message)


def test_without_the_null_the_next_sync_applies_everything_once(
    unsafe_nulls: UnsafeNulls,
) -> None:
    assert unsafe_nulls.after.code == 0
    quantities = [quantity for _, _, quantity in unsafe_nulls.lines_before]
    assert quantities == [4, 6]
    assert [q for _, _, q in unsafe_nulls.lines_after] == [5, 7]
    assert unsafe_nulls.duplicates == []
