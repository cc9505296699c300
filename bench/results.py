"""`bench/RESULTS.md` holds one section per benchmark; each run replaces only its own."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEAD = """# Benchmarks

Not part of `make test`. `make bench` runs all three (`make bench BENCH_ARGS="--sizes 100"`
for a quick MSP-scale run); each rewrites only its own section below.

- `python -m bench.syncro_rate [--requests N] [--rate R] [--workers W]`: does the Syncro client
  sustain its configured rate without ever drawing a 429?
- `python -m bench.msp_scale [--sizes 100,1000,5000] [--rate R]`: issue 7, what a sync pass
  costs at MSP scale next to the least it could cost.
- `python -m bench.planning [CUSTOMERS] [--repeat N]`: issue 7, the pure plan step alone on
  50,000 customers.
"""


def save_section(title: str, text: str) -> None:
    """Put `text` (which starts with `## {title}`) in place of that section, or append it."""
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEAD
    if not current.startswith("# Benchmarks"):
        current = HEAD  # the old single-benchmark file: start the layout afresh
    marker = f"## {title}\n"
    start = current.find(marker)
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + len(marker))
        rest = current[end + 1:] if end >= 0 else ""
        updated = current[:start] + text.rstrip("\n") + "\n" + ("\n" + rest if rest else "")
    RESULTS.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")
