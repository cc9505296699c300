"""What the daemon remembers: managed products and lines, mappings, runs, audit, intents."""

from __future__ import annotations

from sync_daemon.state.locks import LockPolicy
from sync_daemon.state.records import (
    AuditEntry,
    IntentStatus,
    ManagedLine,
    ManagedProduct,
    Origin,
    PlannedChange,
    PlannedChangeStatus,
    PlanStatus,
    RunLock,
    RunStatus,
    RunTrigger,
    StoredPlan,
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
    "PlanStatus",
    "PlannedChange",
    "PlannedChangeStatus",
    "RunLock",
    "RunStatus",
    "RunTrigger",
    "StateStore",
    "StateTransaction",
    "StoredPlan",
    "SyncRun",
    "VendorCustomer",
    "VendorCustomerStatus",
    "WriteIntent",
    "utc_now",
]
