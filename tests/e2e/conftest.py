"""End-to-end fixtures: sandbox servers on 127.0.0.1 and configs pointing the CLI at them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sync_daemon.sandbox import DEFAULT_TOKEN, SyncroSandbox, demo_syncro_state
from tests.support.cli import write_config

MakeConfig = Callable[..., Path]


@pytest.fixture
def syncro() -> Iterator[SyncroSandbox]:
    with SyncroSandbox(demo_syncro_state(), requests_per_minute=6000) as sandbox:
        yield sandbox


@pytest.fixture
def make_config(tmp_path: Path, syncro: SyncroSandbox) -> MakeConfig:
    """A config for the sandbox; keyword `section={...}` entries replace or add keys."""

    def make(**overrides: dict[str, Any]) -> Path:
        sections: dict[str, dict[str, Any]] = {
            "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "log": {"format": "json", "level": "info"},
            "syncro": {"base_url": syncro.api_url, "api_token": DEFAULT_TOKEN,
                       "requests_per_minute": 6000},
        }
        for section, values in overrides.items():
            sections.setdefault(section, {}).update(values)
        return write_config(tmp_path / "sync-daemon.toml", sections)

    return make
