"""`sync-daemon sync --vendor cloudiq` (Microsoft CSP through Crayon Cloud-iQ), end to end.

The real CLI runs as a subprocess against the Syncro and Cloud-iQ sandboxes over HTTP on
127.0.0.1; every assertion reads Syncro's resulting state from the sandbox (or a sandbox's
request log, the exit code, the JSON summary, the state database).

The sandbox bills whole calendar months (`close_month`) and the daemon reads the statements
of the last 13 months by the real clock, so every story uses months relative to the current
one: "older" (two months ago), "last" (last month) and "next" (the current month, closed in
the middle of a story to play the statement that arrives a month later). Amounts are checked
to the cent against what the sandbox's statements billed.

As in `test_proofpoint_sync.py`, each scenario is a short story of CLI calls (`build_*`), the
stories run side by side once per module, and each test reads one behaviour of one story.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from sync_daemon.sandbox.cloudiq import (
    BillingRecord,
    BillingStatement,
    CustomerTenant,
    Subscription,
)
from sync_daemon.sandbox.http import LoggedRequest
from sync_daemon.state import VendorCustomer, WriteIntent
from tests.e2e.conftest import (
    ANNUAL,
    AZURE,
    BASIC,
    E3,
    EXCHANGE,
    MONTHLY,
    PREMIUM,
    STANDARD,
    TEAMS,
    CloudiqWorld,
    Customer,
    Line,
    Month,
    Sync,
    SyncroSnapshot,
    cloudiq_concurrently,
    list_price,
    sku_of,
)
from tests.support.cli import Result

PREMIUM_M = sku_of(PREMIUM, "P1M")  # CFQ7TTC0LCHC:0002:P1M
PREMIUM_A = sku_of(PREMIUM, "P1Y", 2)  # CFQ7TTC0LCHC:0002:P1Y:A
STANDARD_Y = sku_of(STANDARD, "P1Y")  # CFQ7TTC0LDPB:0001:P1Y:M
BASIC_M = sku_of(BASIC, "P1M")
EXCHANGE_Y = sku_of(EXCHANGE, "P1Y")
TEAMS_M = sku_of(TEAMS, "P1M")
CENT = Decimal("0.01")
SEAT, USAGE = 1, 2  # statements' ProvisionType

OLDER, LAST, NEXT = Month.from_now(-2), Month.from_now(-1), Month.from_now(0)
LONG_AGO = Month.from_now(-9)  # when the established subscriptions started


def cents(amount: Decimal) -> Decimal:
    """Half-up to cents, as Crayon rounds every billed amount."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def pc(sku: str) -> str:
    """The Syncro product name of a SKU."""
    return f"PC_{sku}"


def only(lines: Sequence[Line]) -> Line:
    """The single line of a list; fails the test otherwise."""
    assert len(lines) == 1, lines
    return lines[0]


def money(value: Any) -> Decimal:
    """A product price as the sandbox renders it (a JSON number) in exact decimal."""
    return Decimal(str(value))


def by_sku(lines: Sequence[Line]) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """Recurring lines as product name → (quantity, retail, cost); one line per product."""
    found = {str(ln.product): (ln.quantity, ln.retail, ln.cost) for ln in lines}
    assert len(found) == len(lines), f"two lines of one product: {lines}"
    return found


def at_list_price(quantities: dict[str, int]) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """What `by_sku` reads for lines of these SKUs with these quantities at list prices."""
    wanted = {}
    for sku, quantity in quantities.items():
        _, cost, retail = list_price(sku)
        wanted[pc(sku)] = (Decimal(quantity), retail, cost)
    return wanted


def charges_named(lines: Sequence[Line], sku: str, kind: str, month: Month) -> list[Line]:
    """One-time lines of `sku` of one kind (`proration`, `usage`) for `month`: their names
    start `<SKU> <kind> <first day>..<last day>`."""
    prefix = f"{sku} {kind} {month.first}..{month.last}"
    return [ln for ln in lines if (ln.name or "").startswith(prefix)]


def seat_records(statements: Sequence[BillingStatement],
                 subscription: Subscription) -> list[BillingRecord]:
    """The records the statements billed for one subscription, in period order."""
    return sorted((r for s in statements for r in s.records
                   if r.subscription_id == subscription.id), key=lambda r: r.start_on)


def proration(statements: Sequence[BillingStatement], subscription: Subscription,
              month: Month) -> tuple[Decimal, Decimal]:
    """(cost, retail) of the one-time correction of a seat subscription for `month`: what
    Crayon billed for it minus a full month of its end-of-month seats at the list price."""
    sku = sku_of(subscription.price.product.part_number, subscription.term,
                 int(subscription.billing_cycle))
    _, unit_cost, unit_retail = list_price(sku)
    records = seat_records(statements, subscription)
    assert records, f"subscription {subscription.id} was not billed in {month}"
    end = subscription.quantity_on(month.last)
    return (sum((r.amount for r in records), Decimal(0)) - cents(unit_cost * end),
            sum((r.retail_total for r in records), Decimal(0)) - cents(unit_retail * end))


def statement_of(statements: Sequence[BillingStatement], world: CloudiqWorld, motion: str,
                 provision_type: int) -> BillingStatement:
    """The one statement of a billing motion and provision type among `statements`."""
    (found,) = [s for s in statements if s.invoice_profile_id == world.profile(motion)
                and s.provision_type == provision_type]
    return found


def log_events(result: Result, event: str) -> list[dict[str, Any]]:
    """The CLI's JSON log events (stderr) of one kind."""
    return [e for e in result.log_events() if e.get("event") == event]


def table_rows(text: str) -> list[dict[str, str]]:
    """A `mapping list` table (plain text) as rows keyed by its header."""
    lines = [line for line in text.splitlines() if line.strip()]
    columns = [(m.group(), m.start()) for m in re.finditer(r"\S+", lines[0])]
    rows = []
    for line in lines[1:]:
        cells = {}
        for index, (name, start) in enumerate(columns):
            end = columns[index + 1][1] if index + 1 < len(columns) else None
            cells[name] = line[start:end].strip()
        rows.append(cells)
    return rows


# == a monthly statement, the re-run, the next month ============================================


@dataclass
class MonthlyStory:
    world: CloudiqWorld
    customers: dict[str, Customer]
    tenants: dict[str, CustomerTenant]
    subs: dict[str, Subscription]
    statements: dict[Month, list[BillingStatement]]
    handmade_line_id: int
    map_result: Result
    syncro_before: SyncroSnapshot
    first: Sync
    recurring_after_first: dict[str, list[Line]]
    charges_after_first: dict[str, list[Line]]
    applied_after_first: set[str]
    second: Sync
    writes_in_second: int
    posts_in_second: int
    charges_after_second: dict[str, list[Line]]
    third: Sync
    listing: Result
    ambiguous: Result
    write_paths: list[str]


