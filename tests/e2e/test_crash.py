"""Crash anywhere: `sync` is SIGKILLed at each of its Syncro writes, restarted, and still ends
exactly where a run without a crash ends.

A sandbox fault on "the next POST, PUT or DELETE" kills the CLI subprocess when that write
arrives: after Syncro applied it (the answer never reaches the daemon, nothing is recorded)
or before (the write never lands; its write-ahead intent, for a charge or a level write, is
already committed). Each restarted run is killed at its own first write, so a chain of runs
crashes once at every write of the plan; the first run that gets through ends the chain.
Then Syncro must equal a crash-free world's, with no duplicate, every charge once, and the
audit log holding every change exactly once and agreeing with Syncro and the state.

Cloud-iQ's chain creates (a product, recurring lines, one-time charges); Proofpoint's, after
a crash-free first sync, makes the level writes: a product price update, a line update
(quantity and prices), and a package change's line create and delete.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sync_daemon.recovery import RECOVERED
from sync_daemon.sandbox.http import FaultKind, Request
from tests.e2e.conftest import (
    PACKAGES,
    TEAMS,
    CloudiqWorld,
    Month,
    SyncroWorld,
    World,
    cloudiq_concurrently,
    concurrently,
)
from tests.support.effects import (
    AuditCounts,
    BillingState,
    audit_changes,
    audit_problems,
    billing_state,
    duplicates,
)

WRITES = ("POST", "PUT", "DELETE")
LAST, LONG_AGO = Month.from_now(-1), Month.from_now(-9)
MAX_RUNS = 8
RAISE = Decimal("0.25")  # the Proofpoint Business price list's rise before the crashing sync


@dataclass
class Outcome:
    """What a world ends with: Syncro's billing facts and the audit log's changes."""

    state: dict[str, BillingState]
    audit: AuditCounts


@dataclass
class CrashChain(Outcome):
    kills: int
    codes: list[int]
    final_code: int
    duplicates: list[str]
    problems: list[str]
    recovered: set[str]  # targets whose audit entries were recorded on recovery


# One request in flight at a time, so that each write of the plan is the one a kill lands on
# (with several, writes to other invoices may land in the same run; the end state holds too).
ONE_AT_A_TIME = {"concurrency": 1}


def seed_cloudiq(world: CloudiqWorld) -> Path:
    """Two tenants, each went from 4 to 6 Teams seats on the 21st: a product, a recurring
    line and a proration charge each (five writes)."""
    config = world.config(syncro=ONE_AT_A_TIME)
    for name in ("Tern Trading", "Umber Books"):
        customer, tenant = world.customer(name), world.tenant(name)
        teams = world.subscribe(tenant, TEAMS, 4, start_on=LONG_AGO.first)
        world.ciq.set_quantity(teams.id, 6, on=LAST.day(21))
        world.map(tenant, customer)
    world.close(LAST)
    return config


def seed_proofpoint(world: World, syncro: Mapping[str, Any] = ONE_AT_A_TIME) -> Path:
    """Alder (Business, 10 users) and Birch (Advanced, 3) synced once without a crash; then
    Alder grows to 15, Birch moves to Business and the Business price list rises: a product
    price update, a line update (quantity, retail, cost), a line create and a line delete."""
    world.config(syncro=syncro)
    alder, birch = world.customer("Alder Dental"), world.customer("Birch Law")
    alder_org = world.org("Alder Dental", users=10, package="business")
    birch_org = world.org("Birch Law", users=3, package="advanced")
    world.map((alder_org, alder), (birch_org, birch))
    first = world.sync()
    assert first.code == 0, first.result.stderr[-3000:]
    world.set_users(alder_org, 15)
    world.proofpoint.state.set_package(birch_org.primary_domain, "business")
    name, cost, retail = PACKAGES["business"]
    return world.config(syncro=syncro,
                        packages={**PACKAGES, "business": (name, cost + RAISE, retail + RAISE)})


def crash_chain(world: SyncroWorld, seed: Callable[[Any], Path], *,
                kind: FaultKind) -> CrashChain:
    """Sync, killing each run at a Syncro write until a run gets through. `reset_after`:
    each run is killed once Syncro applied its first write. `reset`: the first run before
    its first write; each later run lets that write through and is killed before the next."""
    config = str(seed(world))
    codes, kills = [], 0
    for _ in range(MAX_RUNS):
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_daemon", "--config", config, "sync", "--vendor",
             world.vendor, "--format", "json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def kill(_request: Request, process: subprocess.Popen[str] = process) -> None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

        skip = 1 if kind == "reset" and kills else 0
        fault = world.syncro.faults.add(kind=kind, method=WRITES, path=r"/api/v1/",
                                        skip=skip, on_fire=kill)
        _, stderr = process.communicate(timeout=60)
        if fault.hits == 0:
            world.syncro.faults.clear()
            assert "Traceback" not in stderr, stderr[-3000:]
            final = process.returncode
            break
        assert process.returncode == -signal.SIGKILL
        kills += 1
        codes.append(process.returncode)
    else:
        pytest.fail(f"still crashing after {MAX_RUNS} runs")
    audit = audit_changes(world.state_url, world.vendor)
    with world.store() as tx:
        recovered = {e.target for e in tx.list_audit(limit=10_000, vendor=world.vendor)
                     if e.reason.endswith(RECOVERED)}
    return CrashChain(billing_state(world.syncro.state), audit, kills, codes, final,
                      duplicates(world.syncro.state),
                      audit_problems(world.syncro.state, world.state_url, world.vendor),
                      recovered)


def reference(world: SyncroWorld, seed: Callable[[Any], Path]) -> Outcome:
    """The same world synced with no crash."""
    sync = world.sync(config=seed(world))
    assert sync.code == 0, sync.result.stderr[-3000:]
    return Outcome(billing_state(world.syncro.state), audit_changes(world.state_url,
                                                                    world.vendor))


CLOUDIQ_BUILDS: dict[str, Callable[[CloudiqWorld], Any]] = {
    "after": lambda w: crash_chain(w, seed_cloudiq, kind="reset_after"),
    "before": lambda w: crash_chain(w, seed_cloudiq, kind="reset"),
    "reference": lambda w: reference(w, seed_cloudiq),
}
PROOFPOINT_BUILDS: dict[str, Callable[[World], Any]] = {
    "pp_after": lambda w: crash_chain(w, seed_proofpoint, kind="reset_after"),
    "pp_before": lambda w: crash_chain(w, seed_proofpoint, kind="reset"),
    "pp_reference": lambda w: reference(w, seed_proofpoint),
    "pp_overlapped": lambda w: crash_chain(
        w, lambda x: seed_proofpoint(x, {"concurrency": 4}), kind="reset_after"),
}


@pytest.fixture(scope="module")
def chains(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[Any]]]:
    """Both vendors' chains and references at once (each CLI call is mostly start-up)."""
    with ExitStack() as stack:
        futures = stack.enter_context(cloudiq_concurrently(
            request, tmp_path_factory, CLOUDIQ_BUILDS, workers=3))
        futures |= stack.enter_context(concurrently(
            request, tmp_path_factory, PROOFPOINT_BUILDS, workers=3))
        yield futures


