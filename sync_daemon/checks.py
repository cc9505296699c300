"""`sync-daemon check`: one probe per enabled connection, each reported as connected or why not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sync_daemon.app import App
from sync_daemon.errors import ConfigError, SyncError


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """The outcome of one probe."""

    name: str
    connected: bool
    detail: str
    operator_must_act: bool = False


def check_connections(app: App) -> list[ConnectionStatus]:
    """Probe the state database and every enabled remote system."""
    probes = [
        _probe("state", lambda: _check_state(app)),
        _probe("syncro", lambda: _check_syncro(app)),
    ]
    probes += [_probe(vendor, partial(_check_vendor, app, vendor))
               for vendor in app.enabled_vendors()]
    return probes


def _probe(name: str, probe: Callable[[], str]) -> ConnectionStatus:
    try:
        detail = probe()
    except ConfigError as exc:
        return ConnectionStatus(name, connected=False, detail=str(exc), operator_must_act=True)
    except SyncError as exc:
        return ConnectionStatus(name, connected=False, detail=str(exc))
    return ConnectionStatus(name, connected=True, detail=detail)


def _check_state(app: App) -> str:
    return f"schema {app.store.schema_version()}"


def _check_syncro(app: App) -> str:
    user = app.syncro.me()
    app.syncro.check_permissions()
    return f"as {user.user_email or user.user_name} on {user.subdomain or app.syncro.api.base_url}"


def _check_vendor(app: App, vendor: str) -> str:
    return app.source(vendor).check()