def build_monthly(world: CloudiqWorld) -> MonthlyStory:
    """Four tenants on the Monthly profile. Last month Alder went from 20 to 23 Premium seats
    on the 19th (the reference's example) and bought 5 annual seats (Annual profile), Birch
    cut Standard from 15 to 12 on the 10th and started 5 Basic seats on the 8th, Cedar
    cancelled its 4 Teams seats on the 21st and used Azure; Dune (not mapped) went from 14 to
    10 Basic seats. The month before, Birch went from 14 to 15 on the 12th.

    Alder is mapped through the CLI (`--billing-motion Monthly`), Birch and Cedar in the state
    database: sync, sync again, then this month closes with Alder at 25 seats from the 5th,
    Birch's Basic cancelled on the 16th and more Azure for Cedar, and a third sync. New
    products are not taxable (`[cloudiq] new_products_taxable = false`)."""
    world.config(cloudiq={"new_products_taxable": False})
    names = {"Alder Dental": "Alder Dental Group", "Birch Law": "Birch Law LLP",
             "Cedar Clinic": "Cedar Clinic", "Dune Logistics": "Dune Logistics Ltd"}
    customers = {tenant: world.customer(psa) for tenant, psa in names.items()}
    tenants = {name: world.tenant(name) for name in names}
    alder, birch, cedar, dune = (tenants[n] for n in names)
    subs = {
        "alder premium": world.subscribe(alder, PREMIUM, 20, start_on=LONG_AGO.day(19)),
        "alder exchange": world.subscribe(alder, EXCHANGE, 3, start_on=LONG_AGO.first,
                                          term="P1Y"),
        "alder annual": world.subscribe(alder, PREMIUM, 5, start_on=LAST.day(3), term="P1Y",
                                        billing_cycle=2),
        "birch standard": world.subscribe(birch, STANDARD, 14, start_on=LONG_AGO.first,
                                          term="P1Y"),
        "birch basic": world.subscribe(birch, BASIC, 5, start_on=LAST.day(8)),
        "cedar premium": world.subscribe(cedar, PREMIUM, 2, start_on=LONG_AGO.first),
        "cedar teams": world.subscribe(cedar, TEAMS, 4, start_on=LONG_AGO.first),
        "cedar azure": world.subscribe(cedar, AZURE, 1, start_on=LONG_AGO.first, term=None),
        "dune basic": world.subscribe(dune, BASIC, 14, start_on=LONG_AGO.first),
    }
    ciq = world.ciq
    ciq.set_quantity(subs["alder premium"].id, 23, on=LAST.day(19))
    ciq.set_quantity(subs["birch standard"].id, 15, on=OLDER.day(12))
    ciq.set_quantity(subs["birch standard"].id, 12, on=LAST.day(10))
    ciq.set_quantity(subs["cedar teams"].id, 0, on=LAST.day(21))
    ciq.set_quantity(subs["dune basic"].id, 10, on=LAST.day(15))
    world.azure(subs["cedar azure"], LAST, ("D2s v5", "700", "0.0960", "0.1150"))
    world.azure(subs["cedar azure"], NEXT, ("D2s v5", "744", "0.0960", "0.1150"),
                ("B2ms", "310.5", "0.0832", "0.0998"))
    statements = {OLDER: world.close(OLDER), LAST: world.close(LAST)}
    # The MSP's own one-time line (a setup fee): not the daemon's, whatever its flag.
    handmade = world.syncro.state.lines.add(
        customers["Cedar Clinic"].schedule_id, name="Onboarding and migration", quantity=1,
        retail_cents=45000, cost_cents=0, one_time_charge=True)

    map_result = world.cli("mapping", "map", "--vendor", "cloudiq", "--billing-motion",
                           "monthly", "Alder Dental", "Alder Dental Group")
    world.map(birch, customers["Birch Law"])
    world.map(cedar, customers["Cedar Clinic"])
    world.syncro.requests.clear()
    syncro_before = world.snapshot()

    def charges() -> dict[str, list[Line]]:
        return {n: world.charge_lines(c.schedule_id) for n, c in customers.items()}

    first = world.sync()
    recurring = {n: world.recurring_lines(c.schedule_id) for n, c in customers.items()}
    charges_after_first = charges()
    with world.store() as tx:
        applied = {str(s.id) for month in statements.values() for s in month
                   if tx.is_statement_applied("cloudiq", str(s.id))}
    write_paths = [r.path for r in world.syncro.requests if r.method != "GET"]
    world.syncro.requests.clear()
    second = world.sync()
    writes_in_second = world.writes()
    posts_in_second = world.syncro.requests.count(method="POST")
    charges_after_second = charges()

    ciq.set_quantity(subs["alder premium"].id, 25, on=NEXT.day(5))
    ciq.set_quantity(subs["birch basic"].id, 0, on=NEXT.day(16))
    statements[NEXT] = world.close(NEXT)
    third = world.sync()
    write_paths += [r.path for r in world.syncro.requests if r.method != "GET"]
    listing, ambiguous = world.cli_many(
        ("mapping", "list", "--vendor", "cloudiq"),
        ("mapping", "map", "--vendor", "cloudiq", "Alder Dental", "Alder Dental Group"))
    return MonthlyStory(world, customers, tenants, subs, statements, int(handmade["id"]),
                        map_result, syncro_before, first, recurring, charges_after_first,
                        applied, second, writes_in_second, posts_in_second,
                        charges_after_second, third,
                        listing, ambiguous, write_paths)


# == product modes ==============================================================================


@dataclass
class ModeStory:
    world: CloudiqWorld
    customers: dict[str, Customer]
    statements: list[BillingStatement]
    subs: dict[str, Subscription]
    sync: Sync


def build_in_use(world: CloudiqWorld) -> ModeStory:
    """`product_sync_mode = "in_use"`: Oak uses Premium and Basic; Basic's row then leaves
    the price list (the statement still bills it)."""
    oak_c = world.customer("Oak Pharmacy")
    oak = world.tenant("Oak Pharmacy")
    subs = {"premium": world.subscribe(oak, PREMIUM, 4, start_on=LONG_AGO.first),
            "basic": world.subscribe(oak, BASIC, 3, start_on=LONG_AGO.first)}
    statements = world.close(LAST)
    world.ciq.remove_agreement_product(BASIC, term="P1M")
    world.map(oak, oak_c)
    return ModeStory(world, {"Oak": oak_c}, statements, subs,
                     world.sync(config=world.config(cloudiq={"product_sync_mode": "in_use"})))


