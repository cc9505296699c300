"""Issue 7: what does a sync pass cost at MSP scale, next to the least it could cost?

For each size (mapped customers, Proofpoint and Cloud-iQ mixed, one recurring invoice of ~5
lines each, ~200 SKUs) it starts the sandboxes on 127.0.0.1 with Syncro's limit scaled up to
`--rate` per minute, seeds the mapping table, and runs the real CLI (`sync`, both vendors) as a
child process three times: first sync, no-change re-sync, re-sync after 10 % of the counts
changed. Requests and 429s come from the Syncro sandbox's request log; RSS and CPU from the
child's rusage. The floor and the naive script's requests are computed from the generated data.

    python -m bench.msp_scale [--sizes 100,1000,5000] [--rate 1500]

Planning alone (50,000 customers under 2 s of CPU) is `bench.planning`, a section of its own.

The rate is scaled up from Syncro's 180/min so that the benchmark ends in half an hour, but
not so far that the sandboxes' own CPU (in this process, on the same cores as the daemon)
decides the pace: on a 2-core machine at 3,000/min they could not keep up whenever the
machine was slow, and the Syncro requests themselves ran 1.1x slower than the limit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.results import save_section
from bench.world import (
    CLOUDIQ_CLIENT_ID,
    CLOUDIQ_CLIENT_SECRET,
    CLOUDIQ_PASSWORD,
    CLOUDIQ_USER,
    PACKAGES,
    PAGE_SIZE,
    PARTNER_DOMAIN,
    PROOFPOINT_PASSWORD,
    PROOFPOINT_USER,
    World,
    generate,
    seed_mappings,
)
from sync_daemon.sandbox import DEFAULT_TOKEN, ProofpointSandbox, SyncroSandbox
from sync_daemon.sandbox.cloudiq import CloudiqSandbox

TITLE = "MSP scale (issue 7)"
VENDORS = ("proofpoint", "cloudiq")  # the order `sync` runs them in (the config's order)
WRITES = ("POST", "PUT", "PATCH", "DELETE")
ROOT = Path(__file__).resolve().parents[1]  # where `python -m bench.rusage` resolves


@dataclass(frozen=True)
class Cost:
    """Syncro requests of one run: reads and writes."""

    reads: int
    writes: int

    @property
    def total(self) -> int:
        """Reads plus writes."""
        return self.reads + self.writes


@dataclass(frozen=True)
class Run:
    """One `sync` of both vendors, measured."""

    size: int
    name: str
    made: Cost
    floor: Cost
    naive: Cost
    rate: int
    pass_s: float  # the passes themselves, from `sync.finished` (no interpreter start-up)
    busy_s: float  # first to last Syncro request of each pass, summed
    process_s: float  # the whole child process
    throttled: int
    rss_mb: float
    cpu_s: float
    exit_code: int

    @property
    def rate_floor_s(self) -> float:
        """Requests made at exactly the limit: the least time they can take."""
        return self.made.total * 60 / self.rate


def _pages(items: int) -> int:
    return max(1, math.ceil(items / PAGE_SIZE))


def _floor_reads(world: World, products_before: int, new_products: dict[str, int]) -> int:
    """One pass over the products' pages per vendor pass, one GET per mapped schedule."""
    reads, products = 0, products_before
    for vendor in VENDORS:
        reads += _pages(products) + len(world.of(vendor))
        products += new_products[vendor]
    return reads


def _naive(world: World, products_before: int, new_products: dict[str, int]) -> Cost:
    """Per mapped customer: GET the customer, list its schedules (one page), GET the schedule,
    then write every managed line; plus the same product pages and product creates."""
    reads = writes = 0
    products = products_before
    for vendor in VENDORS:
        reads += _pages(products) + 3 * len(world.of(vendor))
        writes += new_products[vendor] + world.lines(vendor)
        products += new_products[vendor]
    return Cost(reads, writes)


def _config(directory: Path, state_url: str, rate: int, *, syncro: SyncroSandbox,
            proofpoint: ProofpointSandbox, cloudiq: CloudiqSandbox,
            organization_id: int) -> Path:
    lines = [
        "[state]", f'url = "{state_url}"',
        "[log]", 'format = "json"', 'level = "info"',
        "[syncro]", f'base_url = "{syncro.api_url}"', f'api_token = "{DEFAULT_TOKEN}"',
        f"requests_per_minute = {rate}",
        "[safety]", "max_decrease_percent = 100", "max_zeroed_customers = 100000",
        "[proofpoint]", f'base_url = ["{proofpoint.stack_url("us1")}"]',
        f'username = "{PROOFPOINT_USER}"', f'password = "{PROOFPOINT_PASSWORD}"',
        f'partner_domain = "{PARTNER_DOMAIN}"', "requests_per_minute = 100000",
        "[cloudiq]", f'base_url = "{cloudiq.api_url}"', f'client_id = "{CLOUDIQ_CLIENT_ID}"',
        f'client_secret = "{CLOUDIQ_CLIENT_SECRET}"', f'username = "{CLOUDIQ_USER}"',
        f'password = "{CLOUDIQ_PASSWORD}"', f"organization_id = {organization_id}",
        'product_sync_mode = "all"', "requests_per_minute = 100000",
    ]
    for key, (name, cost, retail) in PACKAGES.items():
        lines += [f"[proofpoint.packages.{key}]", f'name = "{name}"', f'cost = "{cost}"',
                  f'retail = "{retail}"']
    path = directory / "sync-daemon.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class _Child:
    exit_code: int
    process_s: float
    rss_mb: float
    cpu_s: float
    pass_s: float
    passes: list[tuple[datetime, datetime]]


