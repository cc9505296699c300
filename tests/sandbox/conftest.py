"""Fixtures for the sandbox tests: a fresh Syncro account on a free port, plain httpx clients."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import httpx
import pytest

from sync_daemon.sandbox import SyncroSandbox, SyncroState

TOKEN = "test-token-full"
READ_ONLY_TOKEN = "test-token-read-only"
READ_ONLY = frozenset(
    {"Customers - List/Search", "Products - List/Search", "Recurring Invoices - List"}
)

MakeSandbox = Callable[..., SyncroSandbox]


@cache
def _tls_context() -> ssl.SSLContext:
    # Loading CA certificates is most of the cost of httpx.Client(); the sandbox is plain HTTP.
    return ssl.create_default_context()


def http_client(sandbox: SyncroSandbox, token: str | None = None, **kwargs: Any) -> httpx.Client:
    """A plain httpx client for `sandbox.api_url`, sending `token` as a Bearer header if given."""
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    kwargs.setdefault("timeout", 5.0)
    return httpx.Client(base_url=sandbox.api_url, headers=headers, verify=_tls_context(), **kwargs)


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def state() -> SyncroState:
    return SyncroState()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_sandbox(state: SyncroState, clock: FakeClock) -> Iterator[MakeSandbox]:
    """Start sandboxes over the shared `state` and fake `clock`; all stopped at teardown."""
    started: list[SyncroSandbox] = []

    def make(**kwargs: Any) -> SyncroSandbox:
        kwargs.setdefault("tokens", {TOKEN: None, READ_ONLY_TOKEN: READ_ONLY})
        sandbox = SyncroSandbox(state, clock=clock, **kwargs).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox: MakeSandbox) -> SyncroSandbox:
    return make_sandbox()


@pytest.fixture
def client(sandbox: SyncroSandbox) -> Iterator[httpx.Client]:
    """An authenticated client with the full-permission token."""
    with http_client(sandbox, TOKEN) as http:
        yield http


@pytest.fixture
def anonymous(sandbox: SyncroSandbox) -> Iterator[httpx.Client]:
    """A client that sends no token."""
    with http_client(sandbox) as http:
        yield http
