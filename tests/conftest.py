"""Test-wide setup: JSON logs at debug level (pytest shows them for failing tests only)."""

from __future__ import annotations

from sync_daemon import logs


def pytest_configure() -> None:
    logs.configure(format="json", level="debug")
