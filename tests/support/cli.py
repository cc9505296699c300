"""Run the real `sync-daemon` command as a subprocess and write configs for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Result:
    """What one CLI invocation produced."""

    code: int
    stdout: str
    stderr: str

    def log_events(self) -> list[dict[str, Any]]:
        """stderr parsed as JSON lines; fails the test if any line is not JSON."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.strip()]


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
    """`sync-daemon ARGS...` in a fresh interpreter, with `SYNC_DAEMON_*` cleared unless given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYNC_DAEMON_")}
    completed = subprocess.run(
        [sys.executable, "-m", "sync_daemon", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**base, **(env or {})},
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def toml_value(value: Any) -> str:
    """A Python value as TOML (the few types configs use)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write `{section: {key: value}}` as TOML with owner-only permissions."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    path.chmod(0o600)
    return path
