"""Run the real `sync-daemon` command as a subprocess and write configs for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
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


SECRET_WORDS = ("token", "password", "secret")


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
    """`sync-daemon ARGS...` in a fresh interpreter, with `SYNC_DAEMON_*` cleared unless given.

    Every call also checks that no configured secret (from the `--config` file or the
    environment) appears in what the command printed or logged, so every end-to-end test
    guards against leaks.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYNC_DAEMON_")}
    completed = subprocess.run(
        [sys.executable, "-m", "sync_daemon", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**base, **(env or {})},
    )
    result = Result(completed.returncode, completed.stdout, completed.stderr)
    for secret in configured_secrets(args, env or {}):
        assert secret not in result.stdout + result.stderr, "a configured secret was printed"
    return result


def configured_secrets(args: Sequence[str], env: Mapping[str, str]) -> set[str]:
    """Values of token/password/secret keys in the `--config` file and `SYNC_DAEMON_*` vars."""
    found = {v for k, v in env.items()
             if k.startswith("SYNC_DAEMON_") and any(w in k.lower() for w in SECRET_WORDS)}
    if "--config" in args[:-1]:
        path = Path(args[list(args).index("--config") + 1])
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return found
        found |= set(_secret_values(data))
    # Values this short would match by accident (and are not realistic secrets).
    return {s for s in found if isinstance(s, str) and len(s) >= 6}


def _secret_values(data: Any, key: str = "") -> Iterator[str]:
    if isinstance(data, Mapping):
        for k, v in data.items():
            yield from _secret_values(v, str(k))
    elif isinstance(data, str) and any(w in key.lower() for w in SECRET_WORDS):
        yield data


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
