"""Config loading: file, environment overrides, and errors that name the file and the key."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from sync_daemon.errors import ConfigError
from sync_daemon.settings import (
    insecure_permissions_warning,
    load_settings,
    resolve_config_path,
)

VALID = """
[state]
url = "sqlite:///state.db"

[log]
format = "console"
level = "debug"

[syncro]
base_url = "https://acme.syncromsp.com/api/v1/"
api_token = "T-file-token"
requests_per_minute = 170
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SYNC_DAEMON_"):
            monkeypatch.delenv(key)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sync-daemon.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_file_loads_with_its_values(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, VALID))
    assert settings.state.url == "sqlite:///state.db"
    assert (settings.log.format, settings.log.level) == ("console", "debug")
    assert settings.syncro.base_url == "https://acme.syncromsp.com/api/v1"
    assert settings.syncro.api_token.get_secret_value() == "T-file-token"
    assert settings.syncro.requests_per_minute == 170


def test_defaults_fill_optional_sections(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, '[syncro]\nbase_url = "https://a.example/api/v1"\n'
                                              'api_token = "x"\n'))
    assert settings.state.url == "sqlite:///sync-daemon.db"
    assert settings.log.format == "json"
    assert settings.syncro.requests_per_minute == 180


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_DAEMON_SYNCRO__API_TOKEN", "T-env-token")
    monkeypatch.setenv("SYNC_DAEMON_SYNCRO__REQUESTS_PER_MINUTE", "60")
    monkeypatch.setenv("SYNC_DAEMON_STATE__URL", "postgresql://db/sync")
    settings = load_settings(config(tmp_path, VALID))
    assert settings.syncro.api_token.get_secret_value() == "T-env-token"
    assert settings.syncro.requests_per_minute == 60
    assert settings.state.url == "postgresql://db/sync"
    assert settings.syncro.base_url == "https://acme.syncromsp.com/api/v1"


def test_a_secret_can_live_only_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_DAEMON_SYNCRO__API_TOKEN", "T-env-only")
    settings = load_settings(config(tmp_path, '[syncro]\nbase_url = "https://a.example/api/v1"\n'))
    assert settings.syncro.api_token.get_secret_value() == "T-env-only"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID.replace("level = ", "colour = true\nlevel = "), "log.colour: unknown key"),
        (VALID.replace("170", '"fast"'), "syncro.requests_per_minute: Input should be a valid"),
        (VALID.replace("170", "0"), "syncro.requests_per_minute: Input should be greater than 0"),
        (VALID.replace('api_token = "T-file-token"\n', ""), "syncro.api_token: missing"),
        (VALID.replace("https://acme.syncromsp.com/api/v1/", "acme.syncromsp"),
         "syncro.base_url: "),
        (VALID.replace('"json"', '"xml"').replace('"console"', '"xml"'), "log.format: "),
        (VALID + "\n[sycnro]\n", "sycnro: unknown key"),
        ("[syncro\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_a_wrongly_typed_secret_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, VALID.replace('"T-file-token"', "12345678")))
    assert "syncro.api_token" in str(caught.value)
    assert "12345678" not in str(caught.value)


def test_missing_and_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(binary)


def test_config_path_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_config_path("given.toml") == Path("given.toml")
    monkeypatch.setenv("SYNC_DAEMON_CONFIG", "/etc/sync-daemon/sync-daemon.toml")
    assert resolve_config_path(None) == Path("/etc/sync-daemon/sync-daemon.toml")
    monkeypatch.delenv("SYNC_DAEMON_CONFIG")
    assert resolve_config_path(None) == Path("sync-daemon.toml")


def test_world_readable_config_is_warned_about(tmp_path: Path) -> None:
    path = config(tmp_path, VALID)
    path.chmod(0o644)
    warning = insecure_permissions_warning(path)
    assert warning is not None
    assert "chmod 600" in warning
    path.chmod(0o600)
    assert insecure_permissions_warning(path) is None


def test_the_example_config_is_valid_and_documents_every_key() -> None:
    example = Path(__file__).parents[2] / "config" / "sync-daemon.example.toml"
    settings = load_settings(example)
    assert settings.proofpoint is not None
    assert settings.cloudiq is not None
    lines = example.read_text(encoding="utf-8").splitlines()
    # (section, key) -> the line just above the key, or above the key's first [table].
    above: dict[tuple[str, str], str] = {}
    section = ""
    for previous, line in zip(["", *lines], lines, strict=False):
        if line.startswith("["):
            section = line.strip("[]")
            parent, _, rest = section.partition(".")
            if rest:  # [proofpoint.packages.business] documents proofpoint.packages
                above.setdefault((parent, rest.split(".")[0]), previous)
        elif " = " in line and not line.startswith("#"):
            above.setdefault((section, line.split(" = ")[0]), previous)
    for name, model in settings.model_dump().items():
        if isinstance(model, dict):
            for key in model:
                assert (name, key) in above, f"{name}.{key} is not set in [{name}]"
                assert above[name, key].startswith("#"), f"{name}.{key} has no comment above"


def test_proofpoint_needs_at_least_one_stack(tmp_path: Path) -> None:
    text = VALID + """
[proofpoint]
base_url = []
username = "a@b.example"
password = "p"
partner_domain = "b.example"
"""
    with pytest.raises(ConfigError, match=r"proofpoint\.base_url"):
        load_settings(config(tmp_path, text))


def test_money_written_as_a_toml_number_stays_exact(tmp_path: Path) -> None:
    text = VALID + """
[proofpoint]
base_url = "https://us1.proofpointessentials.com/api/v1"
username = "a@b.example"
password = "p"
partner_domain = "b.example"
[proofpoint.packages.business]
name = "Business"
cost = 1.1
retail = 2.2
"""
    settings = load_settings(config(tmp_path, text))
    assert settings.proofpoint is not None
    price = settings.proofpoint.packages["business"]
    assert (price.cost, price.retail) == (Decimal("1.1"), Decimal("2.2"))


def test_notify_is_optional_and_its_password_is_a_secret(tmp_path: Path) -> None:
    assert load_settings(config(tmp_path, VALID)).notify is None
    settings = load_settings(config(tmp_path, VALID + """
[notify]
email_to = ["ops@msp.example"]
smtp_host = "smtp.msp.example"
smtp_user = "sync"
smtp_password = "P-smtp"
"""))
    notify = settings.notify
    assert notify is not None
    assert (notify.email_from, notify.smtp_port, notify.starttls) == (
        "sync-daemon@localhost", 587, True)
    assert notify.on == ["error", "warning"]
    assert notify.enabled
    assert "P-smtp" in settings.secrets()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('email_to = ["not an address"]', "notify.email_to: "),
        ('on = ["errors"]', "notify.on.0: "),
        ("smtp_port = 0", "notify.smtp_port: "),
    ],
)
def test_bad_notify_keys_are_named(tmp_path: Path, extra: str, expected: str) -> None:
    text = VALID + f'\n[notify]\nsmtp_host = "smtp.msp.example"\n{extra}\n'
    with pytest.raises(ConfigError, match=expected):
        load_settings(config(tmp_path, text))
