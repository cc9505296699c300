"""A manual sync draws a progress bar on a terminal, and none when its output is not one."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

from tests.e2e.conftest import World
from tests.support.cli import configured_secrets


def run_on_terminal(*args: str, timeout: float = 60) -> tuple[int, str]:
    """`sync-daemon ARGS...` with stderr on a pseudo-terminal; (exit code, what it showed)."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNC_DAEMON_")}
    process = subprocess.Popen([sys.executable, "-m", "sync_daemon", *args],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=follower, env={**env, "TERM": "xterm-256color"})
    os.close(follower)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
        if process.stdout is not None:
            process.stdout.close()
    return process.returncode, shown.decode("utf-8", errors="replace")


def seed(world: World) -> None:
    for name, users in (("Alder Dental", 25), ("Birch Law", 15), ("Cedar Clinic", 12)):
        world.map((world.org(name, users=users), world.customer(name)))


def test_a_sync_on_a_terminal_shows_a_progress_bar_of_the_changes(world: World) -> None:
    seed(world)
    config = str(world.config())
    code, shown = run_on_terminal("--config", config, "sync", "--vendor", "proofpoint")
    assert code == 0, shown
    assert "proofpoint: applying changes" in shown
    assert "4/4" in shown  # a product and three lines
    assert len(world.products("PC_PPE-BUSINESS")) == 1
    for secret in configured_secrets(("--config", config), {}):
        assert secret not in shown


def test_a_sync_whose_output_is_not_a_terminal_shows_no_bar(world: World) -> None:
    seed(world)
    result = world.cli("sync", "--vendor", "proofpoint")
    assert result.code == 0, result.stderr
    assert "applying changes" not in result.stderr + result.stdout
    events = result.log_events()  # every stderr line is a JSON log line
    assert sum(1 for e in events if e["event"] == "change.applied") == 4
