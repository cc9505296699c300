"""The fault matrix: every kind of request a sync makes, hit by every kind of fault.

Faults are injected in the sandboxes over real HTTP: 429 with and without `Retry-After`, 500,
502, 503, a read timeout (the answer comes after the client's `timeout_s`), a connection reset
before the request is processed, and one after it was processed (the write landed, the answer
was lost). After the faulted sync, a second sync must leave Syncro exactly as expected: no
duplicate product or line, no charge twice, every quantity and price right, and the audit log
and state database agreeing with Syncro.

One CLI call costs about two seconds of interpreter start, so each world takes one fault per
request *instance* (a product, a customer's invoice, a stack) and a whole row of the matrix
goes through one run: a Proofpoint world per group of four fault kinds (four packages, a
customer per fault kind whose line is created then updated, another whose line is deleted by
a package change), and one Cloud-iQ world with a tenant per fault kind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from sync_daemon.sandbox.http import Fault, Faults
from tests.e2e.conftest import (
    PACKAGES,
    PARTNER_DOMAIN,
    TEAMS,
    CloudiqWorld,
    Customer,
    Month,
    Sync,
    World,
    cloudiq_concurrently,
    concurrently,
    sku_of,
)
from tests.support.effects import audit_problems, billing_state, duplicates

TIMEOUT_S = 1.0  # the clients' timeout_s in these worlds
DELAY_S = 1.6  # a "timeout" answers this late: after the client gave up, before it looks again

FAULTS: dict[str, dict[str, Any]] = {
    "429-retry-after": {"kind": "status", "status": 429, "headers": {"Retry-After": "1"},
                        "body": {"error": "Rate limit exceeded"}},
    "429-plain": {"kind": "status", "status": 429, "body": "Retry later"},
    "500": {"kind": "status", "status": 500, "body": "Internal Server Error"},
    "502": {"kind": "status", "status": 502, "body": "<html><h1>502 Bad Gateway</h1></html>"},
    "503": {"kind": "status", "status": 503, "body": "Service Unavailable"},
    "timeout": {"kind": "delay", "seconds": DELAY_S},
    "reset": {"kind": "reset"},
    "lost": {"kind": "reset_after"},
}
# Two Proofpoint worlds of four fault kinds each: one package per fault kind.
GROUPS = (("429-retry-after", "500", "timeout", "lost"), ("429-plain", "502", "503", "reset"))
KEYS = ("business", "business_plus", "advanced", "professional")
NAMES = ("Ash", "Birch", "Cedar", "Dogwood")
USERS_BEFORE, USERS_AFTER, DOWN_USERS, NEW_USERS = 5, 8, 3, 2
RAISE = Decimal("0.25")  # the price list's increase between the phases

PROOFPOINT_KINDS = ("proofpoint read", "syncro products read", "syncro schedule read",
                    "product create", "product update", "line create", "line update",
                    "line delete")
CLOUDIQ_KINDS = ("cloudiq read", "charge create")
CLOUDIQ_READS = ("/agreementproducts$", "/customertenants$", "/billingstatements$",
                 "/billingrecordsfile$")
TEAMS_M = sku_of(TEAMS, "P1M")
LAST, LONG_AGO = Month.from_now(-1), Month.from_now(-9)

Expected = dict[str, Any]


def pc(key: str) -> str:
    """The Syncro product of a Proofpoint package."""
    return f"PC_PPE-{key.upper()}"


def inject(faults: Faults, fault: str, **match: Any) -> Fault:
    """Add one fault of kind `fault` (a key of `FAULTS`) for requests matching `match`."""
    return faults.add(**FAULTS[fault], **match)


@dataclass
class Phase:
    """A faulted sync and the sync after it; `faults` by (request kind, fault kind)."""

    faulted: Sync
    settled: Sync
    state: Expected
    expected: Expected
    problems: list[str]
    duplicates: list[str]
    faults: dict[tuple[str, str], list[Fault]] = field(default_factory=dict)


@dataclass
class FaultStory:
    phases: list[Phase]

    def phases_of(self, kind: str, fault: str) -> list[Phase]:
        """The phases in which `fault` hit requests of `kind`."""
        found = [p for p in self.phases if (kind, fault) in p.faults]
        assert found, f"no {fault} fault on a {kind} request"
        return found


# == Proofpoint: reads, products, lines ========================================================


def proofpoint_expected(ups: list[Customer], downs: list[Customer], news: list[Customer],
                        *, raised: bool) -> Expected:
    """Products and lines the world must hold after the first (or, `raised`, second) phase."""
    extra = RAISE if raised else Decimal(0)
    products = {pc(k): (PACKAGES[k][1] + extra, PACKAGES[k][2] + extra) for k in KEYS}
    lines: list[tuple[Any, ...]] = []
    for index, (up, down) in enumerate(zip(ups, downs, strict=True)):
        key = KEYS[index]
        down_key = KEYS[(index + 1) % len(KEYS)] if raised else key
        lines.append((up.schedule_id, pc(key), USERS_AFTER if raised else USERS_BEFORE,
                      *reversed(products[pc(key)])))
        lines.append((down.schedule_id, pc(down_key), DOWN_USERS,
                      *reversed(products[pc(down_key)])))
    for new, key in zip(news, KEYS, strict=False):  # no New customers in phase 1
        lines.append((new.schedule_id, pc(key), NEW_USERS, *reversed(products[pc(key)])))
    return {"products": products, "lines": sorted(lines)}


def proofpoint_state(world: World) -> Expected:
    """What the world's Syncro holds, in the shape of `proofpoint_expected`."""
    state = billing_state(world.syncro.state, skip_product_ids=frozenset({world.msp_product_id}))
    return {"products": {name: (cost, retail) for name, cost, retail, _ in state["products"]},
            "lines": sorted((schedule, product, int(quantity), retail, cost)
                            for schedule, product, _, quantity, retail, cost, _ in state["lines"])}


