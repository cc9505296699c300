"""The benchmark's own measuring tools, on tiny inputs (the benchmarks themselves run apart)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.planning import report, time_planning

ROOT = Path(__file__).resolve().parents[2]


def test_planning_is_timed_on_the_inputs_it_claims() -> None:
    result = time_planning(200, repeat=3)

    assert (result["customers"], result["lines"], result["repeat"]) == (200, 1_000, 3)
    assert result["changes"] > 0
    assert result["cpu_s_min"] <= result["cpu_s"] <= result["cpu_s_max"]
    assert result["reference_s"] > 0


def run_measured(tmp_path: Path, *command: str) -> tuple[int, dict[str, float]]:
    out = tmp_path / "rusage.json"
    done = subprocess.run([sys.executable, "-m", "bench.rusage", str(out), "--", *command],
                          cwd=ROOT, check=False)
    return done.returncode, json.loads(out.read_text(encoding="utf-8"))


def test_the_launcher_passes_the_exit_code_through(tmp_path: Path) -> None:
    code, measured = run_measured(tmp_path, sys.executable, "-c", "raise SystemExit(3)")

    assert code == 3
    assert measured["exit_code"] == 3
    assert measured["cpu_s"] >= 0


def test_the_peak_rss_is_the_childs_own_not_the_callers(tmp_path: Path) -> None:
    # Linux would charge a child forked straight from this process with this process's memory.
    ballast = bytearray(400 * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))

    code, measured = run_measured(tmp_path, sys.executable, "-c", "pass")

    assert code == 0
    assert 0 < measured["rss_mb"] < 200
    del ballast


def test_the_planning_section_says_whether_the_median_met_the_target() -> None:
    result = {"customers": 50_000, "lines": 250_000, "skus": 200, "changes": 9, "repeat": 5,
              "cpu_s": 1.9, "cpu_s_min": 1.5, "cpu_s_max": 2.3, "reference_s": 0.7}

    assert "under 2 s of CPU for 50,000 customers: met." in report(result, "cmd")
    assert "**missed**" in report({**result, "cpu_s": 2.0}, "cmd")
