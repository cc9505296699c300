"""Does the Syncro client sustain its configured rate without ever drawing a 429?

Runs N GETs through `SyncroClient` against the sandbox, whose own limiter is set to the same
requests-per-minute, sequentially and from a pool of threads sharing one limiter. The limit is
scaled up (default 6,000/min) so the run takes seconds; the ratios do not depend on it.

    python -m bench.syncro_rate [--requests 1000] [--rate 6000] [--workers 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from bench.results import save_section
from sync_daemon import logs
from sync_daemon.connectors.syncro import SyncroClient
from sync_daemon.sandbox import DEFAULT_TOKEN, SlidingWindowLimiter, SyncroSandbox, SyncroState

TITLE = "Syncro client rate"
# The sandbox judges the rate over a 10 s sliding window instead of Syncro's 60 s, so that a
# run of a few seconds is held to the limit as strictly as a long run would be.
WINDOW_S = 10.0


@dataclass(frozen=True)
class Outcome:
    """One benchmark run."""

    mode: str
    requests: int
    rate: int
    elapsed_s: float
    throttled: int
    busiest_window: int

    @property
    def achieved_per_minute(self) -> float:
        """Requests per minute actually sustained."""
        return self.requests / self.elapsed_s * 60

    @property
    def ratio(self) -> float:
        """Achieved rate as a fraction of the limit."""
        return self.achieved_per_minute / self.rate


def run(requests: int, rate: int, workers: int) -> Outcome:
    """Send `requests` GETs at `rate`/min with `workers` threads; count what the server saw."""
    state = SyncroState()
    product_ids = [state.products.add(f"Bench product {i}")["id"] for i in range(50)]
    with SyncroSandbox(state, requests_per_minute=rate) as sandbox, \
            SyncroClient.connect(sandbox.api_url, DEFAULT_TOKEN,
                                 requests_per_minute=rate) as client:
        sandbox.limiter = SlidingWindowLimiter(round(rate * WINDOW_S / 60), WINDOW_S)
        targets = [product_ids[i % len(product_ids)] for i in range(requests)]
        started = time.perf_counter()
        if workers == 1:
            for product_id in targets:
                client.get_product(product_id)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(client.get_product, targets))
        elapsed = time.perf_counter() - started
        log = sandbox.requests.entries(method="GET")
    throttled = sum(1 for entry in log if entry.status == 429)
    return Outcome(
        mode="sequential" if workers == 1 else f"{workers} threads",
        requests=requests, rate=rate, elapsed_s=elapsed, throttled=throttled,
        busiest_window=_busiest_window([e.at.timestamp() for e in log], WINDOW_S),
    )


def _busiest_window(stamps: list[float], window: float) -> int:
    """The most requests the server received within any `window` seconds."""
    stamps.sort()
    busiest, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window:
            start += 1
        busiest = max(busiest, end - start + 1)
    return busiest


def report(outcomes: list[Outcome], command: str) -> str:
    """The results as a Markdown table with the machine and the date."""
    lines = [
        f"## {TITLE}",
        "",
        (f"Run `{command}` on {datetime.now(UTC):%Y-%m-%d} "
         f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
         f"Python {platform.python_version()})."),
        "",
        "Target: sustain the configured limit within 5 % with zero 429 responses.",
        "",
        ("| mode | GETs | limit /min | wall s | achieved /min | of limit | 429s "
         "| most in any 10 s (allowed) |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {o.mode} | {o.requests} | {o.rate} | {o.elapsed_s:.1f} | "
        f"{o.achieved_per_minute:.0f} | {o.ratio:.1%} | {o.throttled} | "
        f"{o.busiest_window} ({o.rate * WINDOW_S / 60:.0f}) |"
        for o in outcomes
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse arguments, run both modes, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    logs.configure(format="console", level="warning")
    outcomes = [run(args.requests, args.rate, 1), run(args.requests, args.rate, args.workers)]
    command = (f"python -m bench.syncro_rate --requests {args.requests} --rate {args.rate} "
               f"--workers {args.workers}")
    table = report(outcomes, command)
    print(table)
    save_section(TITLE, table)


if __name__ == "__main__":
    main()