def build_all(world: CloudiqWorld) -> ModeStory:
    """`product_sync_mode = "all"`: Pine uses Premium; Quarry went from 6 to 8 Premium seats
    on the 11th and uses Basic, whose row then leaves the price list."""
    pine_c, quarry_c = world.customer("Pine Realty"), world.customer("Quarry Works")
    pine, quarry = world.tenant("Pine Realty"), world.tenant("Quarry Works")
    subs = {"pine": world.subscribe(pine, PREMIUM, 4, start_on=LONG_AGO.first),
            "quarry premium": world.subscribe(quarry, PREMIUM, 6, start_on=LONG_AGO.first),
            "quarry basic": world.subscribe(quarry, BASIC, 3, start_on=LONG_AGO.first)}
    world.ciq.set_quantity(subs["quarry premium"].id, 8, on=LAST.day(11))
    statements = world.close(LAST)
    world.ciq.remove_agreement_product(BASIC, term="P1M")
    world.map(pine, pine_c)
    world.map(quarry, quarry_c)
    return ModeStory(world, {"Pine": pine_c, "Quarry": quarry_c}, statements, subs,
                     world.sync(config=world.config(cloudiq={"product_sync_mode": "all"})))


# == Azure and annual terms, on and off; one billing motion only =================================


@dataclass
class ExtrasStory:
    world: CloudiqWorld
    customers: dict[str, Customer]
    statements: list[BillingStatement]
    sync: Sync
    again: Sync | None = None
    writes_again: int = -1
    charges_before_again: list[Line] | None = None


def _build_extras(world: CloudiqWorld, *, enabled: bool) -> ExtrasStory:
    """Last month Maple used two Azure meters, Larch one, and Larch bought 4 annual Premium
    seats on the 9th (its own Annual-profile statement); the Monthly profile has nothing but
    the usage statement, so the first sync bills every statement."""
    maple_c = world.customer("Maple Bakery")
    larch_c = world.customer("Larch Studio", schedules=("Monthly Services", "Annual Licences"))
    maple, larch = world.tenant("Maple Bakery"), world.tenant("Larch Studio")
    world.azure(world.subscribe(maple, AZURE, 1, start_on=LONG_AGO.first, term=None), LAST,
                ("D2s v5", "744", "0.0960", "0.1150"), ("B2ms", "310.5", "0.0832", "0.0998"))
    world.azure(world.subscribe(larch, AZURE, 1, start_on=LONG_AGO.first, term=None), LAST,
                ("D4s v5", "100.25", "0.1920", "0.2300"))
    world.subscribe(larch, PREMIUM, 4, start_on=LAST.day(9), term="P1Y", billing_cycle=2)
    statements = world.close(LAST)
    world.map(maple, maple_c)
    world.map(larch, larch_c)
    world.map(larch, larch_c, motion=ANNUAL, schedule_id=larch_c.schedule_ids[1])
    config = world.config(cloudiq={"sync_azure": enabled, "sync_annual": enabled})
    return ExtrasStory(world, {"Maple": maple_c, "Larch": larch_c}, statements,
                       world.sync(config=config))


def build_extras_on(world: CloudiqWorld) -> ExtrasStory:
    """`sync_azure` and `sync_annual` on (the defaults); then a second sync right after."""
    story = _build_extras(world, enabled=True)
    story.charges_before_again = _all_charges(world, story.customers)
    world.syncro.requests.clear()
    story.again = world.sync()
    story.writes_again = world.writes()
    return story


def _all_charges(world: CloudiqWorld, customers: dict[str, Customer]) -> list[Line]:
    return [ln for c in customers.values() for s in c.schedule_ids
            for ln in world.charge_lines(s)]


def build_extras_off(world: CloudiqWorld) -> ExtrasStory:
    """The same account with `sync_azure = false` and `sync_annual = false`."""
    return _build_extras(world, enabled=False)


@dataclass
class MotionStory:
    world: CloudiqWorld
    customer: Customer
    statements: list[BillingStatement]
    sync: Sync
    table: dict[tuple[str, str], VendorCustomer]
    applied: set[str]


def build_monthly_only(world: CloudiqWorld) -> MotionStory:
    """`billing_motions = ["Monthly"]`: Rowan has 5 monthly Premium seats and bought 2 annual
    ones on the 4th; both motions are mapped, each to its own recurring invoice."""
    rowan_c = world.customer("Rowan Advisors", schedules=("Monthly Services", "Annual Licences"))
    rowan = world.tenant("Rowan Advisors")
    world.subscribe(rowan, PREMIUM, 5, start_on=LONG_AGO.first)
    world.subscribe(rowan, PREMIUM, 2, start_on=LAST.day(4), term="P1Y", billing_cycle=2)
    statements = world.close(LAST)
    world.map(rowan, rowan_c)
    world.map(rowan, rowan_c, motion=ANNUAL, schedule_id=rowan_c.schedule_ids[1])
    sync = world.sync(config=world.config(cloudiq={"billing_motions": [MONTHLY]}))
    with world.store() as tx:
        applied = {str(s.id) for s in statements if tx.is_statement_applied("cloudiq", str(s.id))}
    return MotionStory(world, rowan_c, statements, sync, world.table(), applied)


# == token expiry and a price change =============================================================


NEW_PREMIUM_COST, NEW_PREMIUM_RETAIL = Decimal("24.30"), Decimal("27.00")


@dataclass
class TokenStory:
    world: CloudiqWorld
    customer: Customer
    first: Sync
    first_requests: list[LoggedRequest]
    line_after_first: Line
    second: Sync
    second_requests: list[LoggedRequest]


def build_tokens(world: CloudiqWorld) -> TokenStory:
    """Spruce has 3 Premium seats. The first sync's access token expires before its 3rd API
    request; then Crayon raises Premium's price and, in the second sync, access and refresh
    tokens both expire before its 2nd API request."""
    spruce_c = world.customer("Spruce Dental")
    spruce = world.tenant("Spruce Dental")
    world.subscribe(spruce, PREMIUM, 3, start_on=LONG_AGO.first)
    world.close(LAST)
    world.map(spruce, spruce_c)
    world.config()

    world.cloudiq.requests.clear()
    world.cloudiq.expire_tokens_before(3)
    first = world.sync()
    first_requests = list(world.cloudiq.requests)
    line = only(world.recurring_lines(spruce_c.schedule_id))

    world.ciq.set_agreement_price(PREMIUM, term="P1M", sales_price=NEW_PREMIUM_COST,
                                  retail_price=NEW_PREMIUM_RETAIL)
    world.cloudiq.requests.clear()
    world.cloudiq.expire_tokens_before(2, refresh=True)
    second = world.sync()
    return TokenStory(world, spruce_c, first, first_requests, line, second,
                      list(world.cloudiq.requests))


# == crash safety of one-time charges ============================================================


