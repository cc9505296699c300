"""`sync-daemon check` and the CLI contract, over real HTTP against the Syncro sandbox."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from sync_daemon.sandbox import ALL_PERMISSIONS, DEFAULT_TOKEN, SyncroSandbox, demo_syncro_state
from sync_daemon.state.store import alembic_config
from tests.e2e.conftest import MakeConfig
from tests.support.cli import run_cli, write_config

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_check_reports_every_connection_connected(make_config: MakeConfig) -> None:
    result = run_cli("--config", str(make_config()), "check")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("state")
    assert f"connected: schema {HEAD}" in lines[0]
    assert lines[1].startswith("syncro")
    assert "connected: as billing-bot@" in lines[1]


def test_a_bad_token_is_a_config_error_and_never_printed(make_config: MakeConfig) -> None:
    config = make_config(syncro={"api_token": "T-wrong-9d1c"})
    result = run_cli("--config", str(config), "check")
    assert result.code == 2
    assert "syncro  not connected" in result.stdout
    assert "bad API token" in result.stdout
    assert "T-wrong-9d1c" not in result.stdout + result.stderr


def test_a_missing_permission_is_named(tmp_path: Path) -> None:
    limited = ALL_PERMISSIONS - {"Recurring Invoices - List"}
    with SyncroSandbox(demo_syncro_state(), tokens={"T-limited": limited}) as sandbox:
        config = write_config(tmp_path / "c.toml", {
            "state": {"url": f"sqlite:///{tmp_path / 's.db'}"},
            "syncro": {"base_url": sandbox.api_url, "api_token": "T-limited"},
        })
        result = run_cli("--config", str(config), "check")
    assert result.code == 2
    assert "lacks the permission 'Recurring Invoices - List'" in result.stdout


def test_an_unreachable_host_is_reported_not_raised(make_config: MakeConfig) -> None:
    config = make_config(syncro={"base_url": f"http://127.0.0.1:{free_port()}/api/v1"})
    result = run_cli("--config", str(config), "check")
    assert result.code == 1
    assert "syncro  not connected" in result.stdout
    assert "cannot connect" in result.stdout
    assert "Traceback" not in result.stderr


def test_the_token_can_come_from_the_environment(tmp_path: Path, syncro: SyncroSandbox) -> None:
    config = write_config(tmp_path / "c.toml", {
        "state": {"url": f"sqlite:///{tmp_path / 's.db'}"},
        "syncro": {"base_url": syncro.api_url},
    })
    result = run_cli("--config", str(config), "check",
                     env={"SYNC_DAEMON_SYNCRO__API_TOKEN": DEFAULT_TOKEN})
    assert result.code == 0, result.stdout + result.stderr


def test_config_path_falls_back_to_the_environment_variable(make_config: MakeConfig) -> None:
    result = run_cli("check", env={"SYNC_DAEMON_CONFIG": str(make_config())})
    assert result.code == 0, result.stderr


def test_logs_are_json_lines_on_stderr_without_secrets(make_config: MakeConfig) -> None:
    result = run_cli("--config", str(make_config(log={"level": "debug"})), "check")
    assert result.code == 0
    events = result.log_events()
    requests = [e for e in events if e["event"] == "http.request"]
    assert [e["path"] for e in requests] == [
        "/api/v1/me", "/api/v1/customers", "/api/v1/products", "/api/v1/schedules"]
    assert all({"timestamp", "level", "event"} <= e.keys() for e in events)
    assert DEFAULT_TOKEN not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[syncro]\nbase_url = 'https://a.example/api/v1'\napi_token = 'x'\ncolour = 1\n",
         "syncro.colour: unknown key"),
        ("[syncro]\nbase_url = 'https://a.example/api/v1'\n", "syncro.api_token: missing"),
        ("[syncro]\nbase_url = 'nope'\napi_token = 'x'\n", "syncro.base_url"),
        ("[syncro]\nbase_url = 'https://a.example'\napi_token = 'x'\nrequests_per_minute = 'a'\n",
         "syncro.requests_per_minute"),
        ("[syncro\n", "not valid TOML"),
    ],
)
def test_bad_config_exits_2_naming_file_and_key(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    result = run_cli("--config", str(path), "check")
    assert result.code == 2
    assert str(path) in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path / "absent.toml"), "check")
    assert result.code == 2
    assert "config file not found" in result.stderr


def test_an_unreachable_state_database_exits_2(make_config: MakeConfig) -> None:
    config = make_config(state={"url": "postgresql://sync:s3cret-pw@127.0.0.1:1/none"})
    result = run_cli("--config", str(config), "check")
    assert result.code == 2
    assert "state   not connected" in result.stdout
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_usage_errors_exit_2() -> None:
    assert run_cli("no-such-command").code == 2
    assert run_cli("check", "--no-such-option").code == 2


def test_version_and_help() -> None:
    assert "sync-daemon, version" in run_cli("--version").stdout
    assert "check" in run_cli("--help").stdout
