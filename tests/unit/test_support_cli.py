"""The e2e harness's leak check finds every configured secret, wherever it is set."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import configured_secrets, write_config


def test_secrets_come_from_the_config_file_and_the_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", {
        "syncro": {"base_url": "https://a.example/api/v1", "api_token": "T-file-token"},
        "proofpoint": {"username": "admin@msp.example", "password": "pp-password"},
        "cloudiq": {"client_id": "client-one", "client_secret": "ciq-secret"},
    })
    env = {"SYNC_DAEMON_CLOUDIQ__PASSWORD": "env-password", "SYNC_DAEMON_LOG__LEVEL": "debug"}
    found = configured_secrets(["--config", str(config), "check"], env)
    assert found == {"T-file-token", "pp-password", "ciq-secret", "env-password"}


def test_no_config_option_means_only_the_environment(tmp_path: Path) -> None:
    assert configured_secrets(["--version"], {}) == set()
    assert configured_secrets(["--config", str(tmp_path / "absent.toml"), "check"], {}) == set()