@dataclass
class CrashStory:
    world: CloudiqWorld
    tern: Customer
    umber: Customer
    keys: dict[str, str]
    first: Result
    first_posts: dict[str, int]
    charges_after_first: dict[str, list[Line]]
    pending_after_first: list[WriteIntent]
    second: Sync
    writes_in_second: int
    charges_after_second: dict[str, list[Line]]
    intents_after_second: dict[str, WriteIntent | None]


def build_crash(world: CloudiqWorld) -> CrashStory:
    """Tern and Umber each went from 4 to 6 Teams seats on the 21st: a new line and a
    one-time charge each. Syncro stores each charge's POST but resets the connection instead
    of answering; reading Umber's invoice back then fails too (401), which stops the run
    between the write and its record. Then a second sync."""
    tern_c, umber_c = world.customer("Tern Trading"), world.customer("Umber Books")
    tern, umber = world.tenant("Tern Trading"), world.tenant("Umber Books")
    subs = {name: world.subscribe(t, TEAMS, 4, start_on=LONG_AGO.first)
            for name, t in (("tern", tern), ("umber", umber))}
    for subscription in subs.values():
        world.ciq.set_quantity(subscription.id, 6, on=LAST.day(21))
    (statement,) = world.close(LAST)
    world.map(tern, tern_c)
    world.map(umber, umber_c)
    world.config()
    keys = {name: f"cloudiq:charge:{statement.id}:{t.id}:{TEAMS_M}:proration:{subs[name].id}"
            for name, t in (("tern", tern), ("umber", umber))}

    # Faults fire in the order added, each on its first match: the recurring line's POST goes
    # through (a delay of 0), the charge's POST lands unanswered.
    faults = world.syncro.faults
    for customer in (tern_c, umber_c):
        line_items = rf"/schedules/{customer.schedule_id}/line_items$"
        faults.add(kind="delay", method="POST", path=line_items, seconds=0)
        faults.add(kind="reset_after", method="POST", path=line_items)
    umber_schedule = rf"/schedules/{umber_c.schedule_id}$"
    faults.add(kind="delay", method="GET", path=umber_schedule, seconds=0)  # the planning read
    faults.add(kind="status", method="GET", path=umber_schedule, status=401,
               body={"error": "Not authorized"})  # the read-back after the reset

    def posts(customer: Customer) -> int:
        return world.syncro.requests.count(
            method="POST", path=rf"/schedules/{customer.schedule_id}/line_items$")

    def charges() -> dict[str, list[Line]]:
        return {"tern": world.charge_lines(tern_c.schedule_id),
                "umber": world.charge_lines(umber_c.schedule_id)}

    world.syncro.requests.clear()
    first = world.cli("sync", "--vendor", "cloudiq", "--format", "json")
    first_posts = {"tern": posts(tern_c), "umber": posts(umber_c)}
    charges_after_first = charges()
    with world.store() as tx:
        pending = tx.list_pending_intents()
    assert not world.syncro.faults.pending(), "a fault did not fire: the story went wrong"
    world.syncro.requests.clear()
    second = world.sync()
    with world.store() as tx:
        intents = {name: tx.get_intent(key) for name, key in keys.items()}
    return CrashStory(world, tern_c, umber_c, keys, first, first_posts, charges_after_first,
                      pending, second, world.writes(), charges(), intents)


# == running the stories =========================================================================


@pytest.fixture(scope="module")
def scenarios(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[Any]]]:
    with cloudiq_concurrently(request, tmp_path_factory, {  # longest first
        "monthly": build_monthly, "tokens": build_tokens, "crash": build_crash,
        "in_use": build_in_use, "all_products": build_all, "extras_on": build_extras_on,
        "extras_off": build_extras_off, "monthly_only": build_monthly_only,
    }) as futures:
        yield futures


@pytest.fixture
def monthly(scenarios: dict[str, Future[Any]]) -> MonthlyStory:
    built: MonthlyStory = scenarios["monthly"].result()
    return built


@pytest.fixture
def in_use(scenarios: dict[str, Future[Any]]) -> ModeStory:
    built: ModeStory = scenarios["in_use"].result()
    return built


@pytest.fixture
def all_products(scenarios: dict[str, Future[Any]]) -> ModeStory:
    built: ModeStory = scenarios["all_products"].result()
    return built


@pytest.fixture
def extras_on(scenarios: dict[str, Future[Any]]) -> ExtrasStory:
    built: ExtrasStory = scenarios["extras_on"].result()
    return built


@pytest.fixture
def extras_off(scenarios: dict[str, Future[Any]]) -> ExtrasStory:
    built: ExtrasStory = scenarios["extras_off"].result()
    return built


@pytest.fixture
def monthly_only(scenarios: dict[str, Future[Any]]) -> MotionStory:
    built: MotionStory = scenarios["monthly_only"].result()
    return built


@pytest.fixture
def tokens(scenarios: dict[str, Future[Any]]) -> TokenStory:
    built: TokenStory = scenarios["tokens"].result()
    return built


@pytest.fixture
def crash(scenarios: dict[str, Future[Any]]) -> CrashStory:
    built: CrashStory = scenarios["crash"].result()
    return built


# == the monthly statement ======================================================================


def test_the_first_sync_succeeds_with_warnings_only(monthly: MonthlyStory) -> None:
    m = monthly
    assert m.map_result.code == 0, m.map_result.stdout + m.map_result.stderr
    assert m.first.code == 0, m.first.result.stdout + m.first.result.stderr
    assert m.first.summary["status"] == "succeeded"
    assert m.first.notices("errors") == []
    assert {c["status"] for c in m.first.changes()} == {"applied"}


def test_one_recurring_line_per_sku_at_the_end_of_period_count_and_list_prices(
    monthly: MonthlyStory,
) -> None:
    lines = monthly.recurring_after_first
    assert by_sku(lines["Alder Dental"]) == at_list_price({PREMIUM_M: 23, EXCHANGE_Y: 3})
    assert by_sku(lines["Birch Law"]) == at_list_price({STANDARD_Y: 12, BASIC_M: 5})
    # Cedar's Teams seats were cancelled on the 21st: 0 at the end of the month, no line.
    assert by_sku(lines["Cedar Clinic"]) == at_list_price({PREMIUM_M: 2})
    assert lines["Dune Logistics"] == []  # not mapped


def test_products_are_named_by_sku_and_described_by_the_price_list(monthly: MonthlyStory) -> None:
    w = monthly.world
    for sku in (PREMIUM_M, EXCHANGE_Y, STANDARD_Y, BASIC_M, TEAMS_M):
        (product,) = w.products(pc(sku))
        name, cost, retail = list_price(sku)
        assert product["description"] == name
        assert (money(product["price_cost"]), money(product["price_retail"])) == (cost, retail)


