"""Property test: random arguments at the CLI end in one of the README's exit codes (0, 1, 2,
3) and a message, never an unhandled exception or a traceback.

The commands run in-process through click's test runner against three configs: none at the
path given, broken TOML, and a valid one (SQLite state in a temporary directory; Syncro and
Proofpoint on a closed local port, with retries made instant so remote trouble is quick).
`run` is left out with the valid config: it would serve until stopped.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_daemon import logs
from sync_daemon.cli import cli
from sync_daemon.connectors.http import HttpApi
from tests.support.cli import write_config

CLOSED = "http://127.0.0.1:9/api/v1"  # the discard port: nothing listens there
TOKEN = "T-cli-fuzz-token"
PASSWORD = "pp-cli-fuzz-password"
EXIT_CODES = {0, 1, 2, 3}

WORDS = ["check", "sync", "run", "status", "history", "mapping", "list", "map", "unmap",
         "refresh", "suggest", "export", "import", "--help", "-h", "--version", "--vendor",
         "proofpoint", "cloudiq", "nosuch", "--dry-run", "--force", "--wait", "--format", "json",
         "text", "table", "csv", "--limit", "0", "-1", "5", "99999999999999999999", "--status",
         "mapped", "not-mapped", "detached", "--search", "--sort", "status", "psa-customer",
         "--schedule", "--billing-motion", "--minimum", "--included", "--apply", "--config",
         "rows.csv", "", "--", "-", "--no-such-option", "Ærøskøbing 🦷", "1e3", "nan"]
# Free text never names a directory, so `mapping export` writes only into the temporary cwd.
junk = st.text(st.characters(blacklist_characters="/\\\x00", blacklist_categories=["Cs"]),
               max_size=12)
argvs = st.lists(st.sampled_from(WORDS) | junk, max_size=7)


@pytest.fixture(scope="module")
def configs() -> Iterator[dict[str, Path]]:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        broken = directory / "broken.toml"
        broken.write_text("[syncro\napi_token = 'x'", encoding="utf-8")
        valid = write_config(directory / "valid.toml", {
            "state": {"url": f"sqlite:///{directory / 'state.db'}"},
            "syncro": {"base_url": CLOSED, "api_token": TOKEN},
            "proofpoint": {"base_url": CLOSED, "username": "api@msp.example",
                           "password": PASSWORD, "partner_domain": "msp.example"},
        })
        # `mapping export` writes relative names here, not into the checkout.
        previous = Path.cwd()
        os.chdir(directory)
        try:
            yield {"missing": directory / "missing.toml", "broken": broken, "valid": valid}
        finally:
            os.chdir(previous)


@pytest.fixture(autouse=True)
def quiet_and_quick(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No `SYNC_DAEMON_*` from the developer's shell; retries without waiting; the test-wide
    log setup back afterwards (the commands configure logging for themselves)."""
    for key in list(os.environ):
        if key.startswith("SYNC_DAEMON_"):
            monkeypatch.delenv(key)
    monkeypatch.setattr(HttpApi, "_wait", lambda self, state: 0.0)
    yield
    logs.configure(format="json", level="debug")


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.sampled_from(["missing", "broken", "valid"]), argv=argvs)
def test_random_arguments_end_in_a_contract_exit_code(
        configs: dict[str, Path], which: str, argv: list[str]) -> None:
    if which == "valid" and "run" in argv:
        argv = [word for word in argv if word != "run"]
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(configs[which]), *argv], prog_name="sync-daemon")
    logs.configure(format="json", level="debug", stream=io.StringIO())
    shown = result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        argv, result.exc_info)
    assert result.exit_code in EXIT_CODES, (argv, result.exit_code, shown)
    assert "Traceback" not in shown
    assert TOKEN not in shown
    assert PASSWORD not in shown
    if which != "valid" and result.exit_code != 0:
        assert result.exit_code == 2, (argv, shown)