def _sync(config: Path, directory: Path) -> _Child:
    """`sync-daemon --config CONFIG sync`, RSS and CPU its own (see `bench.rusage`)."""
    out, err, usage = directory / "sync.out", directory / "sync.err", directory / "rusage.json"
    command = [sys.executable, "-m", "bench.rusage", str(usage), "--",
               sys.executable, "-m", "sync_daemon", "--config", str(config), "sync",
               "--format", "json"]
    started = time.perf_counter()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        subprocess.run(command, stdout=stdout, stderr=stderr, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - started
    measured = json.loads(usage.read_text(encoding="utf-8"))
    pass_s, passes, started_at = 0.0, [], None
    for line in err.read_text(encoding="utf-8").splitlines():
        if '"sync.started"' in line:
            started_at = datetime.fromisoformat(json.loads(line)["timestamp"])
        elif '"sync.finished"' in line and started_at is not None:
            event = json.loads(line)
            pass_s += float(event["duration_s"])
            passes.append((started_at, datetime.fromisoformat(event["timestamp"])))
    if measured["exit_code"] != 0:
        print(err.read_text(encoding="utf-8")[-3000:], file=sys.stderr)
    return _Child(measured["exit_code"], elapsed, measured["rss_mb"], measured["cpu_s"],
                  pass_s, passes)


@contextmanager
def _servers(world: World, rate: int) -> Iterator[tuple[SyncroSandbox, ProofpointSandbox,
                                                         CloudiqSandbox]]:
    with ExitStack() as stack:
        syncro = stack.enter_context(SyncroSandbox(world.syncro, requests_per_minute=rate))
        proofpoint = stack.enter_context(ProofpointSandbox(world.proofpoint, stacks=["us1"]))
        cloudiq = stack.enter_context(CloudiqSandbox(world.cloudiq))
        yield syncro, proofpoint, cloudiq


def bench_size(size: int, rate: int) -> list[Run]:
    """Generate one world and run the three syncs against it."""
    world = generate(size)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="msp-bench-") as tmp, _servers(world, rate) as (
            syncro, proofpoint, cloudiq):
        directory = Path(tmp)
        state_url = f"sqlite:///{directory / 'state.db'}"
        seed_mappings(world, state_url)
        config = _config(directory, state_url, rate, syncro=syncro, proofpoint=proofpoint,
                         cloudiq=cloudiq, organization_id=world.cloudiq.organization.id)
        steps: list[tuple[str, dict[str, int]]] = [
            ("first sync", {"proofpoint": world.lines("proofpoint"),
                            "cloudiq": world.lines("cloudiq")}),
            ("no-change re-sync", dict.fromkeys(VENDORS, 0)),
            ("10 % of counts changed", {}),
        ]
        for name, planned_writes in steps:
            line_writes = planned_writes
            if not line_writes:  # the change: one PUT per count that really changed
                line_writes = {"proofpoint": world.change_counts(0.10), "cloudiq": 0}
            first = name == "first sync"
            new_products = {v: len(world.vendor_skus(v)) if first else 0 for v in VENDORS}
            products_before = len(world.syncro.products.records)
            floor = Cost(_floor_reads(world, products_before, new_products),
                         sum(new_products.values()) + sum(line_writes.values()))
            naive = _naive(world, products_before, new_products)
            syncro.requests.clear()
            child = _sync(config, directory)
            log = syncro.requests.entries()
            made = Cost(sum(1 for e in log if e.method == "GET"),
                        sum(1 for e in log if e.method in WRITES))
            busy = 0.0
            for start, end in child.passes:
                stamps = [e.at for e in log if start <= e.at <= end]
                busy += (max(stamps) - min(stamps)).total_seconds() if stamps else 0.0
            runs.append(Run(
                size=size, name=name, made=made, floor=floor, naive=naive, rate=rate,
                pass_s=child.pass_s, busy_s=busy, process_s=child.process_s,
                throttled=sum(1 for e in log if e.status == 429), rss_mb=child.rss_mb,
                cpu_s=child.cpu_s, exit_code=child.exit_code))
            print(_row(runs[-1]), flush=True)
    return runs


