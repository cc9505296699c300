"""A config file holding secrets must be the owner's alone: the loader warns otherwise, and the
CLI says so in its log (never echoing the secret)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sync_daemon import logs
from sync_daemon.cli import cli
from sync_daemon.settings import insecure_permissions_warning

TOKEN = "T-perm-test-token"


def write(tmp_path: Path, *, token: bool = True, notify_password: bool = False) -> Path:
    path = tmp_path / "sync-daemon.toml"
    text = (f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
            '[syncro]\nbase_url = "https://acme.syncromsp.com/api/v1"\n')
    if token:
        text += f'api_token = "{TOKEN}"\n'
    if notify_password:
        text += '[notify]\nsmtp_host = "mail.example"\nsmtp_password = "smtp-secret"\n'
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("SYNC_DAEMON_"):
            monkeypatch.delenv(key)
    yield
    logs.configure(format="json", level="debug")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o610, 0o700 | 0o004])
def test_a_secret_file_open_to_group_or_others_is_warned_about(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path)
    path.chmod(mode)
    warning = insecure_permissions_warning(path)
    assert warning is not None
    assert f"chmod 600 {path}" in warning
    assert TOKEN not in warning


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_an_owner_only_file_is_not_warned_about(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path)
    path.chmod(mode)
    assert insecure_permissions_warning(path) is None


def test_a_file_without_secrets_may_be_readable(tmp_path: Path) -> None:
    path = write(tmp_path, token=False)  # the token comes from the environment
    path.chmod(0o644)
    assert insecure_permissions_warning(path) is None
    secret_elsewhere = write(tmp_path, token=False, notify_password=True)
    secret_elsewhere.chmod(0o644)
    assert insecure_permissions_warning(secret_elsewhere) is not None


def test_the_cli_logs_the_warning_without_the_secret(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.chmod(0o644)
    result = CliRunner().invoke(cli, ["--config", str(path), "status", "--format", "json"])
    assert result.exit_code == 0, result.output + result.stderr
    [event] = [json.loads(line) for line in result.stderr.splitlines()
               if "config.insecure_permissions" in line]
    assert event["level"] == "warning"
    assert "chmod 600" in event["detail"]
    assert TOKEN not in result.stdout + result.stderr