def test_each_prorated_subscription_gets_one_charge_of_billed_minus_a_full_month(
    monthly: MonthlyStory,
) -> None:
    m = monthly
    last = m.statements[LAST]
    expected = {  # customer, SKU, subscription: its one charge for last month
        ("Alder Dental", PREMIUM_M, "alder premium"), ("Birch Law", STANDARD_Y, "birch standard"),
        ("Birch Law", BASIC_M, "birch basic"), ("Cedar Clinic", TEAMS_M, "cedar teams"),
    }
    for customer, sku, sub in sorted(expected):
        line = only(charges_named(m.charges_after_first[customer], sku, "proration", LAST))
        cost, retail = proration(last, m.subs[sub], LAST)
        assert (line.quantity, line.retail, line.cost) == (Decimal(1), retail, cost), sub
        assert line.product == pc(sku), sub
    prorations = [ln for lines in m.charges_after_first.values() for ln in lines
                  if " proration " in (ln.name or "")]
    assert len(prorations) == len(expected)  # none for a full month (Alder's Exchange, ...)


def test_the_reference_example_prorates_to_the_cent(monthly: MonthlyStory) -> None:
    """20 seats until the 18th, 23 from the 19th, at 23.76 cost and 26.40 retail."""
    m = monthly
    days, before, after = Decimal(LAST.days), Decimal(18), Decimal(LAST.days - 18)
    billed_cost = (cents(Decimal("23.76") * 20 * before / days)
                   + cents(Decimal("23.76") * 23 * after / days))
    billed_retail = (cents(Decimal("26.40") * 20 * before / days)
                     + cents(Decimal("26.40") * 23 * after / days))
    records = seat_records(m.statements[LAST], m.subs["alder premium"])
    assert [(r.quantity, r.start_on, r.end_on) for r in records] == [
        (Decimal(20), LAST.first, LAST.day(18)), (Decimal(23), LAST.day(19), LAST.last)]
    assert sum(r.amount for r in records) == billed_cost  # what Crayon billed
    line = only(charges_named(m.charges_after_first["Alder Dental"], PREMIUM_M, "proration",
                              LAST))
    assert line.cost == billed_cost - Decimal("546.48")  # 23 x 23.76
    assert line.retail == billed_retail - Decimal("607.20")  # 23 x 26.40
    assert line.retail < 0  # seats added mid-month: the line billed days they did not exist
    assert line.name is not None
    assert "20 → 23 seats on " + str(LAST.day(19)) in line.name


def test_a_cancelled_subscription_is_charged_what_was_billed_without_a_line(
    monthly: MonthlyStory,
) -> None:
    m = monthly
    records = seat_records(m.statements[LAST], m.subs["cedar teams"])
    line = only(charges_named(m.charges_after_first["Cedar Clinic"], TEAMS_M, "proration", LAST))
    assert (line.cost, line.retail) == (sum(r.amount for r in records),
                                        sum(r.retail_total for r in records))
    assert line.retail > 0
    assert pc(TEAMS_M) not in by_sku(m.recurring_after_first["Cedar Clinic"])


def test_charges_are_one_time_lines_taxed_like_their_product(monthly: MonthlyStory) -> None:
    m, w = monthly, monthly.world
    one_time = {ln.id for c in m.customers.values() for ln in w.charge_lines(c.schedule_id)}
    every = [ln for c in m.customers.values() for ln in w.lines(c.schedule_id)]
    named_like_charges = [ln for ln in every
                          if re.search(r" (proration|usage|annual) \d{4}-", ln.name or "")]
    assert len(named_like_charges) >= 5
    for line in named_like_charges:
        assert line.id in one_time, f"a charge that would bill every month: {line}"
        (product,) = w.products(str(line.product))
        assert (product["taxable"], line.taxable) == (False, False), line  # as configured


def test_the_first_sync_records_older_statements_as_its_baseline(monthly: MonthlyStory) -> None:
    m = monthly
    older_ids = {str(s.id) for s in m.statements[OLDER]}
    (warning,) = m.first.notices("warnings", "baseline")
    listed = set(re.findall(r"\d+", warning["message"].split("(")[-1]))
    assert older_ids <= listed
    assert older_ids <= m.applied_after_first
    # Birch's 14 → 15 on the 12th two months ago is not billed: that month was billed by hand.
    older_charges = [ln for lines in m.charges_after_first.values() for ln in lines
                     if f"{OLDER.first}..{OLDER.last}" in (ln.name or "")]
    assert older_charges == []
    last_seats = statement_of(m.statements[LAST], m.world, MONTHLY, SEAT)
    assert str(last_seats.id) not in listed
    assert str(last_seats.id) in m.applied_after_first


def test_the_first_sync_bills_every_statement_of_the_newest_month(monthly: MonthlyStory) -> None:
    m = monthly
    (warning,) = m.first.notices("warnings", "baseline")
    listed = set(re.findall(r"\d+", warning["message"].split("(")[-1]))
    assert listed == {str(s.id) for s in m.statements[OLDER]}
    usage = statement_of(m.statements[LAST], m.world, MONTHLY, USAGE)
    (record,) = usage.records
    line = only(charges_named(m.charges_after_first["Cedar Clinic"], AZURE, "usage", LAST))
    assert (line.quantity, line.retail, line.cost) == (Decimal(1), record.retail_total,
                                                       record.amount)


def test_an_unmapped_tenant_is_reported_with_the_money_left_unbilled(
    monthly: MonthlyStory,
) -> None:
    m = monthly
    _, retail = proration(m.statements[LAST], m.subs["dune basic"], LAST)
    assert retail > 0
    unbilled = {n["customer"]: n["message"] for n in m.first.notices("warnings", "unbilled")}
    assert unbilled["Dune Logistics (Monthly)"] == (
        f"not mapped: {retail:.2f} of one-time charges left unbilled")
    assert "Dune Logistics" in {n["customer"] for n in m.first.notices("warnings", "unmapped")}
    dune = m.customers["Dune Logistics"]
    assert [ln.product_id for ln in m.world.lines(dune.schedule_id)] == [
        m.world.msp_product_id]  # only the MSP's own line, before and after every sync


def test_mapping_one_billing_motion_leaves_the_other_unmapped_and_reported(
    monthly: MonthlyStory,
) -> None:
    m = monthly
    alder = m.tenants["Alder Dental"]
    assert str(alder.id) in m.map_result.stdout
    table = m.world.table()
    monthly_row, annual_row = table[("Alder Dental", MONTHLY)], table[("Alder Dental", ANNUAL)]
    assert (monthly_row.status, monthly_row.psa_customer_id, monthly_row.schedule_id) == (
        "mapped", m.customers["Alder Dental"].id, m.customers["Alder Dental"].schedule_id)
    assert (annual_row.status, annual_row.schedule_id) == ("not_mapped", None)
    # The 5 annual seats (5 x 264.00 for the year) are not billed anywhere, and said so.
    unbilled = {n["customer"]: n["message"] for n in m.first.notices("warnings", "unbilled")}
    assert unbilled["Alder Dental (Annual)"] == (
        "not mapped: 1320.00 of one-time charges left unbilled")
    assert [ln for lines in m.charges_after_first.values() for ln in lines
            if PREMIUM_A in (ln.name or "")] == []