def _settle(world: World, faulted: Sync, expected: Expected,
            faults: dict[tuple[str, str], list[Fault]]) -> Phase:
    settled = world.sync()
    return Phase(faulted, settled, proofpoint_state(world), expected,
                 audit_problems(world.syncro.state, world.state_url, "proofpoint"),
                 duplicates(world.syncro.state), faults)


def build_proofpoint(world: World, group: tuple[str, ...]) -> FaultStory:
    """Phase 1, the first sync: each package's product create, each Up customer's invoice
    read, one stack's org list and the product list each take one fault.
    Phase 2, after the users of every Up org rose, every Down org moved to the next package,
    a New customer per package was mapped and the price list rose: each product update, each
    Up line update, each Down line delete, each New line create, each Down invoice read and
    the org lists and product list take one fault. (A line create waits for phase 2: a
    product whose create does not land until the next pass takes its lines with it.)"""
    timeouts = {"timeout_s": TIMEOUT_S}
    world.config(syncro=timeouts, proofpoint=timeouts)
    ups = [world.customer(f"{name} Up") for name in NAMES]
    downs = [world.customer(f"{name} Down") for name in NAMES]
    up_orgs = [world.org(f"{name} Up", users=USERS_BEFORE, package=key)
               for name, key in zip(NAMES, KEYS, strict=True)]
    down_orgs = [world.org(f"{name} Down", users=DOWN_USERS, package=key)
                 for name, key in zip(NAMES, KEYS, strict=True)]
    world.map(*zip(up_orgs, ups, strict=True), *zip(down_orgs, downs, strict=True))
    syncro, stacks = world.syncro.faults, world.proofpoint.stacks
    org_list = rf"/orgs/{PARTNER_DOMAIN}/orgs$"

    faults: dict[tuple[str, str], list[Fault]] = {}
    for stack, fault in zip(("us1", "us2"), group[:2], strict=True):
        faults[("proofpoint read", fault)] = [
            inject(stacks[stack].faults, fault, method="GET", path=org_list)]
    for fault in group[:2]:
        faults[("syncro products read", fault)] = [
            inject(syncro, fault, method="GET", path=r"/products$")]
    for key, fault, up in zip(KEYS, group, ups, strict=True):
        faults[("product create", fault)] = [inject(
            syncro, fault, method="POST", path=r"/products$",
            content=rf'"name":\s*"{pc(key)}"')]
        faults[("syncro schedule read", fault)] = [
            inject(syncro, fault, method="GET", path=rf"/schedules/{up.schedule_id}$")]
    first = world.sync()
    phases = [_settle(world, first, proofpoint_expected(ups, downs, [], raised=False),
                      faults)]

    news = [world.customer(f"{name} New") for name in NAMES]
    new_orgs = [world.org(f"{name} New", users=NEW_USERS, package=key)
                for name, key in zip(NAMES, KEYS, strict=True)]
    world.map(*zip(new_orgs, news, strict=True))

    for org in up_orgs:
        world.set_users(org, USERS_AFTER)
    for index, org in enumerate(down_orgs):
        world.proofpoint.state.set_package(org.primary_domain, KEYS[(index + 1) % len(KEYS)])
    raised = {k: (name, cost + RAISE, retail + RAISE) for k, (name, cost, retail)
              in PACKAGES.items()}
    world.config(packages=raised, syncro=timeouts, proofpoint=timeouts)
    faults = {}
    for stack, fault in zip(("us1", "us2"), group[2:], strict=True):
        faults[("proofpoint read", fault)] = [
            inject(stacks[stack].faults, fault, method="GET", path=org_list)]
    for fault in group[2:]:
        faults[("syncro products read", fault)] = [
            inject(syncro, fault, method="GET", path=r"/products$")]
    product_ids = {key: int(world.products(pc(key))[0]["id"]) for key in KEYS}
    for key, fault, up, down, new in zip(KEYS, group, ups, downs, news, strict=True):
        faults[("line create", fault)] = [inject(
            syncro, fault, method="POST", path=rf"/schedules/{new.schedule_id}/line_items$")]
        faults[("product update", fault)] = [
            inject(syncro, fault, method="PUT", path=rf"/products/{product_ids[key]}$")]
        faults[("syncro schedule read", fault)] = [
            inject(syncro, fault, method="GET", path=rf"/schedules/{down.schedule_id}$")]
        faults[("line update", fault)] = [inject(
            syncro, fault, method="PUT", path=rf"/schedules/{up.schedule_id}/line_items/\d+$")]
        faults[("line delete", fault)] = [inject(
            syncro, fault, method="DELETE",
            path=rf"/schedules/{down.schedule_id}/line_items/\d+$")]
    second = world.sync()
    phases.append(_settle(world, second, proofpoint_expected(ups, downs, news, raised=True),
                          faults))
    return FaultStory(phases)


