"""Records the state store reads and writes: frozen dataclasses, Decimal money, UTC timestamps."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

VendorCustomerStatus = Literal["mapped", "not_mapped", "detached"]
Origin = Literal["created", "adopted"]
RunTrigger = Literal["manual", "schedule", "approval"]
# `pending`: the pass stored its plan for approval instead of applying it.
RunStatus = Literal["running", "succeeded", "partial", "failed", "stopped", "interrupted",
                    "pending"]
IntentStatus = Literal["pending", "settled", "abandoned"]
PlanStatus = Literal["pending", "approved", "rejected", "superseded"]
PlannedChangeStatus = Literal["pending", "applied", "failed", "refused", "rejected",
                              "superseded"]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class VendorCustomer:
    """A customer as a vendor reports it, and the PSA customer it maps to.

    `first_seen_at` is kept from the first write and `updated_at` is stamped by the store.
    """

    vendor: str
    vendor_customer_id: str
    billing_motion: str = ""
    name: str
    status: VendorCustomerStatus
    psa_customer_id: int | None = None
    psa_customer_name: str | None = None
    schedule_id: int | None = None
    minimum: int | None = None
    included: int | None = None
    first_seen_at: datetime = dataclasses.field(default_factory=utc_now)
    last_seen_at: datetime = dataclasses.field(default_factory=utc_now)
    updated_at: datetime = dataclasses.field(default_factory=utc_now)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagedProduct:
    """A Syncro product (`PC_<SKU>`) the daemon created or adopted for a vendor SKU."""

    vendor: str
    sku: str
    syncro_product_id: int
    origin: Origin
    name: str
    description: str | None = None
    last_price_cost: Decimal | None = None
    last_price_retail: Decimal | None = None
    created_at: datetime = dataclasses.field(default_factory=utc_now)
    updated_at: datetime = dataclasses.field(default_factory=utc_now)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagedLine:
    """A Syncro schedule line the daemon owns, with the values it last wrote there."""

    syncro_line_id: int
    schedule_id: int
    vendor: str
    vendor_customer_id: str
    billing_motion: str = ""
    sku: str
    syncro_product_id: int
    last_retail: Decimal
    last_cost: Decimal
    last_quantity: Decimal
    origin: Origin
    created_at: datetime = dataclasses.field(default_factory=utc_now)
    updated_at: datetime = dataclasses.field(default_factory=utc_now)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncRun:
    """One sync pass for one vendor; `counts` maps a counter name to its value."""

    run_id: str
    vendor: str
    trigger: RunTrigger
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunLock:
    """Who holds a vendor's run lock: the pass `run_id` in process `holder` (`hostname:pid`).

    `heartbeat_at` is refreshed while the pass runs; a lock whose heartbeat is too old, or
    whose holder process is gone from this host, may be taken over (SQLite; PostgreSQL
    releases a dead holder's advisory lock by itself).
    """

    vendor: str
    run_id: str
    holder: str
    acquired_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One change applied to Syncro; values are rendered as text (Decimal via `str`).

    `id` is None until the store has appended the entry.
    """

    run_id: str
    vendor: str
    action: str
    target: str
    reason: str
    customer: str | None = None
    field: str | None = None
    before: str | None = None
    after: str | None = None
    at: datetime = dataclasses.field(default_factory=utc_now)
    id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteIntent:
    """A write-ahead record for a write that must land exactly once.

    `settled_at` is when the intent left `pending`, whether settled or abandoned.
    """

    key: str
    run_id: str
    kind: str
    payload: Mapping[str, Any]
    status: IntentStatus
    result_id: int | None = None
    created_at: datetime
    settled_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredPlan:
    """A pass's plan kept for approval (`approval = "required"`); its changes are rows apart.

    `notices` and `seats` are what the pass reported, as JSON-ready data, for `plan show`.
    """

    run_id: str
    vendor: str
    status: PlanStatus
    created_at: datetime
    decided_at: datetime | None = None
    notices: Sequence[Mapping[str, Any]] = ()
    seats: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedChange:
    """One change of a stored plan, with the fingerprint of the Syncro state it was planned on.

    `change` is the encoded change (`sync_daemon.approval.encode_change`); `customer` is the
    vendor customer id it belongs to (None for product changes); `applied_run_id` is the
    approval run that decided it.
    """

    run_id: str
    seq: int
    kind: str
    customer: str | None
    change: Mapping[str, Any]
    fingerprint: str
    status: PlannedChangeStatus = "pending"
    applied_run_id: str | None = None
    message: str | None = None