def test_mapping_a_tenant_of_two_motions_by_name_alone_is_refused_as_ambiguous(
    monthly: MonthlyStory,
) -> None:
    result = monthly.ambiguous
    assert result.code == 2, result.stdout + result.stderr
    assert "ambiguous" in result.stderr
    assert "billing motion Annual" in result.stderr
    assert "billing motion Monthly" in result.stderr
    table = monthly.world.table()
    assert table[("Alder Dental", ANNUAL)].status == "not_mapped"  # nothing was mapped


def test_the_ambiguity_error_points_to_the_billing_motion_option(monthly: MonthlyStory) -> None:
    result = monthly.ambiguous
    assert result.code == 2
    assert "--billing-motion" in result.stderr


def test_mapping_list_shows_the_billing_motion(monthly: MonthlyStory) -> None:
    m = monthly
    assert m.listing.code == 0, m.listing.stderr
    rows = table_rows(m.listing.stdout)
    assert list(rows[0]) == ["vendor_customer", "vendor_customer_id", "billing_motion",
                             "status", "psa_customer", "schedule_id"]
    seen = {(r["vendor_customer"], r["billing_motion"], r["status"], r["psa_customer"])
            for r in rows}
    assert seen == {
        ("Alder Dental", ANNUAL, "Not mapped", ""),
        ("Alder Dental", MONTHLY, "Mapped", "Alder Dental Group"),
        ("Birch Law", MONTHLY, "Mapped", "Birch Law LLP"),
        ("Cedar Clinic", MONTHLY, "Mapped", "Cedar Clinic"),
        ("Dune Logistics", MONTHLY, "Not mapped", ""),
    }
    alder = [r for r in rows if r["vendor_customer"] == "Alder Dental"]
    assert {r["vendor_customer_id"] for r in alder} == {str(m.tenants["Alder Dental"].id)}


def test_a_re_run_right_after_bills_no_charge_twice(monthly: MonthlyStory) -> None:
    m = monthly
    assert m.second.code == 0, m.second.result.stdout + m.second.result.stderr
    assert m.second.changes("charge.added") == []
    assert m.posts_in_second == 0  # not a line, not a product
    ids = {n: sorted(ln.id for ln in lines) for n, lines in m.charges_after_second.items()}
    assert ids == {n: sorted(ln.id for ln in lines) for n, lines in m.charges_after_first.items()}
    # Seat-related charges only; Azure usage charges are checked by the Azure tests.
    seats = {n: len([ln for ln in lines if f"{AZURE} usage" not in (ln.name or "")])
             for n, lines in m.charges_after_second.items()}
    assert seats == {"Alder Dental": 1, "Birch Law": 2, "Cedar Clinic": 2,  # + the setup fee
                     "Dune Logistics": 0}


def test_a_re_run_right_after_writes_nothing(monthly: MonthlyStory) -> None:
    m = monthly
    assert m.writes_in_second == 0  # no POST, PUT or DELETE reached Syncro
    assert m.second.changes() == []
    assert m.second.summary["requests"]["writes"] == 0


def test_a_charge_line_is_never_changed_by_later_syncs(monthly: MonthlyStory) -> None:
    """Cedar cancelled Teams: its proration is the only line of that product on the invoice."""
    m, w = monthly, monthly.world
    charge = only(charges_named(m.charges_after_first["Cedar Clinic"], TEAMS_M, "proration",
                                LAST))
    assert w.syncro.state.lines.get(charge.id) is not None, "the charge line was deleted"
    assert only(charges_named(w.charge_lines(charge.schedule_id), TEAMS_M, "proration",
                              LAST)) == charge


def test_the_next_statement_sets_the_new_counts_on_the_same_lines(monthly: MonthlyStory) -> None:
    m, w = monthly, monthly.world
    assert m.third.code == 0, m.third.result.stdout + m.third.result.stderr
    now = {n: w.recurring_lines(c.schedule_id) for n, c in m.customers.items()}
    assert by_sku(now["Alder Dental"]) == at_list_price({PREMIUM_M: 25, EXCHANGE_Y: 3})
    assert by_sku(now["Birch Law"]) == at_list_price({STANDARD_Y: 12, BASIC_M: 0})
    assert by_sku(now["Cedar Clinic"]) == at_list_price({PREMIUM_M: 2})
    assert {ln.id for lines in now.values() for ln in lines} == {
        ln.id for lines in m.recurring_after_first.values() for ln in lines}
    assert sorted((c["customer"], c["field"], c["before"], c["after"])
                  for c in m.third.changes("line.quantity_set")) == [
        ("Alder Dental → Alder Dental Group", f"{PREMIUM_M} quantity", "23", "25"),
        ("Birch Law → Birch Law LLP", f"{BASIC_M} quantity", "5", "0"),
    ]


def test_the_next_statement_adds_that_months_charges_only(monthly: MonthlyStory) -> None:
    m, w = monthly, monthly.world
    nxt = m.statements[NEXT]
    before = {ln.id for lines in m.charges_after_second.values() for ln in lines}
    new = {n: [ln for ln in w.charge_lines(c.schedule_id) if ln.id not in before]
           for n, c in m.customers.items()}
    alder = only(new["Alder Dental"])
    assert alder.name is not None
    assert alder.name.startswith(f"{PREMIUM_M} proration {NEXT.first}..{NEXT.last}")
    assert (alder.cost, alder.retail) == proration(nxt, m.subs["alder premium"], NEXT)
    birch = only(new["Birch Law"])  # Basic cancelled on the 16th; Standard a full month
    assert birch.name is not None
    assert birch.name.startswith(f"{BASIC_M} proration {NEXT.first}..{NEXT.last}")
    assert (birch.cost, birch.retail) == proration(nxt, m.subs["birch basic"], NEXT)
    assert birch.retail > 0
    # Cedar: this month's Azure usage, one charge for its two meters.
    usage = statement_of(nxt, w, MONTHLY, USAGE)
    cedar = only(new["Cedar Clinic"])
    assert cedar.name is not None
    assert cedar.name.startswith(f"{AZURE} usage {NEXT.first}..{NEXT.last}")
    assert (cedar.quantity, cedar.retail, cedar.cost) == (
        Decimal(1), sum(r.retail_total for r in usage.records),
        sum(r.amount for r in usage.records))
    assert new["Dune Logistics"] == []
    assert len(m.third.changes("charge.added")) == 3


