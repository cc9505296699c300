"""The deployment files, checked by reading them (no Docker engine or systemd runs here)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

ROOT = Path(__file__).parents[2]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = path.read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            word, _, rest = text.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_the_image_runs_the_service_as_a_non_root_user() -> None:
    steps = instructions(ROOT / "Dockerfile")
    keys = [word for word, _ in steps]
    assert steps[0][0] == "FROM"
    assert steps[0][1].startswith("python:3.11-slim")
    users = [rest for word, rest in steps if word == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    assert keys.index("USER") > keys.index("RUN")  # installs as root, then drops privileges
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["sync-daemon"]
    assert json.loads(dict(steps)["CMD"]) == ["run"]
    env = dict(steps)["ENV"]
    assert "SYNC_DAEMON_CONFIG=/etc/sync-daemon/sync-daemon.toml" in shlex.split(env)


def test_the_health_check_reads_only_the_state_database() -> None:
    steps = dict(instructions(ROOT / "Dockerfile"))
    check = steps["HEALTHCHECK"]
    command = check[check.index("CMD") + len("CMD"):].strip()
    assert json.loads(command) == ["sync-daemon", "status"]
    assert "VOLUME" in steps


def test_the_systemd_unit_runs_the_service_and_does_not_restart_on_config_errors() -> None:
    unit = (ROOT / "config" / "sync-daemon.service").read_text(encoding="utf-8")
    service = {k.strip(): v.strip() for k, _, v in
               (line.partition("=") for line in unit.splitlines() if "=" in line)}
    assert service["ExecStart"].split()[-1] == "run"
    assert "2" in service["RestartPreventExitStatus"].split()
    assert service["User"] == "sync-daemon"
