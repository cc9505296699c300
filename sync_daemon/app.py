"""Composition root: builds clients and the state store from settings; nothing at import time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sync_daemon.connectors.cloudiq import CloudiqSource
from sync_daemon.connectors.http import RateLimiter
from sync_daemon.connectors.proofpoint import ProofpointSource
from sync_daemon.connectors.syncro import SyncroClient
from sync_daemon.errors import ConfigError
from sync_daemon.settings import Settings
from sync_daemon.state import StateStore
from sync_daemon.vendor import VendorSource


@dataclass
class App:
    """Everything a command needs, created lazily and closed together.

    `syncro_limiter` is shared by Apps whose passes run at the same time (the daemon's), so
    together they stay under `syncro.requests_per_minute`.
    """

    settings: Settings
    config_path: Path
    max_attempts: int = 6
    syncro_limiter: RateLimiter | None = None
    _store: StateStore | None = field(default=None, init=False)
    _syncro: SyncroClient | None = field(default=None, init=False)
    _sources: dict[str, VendorSource] = field(default_factory=dict, init=False)

    @property
    def syncro(self) -> SyncroClient:
        """The Syncro client, with the configured rate limit."""
        if self._syncro is None:
            cfg = self.settings.syncro
            self._syncro = SyncroClient.connect(
                cfg.base_url, cfg.api_token.get_secret_value(),
                requests_per_minute=cfg.requests_per_minute, timeout=cfg.timeout_s,
                max_attempts=self.max_attempts, limiter=self.syncro_limiter,
                concurrency=cfg.concurrency,
            )
        return self._syncro

    @property
    def store(self) -> StateStore:
        """The state database, migrated to the current schema on first use."""
        if self._store is None:
            self._store = StateStore.open(self.settings.state.url)
        return self._store

    def enabled_vendors(self) -> list[str]:
        """Vendors with a section in the config and `enabled = true`."""
        return [name for name, section in self.settings.vendors().items() if section.enabled]

    def source(self, vendor: str) -> VendorSource:
        """The vendor's source, built once; `ConfigError` when it is not configured."""
        if vendor not in self._sources:
            if vendor == "proofpoint" and self.settings.proofpoint is not None:
                self._sources[vendor] = ProofpointSource(self.settings.proofpoint,
                                                         max_attempts=self.max_attempts)
            elif vendor == "cloudiq" and self.settings.cloudiq is not None:
                self._sources[vendor] = CloudiqSource(
                    self.settings.cloudiq, is_applied=self._statement_applied,
                    max_attempts=self.max_attempts)
            else:
                raise ConfigError(f"{self.config_path}: vendor {vendor!r} is not configured "
                                  f"(no [{vendor}] section)")
        return self._sources[vendor]

    def _statement_applied(self, statement_id: str) -> bool:
        with self.store.transaction() as tx:
            return tx.is_statement_applied("cloudiq", statement_id)

    def close(self) -> None:
        """Release connections."""
        for source in self._sources.values():
            source.close()
        if self._syncro is not None:
            self._syncro.close()
        if self._store is not None:
            self._store.close()
