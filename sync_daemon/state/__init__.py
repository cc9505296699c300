"""What the daemon remembers: managed products and lines, mappings, runs, audit, intents."""

from __future__ import annotations

from sync_daemon.state.locks import LockPolicy
from sync_daemon.state.records import (
    AuditEntry,
    IntentStatus,
    ManagedLine,
    ManagedProduct,
    Origin,
    RunLock,
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
    "LockPolicy",
    "ManagedLine",
    "ManagedProduct",
    "Origin",
    "RunLock",
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