def test_lines_of_products_the_daemon_does_not_manage_are_never_touched(
    monthly: MonthlyStory,
) -> None:
    m, w = monthly, monthly.world
    _, lines_before = m.syncro_before
    theirs_before = [ln for ln in lines_before
                     if ln["product_id"] == w.msp_product_id or ln["id"] == m.handmade_line_id]
    theirs_now = [ln for ln in w.syncro.state.lines.all()
                  if ln["product_id"] == w.msp_product_id or ln["id"] == m.handmade_line_id]
    assert len(theirs_before) == len(m.customers) + 1
    assert theirs_now == theirs_before  # same ids, quantities, prices, flags, positions
    ids = {str(ln["id"]) for ln in theirs_before}
    assert m.write_paths  # the syncs did write...
    assert [p for p in m.write_paths if p.rsplit("/", 1)[-1] in ids] == []  # ...elsewhere


# == product modes ===============================================================================


def test_in_use_mode_creates_products_for_the_skus_on_the_statements_only(
    in_use: ModeStory,
) -> None:
    s, w = in_use, in_use.world
    assert s.sync.code == 0, s.sync.result.stdout + s.sync.result.stderr
    assert sorted(p["name"] for p in w.products() if p["id"] != w.msp_product_id) == sorted(
        [pc(PREMIUM_M), pc(BASIC_M)])
    assert by_sku(w.recurring_lines(s.customers["Oak"].schedule_id)) == at_list_price(
        {PREMIUM_M: 4, BASIC_M: 3})


def test_in_use_mode_prices_a_sku_off_the_price_list_from_the_statement(
    in_use: ModeStory,
) -> None:
    s, w = in_use, in_use.world
    (record,) = seat_records(s.statements, s.subs["basic"])
    (product,) = w.products(pc(BASIC_M))
    assert (money(product["price_cost"]), money(product["price_retail"])) == (
        record.unit_price, record.retail_unit_price)
    assert product["description"] == "Microsoft 365 Business Basic"


def test_all_mode_creates_a_product_for_every_sku_on_the_price_list(
    all_products: ModeStory,
) -> None:
    s, w = all_products, all_products.world
    expected = {pc(sku_of(row.product.part_number, row.term, int(row.billing_cycle))): row
                for row in w.ciq.agreement_products()}
    assert pc(sku_of(E3, "P1Y")) in expected  # bought by nobody
    assert pc(BASIC_M) not in expected  # taken off the price list
    products = {p["name"]: p for p in w.products() if p["id"] != w.msp_product_id}
    assert set(products) == set(expected)
    for name, row in expected.items():
        assert (money(products[name]["price_cost"]), money(products[name]["price_retail"])) == (
            row.sales_price, row.retail_price), name
        assert products[name]["description"] == row.product.name
    pine = s.customers["Pine"]
    assert by_sku(w.recurring_lines(pine.schedule_id)) == at_list_price({PREMIUM_M: 4})


def test_all_mode_reports_a_sku_missing_from_the_price_list_as_an_error(
    all_products: ModeStory,
) -> None:
    s = all_products
    assert s.sync.code == 1, s.sync.result.stdout + s.sync.result.stderr
    assert s.sync.summary["status"] == "partial"
    errors = s.sync.notices("errors", "vendor_data")
    assert [e["customer"] for e in errors] == ["Quarry Works"]
    assert BASIC_M in errors[0]["message"]
    assert "not on the price list" in errors[0]["message"]
    assert all("Quarry Works" in (e["customer"] or "") for e in s.sync.notices("errors"))


def test_all_mode_bills_nothing_for_a_tenant_with_a_sku_off_the_price_list(
    all_products: ModeStory,
) -> None:
    s, w = all_products, all_products.world
    quarry = s.customers["Quarry"]
    assert [ln.product_id for ln in w.lines(quarry.schedule_id)] == [w.msp_product_id]
    with w.store() as tx:
        assert not any(tx.is_statement_applied("cloudiq", str(st.id)) for st in s.statements)


# == Azure and annual terms ======================================================================


def test_azure_usage_is_one_charge_per_tenant_and_period_of_the_totals(
    extras_on: ExtrasStory,
) -> None:
    s, w = extras_on, extras_on.world
    assert s.sync.code == 0, s.sync.result.stdout + s.sync.result.stderr
    usage = statement_of(s.statements, w, MONTHLY, USAGE)
    for name, tenant in (("Maple", "Maple Bakery"), ("Larch", "Larch Studio")):
        records = [r for r in usage.records if r.tenant.name == tenant]
        assert len(records) == (2 if name == "Maple" else 1)
        line = only(w.charge_lines(s.customers[name].schedule_id))
        assert line.name is not None
        assert line.name.startswith(f"{AZURE} usage {LAST.first}..{LAST.last}")
        assert (line.product, line.quantity) == (pc(AZURE), Decimal(1))
        assert line.retail == sum(r.retail_total for r in records)
        assert line.cost == sum(r.amount for r in records)
    assert s.sync.notices("warnings", "baseline") == []  # one statement per motion: all billed


def test_annual_seats_are_one_charge_for_the_year_on_the_annual_invoice(
    extras_on: ExtrasStory,
) -> None:
    s, w = extras_on, extras_on.world
    larch = s.customers["Larch"]
    line = only(w.charge_lines(larch.schedule_ids[1]))
    _, cost, retail = list_price(PREMIUM_A)
    assert (line.product, line.quantity, line.retail, line.cost) == (
        pc(PREMIUM_A), Decimal(4), retail, cost)
    assert line.name is not None
    assert line.name.startswith(f"{PREMIUM_A} annual {LAST.day(9)}..")
    annual = statement_of(s.statements, w, ANNUAL, SEAT)
    assert line.quantity * line.cost == annual.total  # what Crayon billed for the year
    assert w.recurring_lines(larch.schedule_ids[1]) == []  # annual seats are not recurring


def test_a_re_run_after_usage_and_annual_charges_writes_nothing(extras_on: ExtrasStory) -> None:
    s, w = extras_on, extras_on.world
    assert s.again is not None
    assert s.again.code == 0, s.again.result.stdout + s.again.result.stderr
    assert s.writes_again == 0  # no POST, PUT or DELETE reached Syncro
    assert s.again.changes() == []
    assert s.charges_before_again is not None
    assert len(s.charges_before_again) == 3  # Maple's usage, Larch's usage and annual seats
    assert _all_charges(w, s.customers) == s.charges_before_again