@pytest.fixture
def after(chains: Mapping[str, Future[Any]]) -> CrashChain:
    built: CrashChain = chains["after"].result()
    return built


@pytest.fixture
def before(chains: Mapping[str, Future[Any]]) -> CrashChain:
    built: CrashChain = chains["before"].result()
    return built


@pytest.fixture(name="reference")
def reference_outcome(chains: Mapping[str, Future[Any]]) -> Outcome:
    built: Outcome = chains["reference"].result()
    return built


@pytest.fixture
def pp_after(chains: Mapping[str, Future[Any]]) -> CrashChain:
    built: CrashChain = chains["pp_after"].result()
    return built


@pytest.fixture
def pp_before(chains: Mapping[str, Future[Any]]) -> CrashChain:
    built: CrashChain = chains["pp_before"].result()
    return built


@pytest.fixture
def pp_overlapped(chains: Mapping[str, Future[Any]]) -> CrashChain:
    built: CrashChain = chains["pp_overlapped"].result()
    return built


@pytest.fixture
def pp_reference(chains: Mapping[str, Future[Any]]) -> Outcome:
    built: Outcome = chains["pp_reference"].result()
    return built


def assert_ends_as(chain: CrashChain, reference: Outcome) -> None:
    """The chain's last run succeeded and left what a crash-free run leaves, nothing twice."""
    assert chain.final_code == 0
    assert chain.state == reference.state
    assert chain.audit == reference.audit
    assert chain.duplicates == []
    assert chain.problems == []


@pytest.mark.parametrize("when", ["after", "before"])
def test_killed_at_every_write_the_restarted_sync_ends_as_a_run_without_crash(
    when: str, after: CrashChain, before: CrashChain, reference: Outcome,
) -> None:
    chain = after if when == "after" else before
    # The product, two recurring lines and two charges: a crash at each of them.
    assert chain.kills == 5, chain
    assert_ends_as(chain, reference)


@pytest.mark.parametrize("when", ["after", "before"])
def test_killed_at_every_level_write_the_audit_log_still_has_every_change_once(
    when: str, pp_after: CrashChain, pp_before: CrashChain, pp_reference: Outcome,
) -> None:
    chain = pp_after if when == "after" else pp_before
    # The product price, Alder's line update, Birch's line create and its old line's delete.
    assert chain.kills == 4, chain
    assert_ends_as(chain, pp_reference)


def test_a_level_write_that_landed_before_the_crash_is_recorded_on_recovery(
    pp_after: CrashChain, pp_before: CrashChain,
) -> None:
    # Applied then killed: the product, the updated line and the deleted line are recorded
    # by the next pass (the create is adopted instead). Killed before: nothing to record.
    assert sorted(t.split(":")[0] for t in pp_after.recovered) == ["line", "line", "product"]
    assert pp_before.recovered == set()


def test_killed_while_writes_to_several_invoices_overlap_the_end_is_the_same(
    pp_overlapped: CrashChain, pp_reference: Outcome,
) -> None:
    chain = pp_overlapped
    # Writes to other invoices may land in the run a kill ends, so fewer kills can do.
    assert 1 <= chain.kills <= 4, chain
    assert_ends_as(chain, pp_reference)
