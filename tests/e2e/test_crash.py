"""Crash anywhere: `sync` is SIGKILLed at each of its Syncro writes, restarted, and still ends
exactly where a run without a crash ends.

A sandbox fault on "the next POST, PUT or DELETE" kills the CLI subprocess when that write
arrives: after Syncro applied it (the answer never reaches the daemon, nothing is recorded)
or before (the write never lands; a charge's write-ahead intent is already committed). Each
restarted run is killed at its own first write, so a chain of runs crashes once at every
write of the plan; the first run that gets through ends the chain. Then Syncro must equal a
crash-free world's, with no duplicate, every charge once and the audit log agreeing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest

from sync_daemon.sandbox.http import FaultKind, Request
from tests.e2e.conftest import (
    TEAMS,
    CloudiqWorld,
    Month,
    cloudiq_concurrently,
)
from tests.support.effects import BillingState, audit_problems, billing_state, duplicates

WRITES = ("POST", "PUT", "DELETE")
LAST, LONG_AGO = Month.from_now(-1), Month.from_now(-9)
MAX_RUNS = 8


@dataclass
class CrashChain:
    kills: int
    codes: list[int]
    final_code: int
    state: dict[str, BillingState]
    duplicates: list[str]
    problems: list[str]


def seed(world: CloudiqWorld) -> None:
    """Two tenants, each went from 4 to 6 Teams seats on the 21st: a product, a recurring
    line and a proration charge each (five writes)."""
    world.config()
    for name in ("Tern Trading", "Umber Books"):
        customer, tenant = world.customer(name), world.tenant(name)
        teams = world.subscribe(tenant, TEAMS, 4, start_on=LONG_AGO.first)
        world.ciq.set_quantity(teams.id, 6, on=LAST.day(21))
        world.map(tenant, customer)
    world.close(LAST)


def crash_chain(world: CloudiqWorld, *, kind: FaultKind) -> CrashChain:
    """Sync, killing each run at a Syncro write until a run gets through. `reset_after`:
    each run is killed once Syncro applied its first write. `reset`: the first run before
    its first write; each later run lets that write through and is killed before the next."""
    seed(world)
    config = str(world.config())
    codes, kills = [], 0
    for _ in range(MAX_RUNS):
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_daemon", "--config", config, "sync", "--vendor",
             "cloudiq", "--format", "json"],
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
    return CrashChain(kills, codes, final, billing_state(world.syncro.state),
                      duplicates(world.syncro.state),
                      audit_problems(world.syncro.state, world.state_url, "cloudiq"))


def build_after(world: CloudiqWorld) -> CrashChain:
    return crash_chain(world, kind="reset_after")


def build_before(world: CloudiqWorld) -> CrashChain:
    return crash_chain(world, kind="reset")


def build_reference(world: CloudiqWorld) -> dict[str, BillingState]:
    """The same world synced once, with no crash."""
    seed(world)
    sync = world.sync()
    assert sync.code == 0, sync.result.stderr[-3000:]
    return billing_state(world.syncro.state)


@pytest.fixture(scope="module")
def chains(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[Any]]]:
    with cloudiq_concurrently(request, tmp_path_factory, {
        "after": build_after, "before": build_before, "reference": build_reference,
    }, workers=3) as futures:
        yield futures


@pytest.fixture
def after(chains: Mapping[str, Future[Any]]) -> CrashChain:
    built: CrashChain = chains["after"].result()
    return built


@pytest.fixture
def before(chains: Mapping[str, Future[Any]]) -> CrashChain:
    built: CrashChain = chains["before"].result()
    return built


@pytest.fixture
def reference(chains: Mapping[str, Future[Any]]) -> dict[str, BillingState]:
    built: dict[str, BillingState] = chains["reference"].result()
    return built


@pytest.mark.parametrize("when", ["after", "before"])
def test_killed_at_every_write_the_restarted_sync_ends_as_a_run_without_crash(
    when: str, after: CrashChain, before: CrashChain,
    reference: dict[str, BillingState],
) -> None:
    chain = after if when == "after" else before
    # The product, two recurring lines and two charges: a crash at each of them.
    assert chain.kills == 5, chain
    assert chain.final_code == 0
    assert chain.state == reference
    assert chain.duplicates == []
    assert chain.problems == []