def build_group_a(world: World) -> FaultStory:
    return build_proofpoint(world, GROUPS[0])


def build_group_b(world: World) -> FaultStory:
    return build_proofpoint(world, GROUPS[1])


# == Cloud-iQ: vendor reads and one-time charges ===============================================


def cloudiq_state(world: CloudiqWorld) -> Expected:
    """Products and lines (charges included) the world's Syncro holds."""
    state = billing_state(world.syncro.state, skip_product_ids=frozenset({world.msp_product_id}))
    return dict(state)


def build_cloudiq(world: CloudiqWorld) -> FaultStory:
    """A tenant per fault kind went from 4 to 6 Teams seats on the 21st of last month: a
    recurring line and a proration charge each. The first sync's charge create of each tenant
    takes one fault, and each vendor read (price list, tenants, statements, records file) two.
    The expected state is a fault-free world's."""
    world.config(syncro={"timeout_s": TIMEOUT_S}, cloudiq={"timeout_s": TIMEOUT_S})
    customers = []
    for fault in FAULTS:
        name = "Tenant " + fault.replace("-", " ")
        customer, tenant = world.customer(name), world.tenant(name)
        subscription = world.subscribe(tenant, TEAMS, 4, start_on=LONG_AGO.first)
        world.ciq.set_quantity(subscription.id, 6, on=LAST.day(21))
        world.map(tenant, customer)
        customers.append(customer)
    world.close(LAST)
    faults: dict[tuple[str, str], list[Fault]] = {}
    kinds = list(FAULTS)
    for index, path in enumerate(CLOUDIQ_READS):
        for fault in kinds[2 * index:2 * index + 2]:
            faults[("cloudiq read", fault)] = [
                inject(world.cloudiq.faults, fault, method="GET", path=path)]
    for fault, customer in zip(FAULTS, customers, strict=True):
        faults[("charge create", fault)] = [inject(
            world.syncro.faults, fault, method="POST",
            path=rf"/schedules/{customer.schedule_id}/line_items$",
            content=r'"one_time_charge":\s*true')]
    first = world.sync()
    settled = world.sync()
    return FaultStory([Phase(first, settled, cloudiq_state(world), {}, audit_problems(
        world.syncro.state, world.state_url, "cloudiq"), duplicates(world.syncro.state), faults)])


