"""What the daemon remembers: managed products and lines, mappings, runs, audit, intents."""

from __future__ import annotations

from sync_daemon.state.records import (
    AuditEntry,
    IntentStatus,
    ManagedLine,
    ManagedProduct,
    Origin,
    RunStatus,
    RunTrigger,
    SyncRun,
    VendorCustomer,
    VendorCustomerStatus,
    WriteIntent,
    utc_now,
)
from sync_daemon.state.store import StateStore, StateTransaction

__all__ = [
    "AuditEntry",
    "IntentStatus",
    "ManagedLine",
    "ManagedProduct",
    "Origin",
    "RunStatus",
    "RunTrigger",
    "StateStore",
    "StateTransaction",
    "SyncRun",
    "VendorCustomer",
    "VendorCustomerStatus",
    "WriteIntent",
    "utc_now",
]
