"""Test-wide setup: JSON logs at debug level (pytest shows them for failing tests only), and
property tests that explore new examples on developers' machines but repeat the same ones in CI.
"""

from __future__ import annotations

import os

from hypothesis import settings

from sync_daemon import logs

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_configure() -> None:
    logs.configure(format="json", level="debug")
