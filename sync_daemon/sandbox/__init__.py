"""Faithful local emulations of the vendor APIs, served over real HTTP for the demo and tests."""

from sync_daemon.sandbox.demo_data import (
    DEMO_PARTNER_DOMAIN,
    DEMO_PROOFPOINT_ORG_ADMIN,
    DEMO_PROOFPOINT_PASSWORD,
    DEMO_PROOFPOINT_READ_ONLY_USER,
    DEMO_PROOFPOINT_USER,
    demo_proofpoint_state,
    demo_syncro_state,
)
from sync_daemon.sandbox.http import (
    Fault,
    Faults,
    LoggedRequest,
    Request,
    RequestLog,
    Response,
    Router,
    SandboxServer,
    SlidingWindowLimiter,
)
from sync_daemon.sandbox.proofpoint import (
    ProofpointSandbox,
    ProofpointStackServer,
    ProofpointState,
)
from sync_daemon.sandbox.syncro import (
    ALL_PERMISSIONS,
    DEFAULT_TOKEN,
    SyncroSandbox,
    SyncroState,
    SyncroValidationError,
)

__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_TOKEN",
    "DEMO_PARTNER_DOMAIN",
    "DEMO_PROOFPOINT_ORG_ADMIN",
    "DEMO_PROOFPOINT_PASSWORD",
    "DEMO_PROOFPOINT_READ_ONLY_USER",
    "DEMO_PROOFPOINT_USER",
    "Fault",
    "Faults",
    "LoggedRequest",
    "ProofpointSandbox",
    "ProofpointStackServer",
    "ProofpointState",
    "Request",
    "RequestLog",
    "Response",
    "Router",
    "SandboxServer",
    "SlidingWindowLimiter",
    "SyncroSandbox",
    "SyncroState",
    "SyncroValidationError",
    "demo_proofpoint_state",
    "demo_syncro_state",
]