def test_with_azure_and_annual_off_no_charge_is_added(extras_off: ExtrasStory) -> None:
    s, w = extras_off, extras_off.world
    assert s.sync.code == 0, s.sync.result.stdout + s.sync.result.stderr
    for customer in s.customers.values():
        for schedule_id in customer.schedule_ids:
            assert w.charge_lines(schedule_id) == [], schedule_id
    assert s.sync.changes("charge.added") == []
    assert s.sync.notices("warnings", "unbilled") == []  # the operator's choice, not a problem
    assert s.sync.notices("errors") == []
    # The statements were read, not missed: their records files were fetched, and what was
    # left out is in the log.
    for statement in s.statements:
        assert w.cloudiq.requests.count(
            method="GET", path=rf"/billingstatements/{statement.id}/billingrecordsfile$") >= 1
    skipped = sorted((e["customer"], e["reason"])
                     for e in log_events(s.sync.result, "cloudiq.skipped"))
    assert skipped == [("Larch Studio", "sync_annual is off"),
                       ("Larch Studio", "sync_azure is off"),
                       ("Maple Bakery", "sync_azure is off")]


def test_billing_motions_filter_leaves_the_annual_profile_alone(
    monthly_only: MotionStory,
) -> None:
    s, w = monthly_only, monthly_only.world
    assert s.sync.code == 0, s.sync.result.stdout + s.sync.result.stderr
    monthly_schedule, annual_schedule = s.customer.schedule_ids
    assert by_sku(w.recurring_lines(monthly_schedule)) == at_list_price({PREMIUM_M: 5})
    assert [ln.product_id for ln in w.lines(annual_schedule)] == [w.msp_product_id]
    annual = statement_of(s.statements, w, ANNUAL, SEAT)
    assert w.cloudiq.requests.count(path=rf"/billingstatements/{annual.id}/") == 0
    listed = w.cloudiq.requests.entries(method="GET", path=r"/billingstatements/?$")
    assert listed
    assert {r.query.get("invoiceProfileId") for r in listed} == {str(w.profile(MONTHLY))}
    assert str(statement_of(s.statements, w, MONTHLY, SEAT).id) in s.applied
    assert str(annual.id) not in s.applied  # still there for when Annual is synced
    assert s.table[("Rowan Advisors", ANNUAL)].status == "mapped"  # not taken for gone
    assert s.sync.summary["mapping"]["detached"] == []


# == tokens and prices ===========================================================================


def test_an_access_token_expiring_mid_run_is_refreshed_once(tokens: TokenStory) -> None:
    t = tokens
    assert t.first.code == 0, t.first.result.stdout + t.first.result.stderr
    assert [r.status for r in t.first_requests if r.status == 401] == [401]
    assert [r.method for r in t.first_requests if r.path.endswith("/connect/token")] == [
        "POST", "POST"]
    grants = [(e["grant"], e["reason"]) for e in log_events(t.first.result,
                                                            "cloudiq.token_granted")]
    assert grants == [("password", "login"), ("refresh_token", "rejected")]
    # The 3rd API request was refused, then sent again with the new token and answered.
    api = [r for r in t.first_requests if not r.path.endswith("/connect/token")]
    assert [r.status for r in api[:4]] == [200, 200, 401, 200]
    assert (api[3].path, api[3].query) == (api[2].path, api[2].query)
    assert (t.line_after_first.product, t.line_after_first.quantity) == (pc(PREMIUM_M),
                                                                       Decimal(3))


def test_an_expired_refresh_token_falls_back_to_one_password_grant(tokens: TokenStory) -> None:
    t = tokens
    assert t.second.code == 0, t.second.result.stdout + t.second.result.stderr
    assert [r.status for r in t.second_requests if r.status == 401] == [401]
    grants = [(e["grant"], e["reason"]) for e in log_events(t.second.result,
                                                            "cloudiq.token_granted")]
    assert grants == [("password", "login"), ("password", "login")]
    assert len(log_events(t.second.result, "cloudiq.refresh_refused")) == 1


def test_a_price_list_change_updates_the_product_and_its_lines_and_is_reported(
    tokens: TokenStory,
) -> None:
    t, w = tokens, tokens.world
    (product,) = w.products(pc(PREMIUM_M))
    assert (money(product["price_cost"]), money(product["price_retail"])) == (
        NEW_PREMIUM_COST, NEW_PREMIUM_RETAIL)
    _, old_cost, old_retail = list_price(PREMIUM_M)
    reported = {(c["field"], c["before"], c["after"])
                for c in t.second.changes("product.price_set")}
    assert {(f, Decimal(b), Decimal(a)) for f, b, a in reported} == {
        ("price_cost", old_cost, NEW_PREMIUM_COST),
        ("price_retail", old_retail, NEW_PREMIUM_RETAIL)}
    assert all("price list" in c["reason"] for c in t.second.changes("product.price_set"))
    line = only(w.recurring_lines(t.customer.schedule_id))
    assert (line.id, line.quantity, line.retail, line.cost) == (
        t.line_after_first.id, Decimal(3), NEW_PREMIUM_RETAIL, NEW_PREMIUM_COST)
    assert {c["field"] for c in t.second.changes("line.price_set")} == {
        f"{PREMIUM_M} retail", f"{PREMIUM_M} cost"}
    assert t.second.notices("warnings", "price_kept") == []


# == crash safety =================================================================================


def test_a_charge_whose_answer_was_lost_is_found_not_sent_again(crash: CrashStory) -> None:
    c, w = crash, crash.world
    # One POST for the recurring line, one for the charge: the charge was never resent.
    assert c.first_posts == {"tern": 2, "umber": 2}
    tern = only(c.charges_after_first["tern"])
    assert tern.name is not None
    assert tern.name.startswith(f"{TEAMS_M} proration {LAST.first}..{LAST.last}")
    assert tern.quantity == 1
    assert only(c.charges_after_second["tern"]) == tern
    intent = c.intents_after_second["tern"]
    assert intent is not None
    assert (intent.status, intent.result_id) == ("settled", tern.id)
    assert by_sku(w.recurring_lines(c.tern.schedule_id)) == at_list_price({TEAMS_M: 6})


def test_a_run_stopped_between_the_charge_and_its_record_leaves_it_pending(
    crash: CrashStory,
) -> None:
    c = crash
    assert c.first.code == 2, c.first.stdout + c.first.stderr  # the 401 stopped the run
    assert f"GET /schedules/{c.umber.schedule_id}" in c.first.stderr
    assert [i.key for i in c.pending_after_first] == [c.keys["umber"]]
    assert len(c.charges_after_first["umber"]) == 1  # the line did land


def test_the_next_run_records_the_landed_charge_instead_of_adding_it_again(
    crash: CrashStory,
) -> None:
    c = crash
    assert c.second.code == 0, c.second.result.stdout + c.second.result.stderr
    assert c.writes_in_second == 0  # no POST, PUT or DELETE: only the state database learns
    umber = only(c.charges_after_second["umber"])
    assert umber == only(c.charges_after_first["umber"])
    intent = c.intents_after_second["umber"]
    assert intent is not None
    assert (intent.status, intent.result_id) == ("settled", umber.id)
    (added,) = c.second.changes("charge.added")
    assert added["target"] == f"line:{umber.id}"
    assert c.keys["umber"] in added["reason"]