HEADER = (
    "| customers | run | reads (floor) | writes (floor) | requests / floor "
    "| naive reads / writes | naive / made | rate-limit floor s | pass wall s (/ floor) "
    "| Syncro busy s (/ floor) | process wall s | 429s | peak RSS MB | CPU s |\n"
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _row(r: Run) -> str:
    name = r.name if r.exit_code == 0 else f"{r.name} (exit {r.exit_code})"
    floor_s = r.rate_floor_s
    return (
        f"| {r.size:,} | {name} | {r.made.reads:,} ({r.floor.reads:,}) "
        f"| {r.made.writes:,} ({r.floor.writes:,}) | {r.made.total / r.floor.total:.3f} "
        f"| {r.naive.reads:,} / {r.naive.writes:,} | {r.naive.total / r.made.total:.1f}x "
        f"| {floor_s:.1f} | {r.pass_s:.1f} ({r.pass_s / floor_s:.2f}) "
        f"| {r.busy_s:.1f} ({r.busy_s / floor_s:.2f}) | {r.process_s:.1f} | {r.throttled} "
        f"| {r.rss_mb:.0f} | {r.cpu_s:.1f} |"
    )


NOTES = """\
Each run is one `sync-daemon sync` (Proofpoint pass, then Cloud-iQ pass) as a child process;
requests are summed over both passes. **Floor**: per pass, one read of each page of the
products (25 a page) plus one GET per mapped recurring invoice; one write per real change
(products created, lines created, quantities changed), all computed from the generated data.
**Naive**: per mapped customer GET the customer, list its recurring invoices, GET the one,
then write every managed line whether it changed or not (plus the same product pages and
creates). **Rate-limit floor s** = requests made x 60 / limit. **Pass wall s**: the passes'
own `duration_s` (no interpreter start-up; that is in *process wall s*). **Syncro busy s**:
first to last Syncro request of each pass, summed: the time the limiter's budget was in
play. RSS and CPU are the child's own (`os.wait4` in a small launcher, `bench.rusage`:
straight from the benchmark, Linux would count the benchmark's own memory in the child's
peak)."""


def _targets(runs: list[Run]) -> list[str]:
    """Each target of issue 7 with the measured value and whether it was met."""
    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    requests = max(r.made.total / r.floor.total for r in runs)
    quiet = max(r.made.writes for r in runs if r.name == "no-change re-sync")
    wall = max(r.pass_s / r.rate_floor_s for r in runs)
    busy = max(r.busy_s / r.rate_floor_s for r in runs)
    biggest = max(r.size for r in runs)
    rss = max(r.rss_mb for r in runs if r.size == biggest)
    per = {r.size: r for r in runs if r.name == "first sync"}
    growth = ", ".join(
        f"{size:,}: {r.made.total / size:.2f} requests, {r.cpu_s / size * 1000:.1f} ms CPU"
        for size, r in sorted(per.items()))
    return [
        f"- Requests <= 1.05 x floor on every run: worst {requests:.3f}: {mark(requests <= 1.05)}.",
        f"- No-change re-sync makes 0 writes: {quiet}: {mark(quiet == 0)}.",
        (f"- Wall <= 1.10 x rate-limit floor: worst pass wall {wall:.2f}, worst Syncro busy "
         f"{busy:.2f}: {mark(wall <= 1.10)}."),
        (f"- 0 responses with status 429: {sum(r.throttled for r in runs)}: "
         f"{mark(all(r.throttled == 0 for r in runs))}."),
        f"- Peak RSS under 250 MB at {biggest:,} customers: {rss:.0f} MB: {mark(rss < 250)}.",
        f"- Linear cost (first sync, per customer): {growth}.",
    ]


def report(runs: list[Run], command: str) -> str:
    """The results as Markdown, with the machine and the date."""
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}, {platform.system()}")
    return "\n".join([
        f"## {TITLE}",
        "",
        (f"Run `{command}` on {datetime.now(UTC):%Y-%m-%d} ({machine}), "
         f"Syncro limit and `requests_per_minute` both {runs[0].rate:,}/min."),
        "",
        HEADER,
        *(_row(r) for r in runs),
        "",
        "Targets:",
        "",
        *_targets(runs),
        "",
        NOTES,
        "",
    ])


def main() -> None:
    """Parse arguments, run every size, print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,1000,5000",
                        help="comma-separated numbers of mapped customers")
    parser.add_argument("--rate", type=int, default=1500,
                        help="Syncro requests per minute, sandbox and daemon alike")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(HEADER, flush=True)
    runs = [run for size in sizes for run in bench_size(size, args.rate)]
    command = f"python -m bench.msp_scale --sizes {','.join(map(str, sizes))} --rate {args.rate}"
    text = report(runs, command)
    print(text)
    if not args.no_save:
        save_section(TITLE, text)


if __name__ == "__main__":
    main()