def build_cloudiq_reference(world: CloudiqWorld) -> Expected:
    """The Cloud-iQ story with no fault: one sync."""
    world.config()
    for fault in FAULTS:
        name = "Tenant " + fault.replace("-", " ")
        customer, tenant = world.customer(name), world.tenant(name)
        subscription = world.subscribe(tenant, TEAMS, 4, start_on=LONG_AGO.first)
        world.ciq.set_quantity(subscription.id, 6, on=LAST.day(21))
        world.map(tenant, customer)
    world.close(LAST)
    sync = world.sync()
    assert sync.code == 0, sync.result.stderr[-2000:]
    return cloudiq_state(world)


# == running the stories =======================================================================


@pytest.fixture(scope="module")
def proofpoint_stories(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[Any]]]:
    with concurrently(request, tmp_path_factory, {
        "group_a": build_group_a, "group_b": build_group_b}, workers=2) as futures:
        yield futures


@pytest.fixture(scope="module")
def cloudiq_stories(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[Any]]]:
    with cloudiq_concurrently(request, tmp_path_factory, {
        "cloudiq": build_cloudiq, "cloudiq_reference": build_cloudiq_reference},
            workers=2) as futures:
        yield futures


@pytest.fixture
def group_a(proofpoint_stories: Mapping[str, Future[Any]]) -> FaultStory:
    built: FaultStory = proofpoint_stories["group_a"].result()
    return built


@pytest.fixture
def group_b(proofpoint_stories: Mapping[str, Future[Any]]) -> FaultStory:
    built: FaultStory = proofpoint_stories["group_b"].result()
    return built


@pytest.fixture
def cloudiq(cloudiq_stories: Mapping[str, Future[Any]]) -> FaultStory:
    built: FaultStory = cloudiq_stories["cloudiq"].result()
    return built


@pytest.fixture
def cloudiq_reference(cloudiq_stories: Mapping[str, Future[Any]]) -> Expected:
    built: Expected = cloudiq_stories["cloudiq_reference"].result()
    return built


def _check_phase(phase: Phase, kind: str, fault: str) -> None:
    hits = [f.hits for f in phase.faults[(kind, fault)]]
    assert hits == [1] * len(hits), f"the {fault} fault did not hit a {kind} request"
    output = phase.faulted.result.stdout + phase.faulted.result.stderr
    assert phase.faulted.code in (0, 1), output[-3000:]
    assert "Traceback" not in output
    assert phase.settled.code == 0, (phase.settled.result.stdout
                                     + phase.settled.result.stderr)[-3000:]
    assert phase.duplicates == []
    assert phase.problems == []


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("kind", PROOFPOINT_KINDS)
def test_a_proofpoint_sync_after_the_fault_leaves_syncro_exactly_right(
    kind: str, fault: str, group_a: FaultStory, group_b: FaultStory,
) -> None:
    for phase in (group_a if fault in GROUPS[0] else group_b).phases_of(kind, fault):
        _check_phase(phase, kind, fault)
        assert phase.state == phase.expected


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("kind", CLOUDIQ_KINDS)
def test_a_cloudiq_sync_after_the_fault_bills_exactly_what_a_fault_free_sync_bills(
    kind: str, fault: str, cloudiq: FaultStory, cloudiq_reference: Expected,
) -> None:
    (phase,) = cloudiq.phases_of(kind, fault)
    _check_phase(phase, kind, fault)
    assert phase.state == cloudiq_reference
