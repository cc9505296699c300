"""Property tests: whatever TOML the loader is given, it answers with `Settings` or a
`ConfigError` naming the file, never another exception.

Documents are random text, and valid TOML built from the real section and key names with
values of every TOML type (huge and negative numbers, NaN and infinity, odd Unicode, dates,
nested tables), so the pydantic validators, the cron and time-zone checks and the error
formatter all see wrong types, unknown keys and absurd values.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_daemon.errors import ConfigError
from sync_daemon.settings import Settings, load_settings

SECTIONS: dict[str, tuple[str, ...]] = {
    "state": ("url",),
    "log": ("format", "level"),
    "syncro": ("base_url", "api_token", "requests_per_minute", "timeout_s"),
    "products": ("prefix", "new_products_taxable"),
    "safety": ("max_decrease_percent", "max_zeroed_customers"),
    "daemon": ("timezone", "catch_up", "shutdown_timeout_s"),
    "proofpoint": ("enabled", "base_url", "username", "password", "partner_domain", "count",
                   "bill_trials", "schedule", "requests_per_minute", "timeout_s", "packages"),
    "cloudiq": ("enabled", "base_url", "client_id", "client_secret", "username", "password",
                "organization_id", "billing_motions", "product_sync_mode", "sync_azure",
                "sync_annual", "new_products_taxable", "schedule"),
    "notify": ("email_to", "email_from", "smtp_host", "smtp_port", "smtp_user",
               "smtp_password", "starttls", "on"),
}
# Values the validators have special paths for: they make the random documents reach deep.
PLAUSIBLE = ["https://a.example/api/v1", "http://127.0.0.1:1/api/v1", "sqlite:///x.db",
             "json", "console", "debug", "0 6 * * *", "0 0 31 2 *", "* * * * 0-9", "61 * * * *",
             "Europe/Oslo", "UTC", "../../etc/passwd", "Etc/GMT+99", "", " ", "active_users",
             "in_use", "a@b.example", "error", "unmapped", "PC_", "1e999", "-0", "NaN"]

texts = st.text(max_size=30) | st.sampled_from(PLAUSIBLE)
scalars = (
    texts
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.sampled_from([0, -1, 1, 10**6, 10**18])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.dates()
    | st.datetimes(timezones=st.none() | st.just(dt.UTC))
    | st.times()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def sections(draw: st.DrawFn) -> dict[str, Any]:
    """A document of real sections with real (and some unknown) keys."""
    names = draw(st.lists(st.sampled_from([*SECTIONS, "sycnro"]), unique=True, max_size=5))
    document: dict[str, Any] = {}
    for name in names:
        keys = draw(st.lists(st.sampled_from([*SECTIONS.get(name, ()), "colour"]),
                             unique=True, max_size=6))
        document[name] = {key: draw(values) for key in keys}
    if draw(st.booleans()):  # usually valid Syncro basics, so the other sections are checked
        document.setdefault("syncro", {}).update(base_url="https://a.example/api/v1",
                                                 api_token="T-fuzz-token")
    return document


def toml_key(key: str) -> str:
    """A bare key when TOML allows one, else a basic string."""
    if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
        return key
    return json.dumps(key)


def toml_value(value: Any) -> str:
    """Any generated value as a TOML value (inline arrays and tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    # json.dumps escapes what TOML basic strings need, except its \uXXXX for surrogates.
    return json.dumps(value, ensure_ascii=True)


def toml_document(document: dict[str, Any]) -> str:
    lines = []
    for name, table in document.items():
        lines.append(f"[{toml_key(name)}]")
        lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SYNC_DAEMON_"):
            monkeypatch.delenv(key)


def load(path: Path, text: str | bytes) -> Settings | ConfigError:
    """The loader's answer to a file holding `text`: settings or the `ConfigError`."""
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return load_settings(path)
    except ConfigError as exc:
        return exc


FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(document=sections())
def test_valid_toml_with_any_keys_and_values_loads_or_names_the_problem(
        directory: Path, document: dict[str, Any]) -> None:
    path = directory / "sync-daemon.toml"
    answer = load(path, toml_document(document))
    if isinstance(answer, ConfigError):
        for line in str(answer).splitlines():
            assert line.startswith(f"{path}: "), line
            assert "T-fuzz-token" not in line
    else:
        assert isinstance(answer, Settings)


@FUZZ
@given(text=st.text(max_size=200) | st.binary(max_size=100))
def test_any_text_or_bytes_loads_or_is_a_config_error(directory: Path, text: str | bytes) -> None:
    answer = load(directory / "random.toml", text)
    assert isinstance(answer, Settings | ConfigError)
    if isinstance(answer, ConfigError):
        assert str(answer).startswith(str(directory / "random.toml"))
