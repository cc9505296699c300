"""Sandbox Syncro: an in-memory Syncro account served over real HTTP under `/api/v1`.

Faithful to `reference/syncro-api.md` and `reference/assumed-shapes.md` §1, quirks included.
"""

from sync_daemon.sandbox.syncro.api import (
    ALL_PERMISSIONS,
    CUSTOMERS_CREATE,
    CUSTOMERS_EDIT,
    CUSTOMERS_LIST,
    CUSTOMERS_VIEW,
    DEFAULT_TOKEN,
    INVALID_TOKEN_MESSAGE,
    INVOICES_CREATE,
    INVOICES_EDIT,
    INVOICES_LIST,
    INVOICES_VIEW,
    NOT_AUTHORIZED_MESSAGE,
    PRODUCTS_CREATE,
    PRODUCTS_EDIT,
    PRODUCTS_LIST,
    SCHEDULES_DELETE,
    SCHEDULES_EDIT,
    SCHEDULES_LIST,
    SCHEDULES_NEW,
    Route,
    SyncroSandbox,
)
from sync_daemon.sandbox.syncro.customers import CustomerBook
from sync_daemon.sandbox.syncro.invoices import InvoiceBook
from sync_daemon.sandbox.syncro.products import ProductBook
from sync_daemon.sandbox.syncro.records import (
    Coercer,
    Record,
    RecordNotFoundError,
    SyncroValidationError,
    decimal_string,
)
from sync_daemon.sandbox.syncro.schedules import (
    FREQUENCIES,
    NEXT_RUN_FORMAT_ERROR,
    ScheduleBook,
    ScheduleLineBook,
)
from sync_daemon.sandbox.syncro.state import SyncroState

__all__ = [
    "ALL_PERMISSIONS",
    "CUSTOMERS_CREATE",
    "CUSTOMERS_EDIT",
    "CUSTOMERS_LIST",
    "CUSTOMERS_VIEW",
    "DEFAULT_TOKEN",
    "FREQUENCIES",
    "INVALID_TOKEN_MESSAGE",
    "INVOICES_CREATE",
    "INVOICES_EDIT",
    "INVOICES_LIST",
    "INVOICES_VIEW",
    "NEXT_RUN_FORMAT_ERROR",
    "NOT_AUTHORIZED_MESSAGE",
    "PRODUCTS_CREATE",
    "PRODUCTS_EDIT",
    "PRODUCTS_LIST",
    "SCHEDULES_DELETE",
    "SCHEDULES_EDIT",
    "SCHEDULES_LIST",
    "SCHEDULES_NEW",
    "Coercer",
    "CustomerBook",
    "InvoiceBook",
    "ProductBook",
    "Record",
    "RecordNotFoundError",
    "Route",
    "ScheduleBook",
    "ScheduleLineBook",
    "SyncroSandbox",
    "SyncroState",
    "SyncroValidationError",
    "decimal_string",
]
