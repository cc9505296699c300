"""The Syncro account in memory: its settings, clock and lock, and one book per resource."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from sync_daemon.sandbox.syncro.customers import CustomerBook
from sync_daemon.sandbox.syncro.invoices import InvoiceBook
from sync_daemon.sandbox.syncro.products import ProductBook
from sync_daemon.sandbox.syncro.schedules import ScheduleBook, ScheduleLineBook


class SyncroState:
    """One Syncro account in memory: customers, products, schedules and lines, invoices.

    Every book (`customers`, `products`, `schedules`, `lines`, `invoices`) seeds with `add(...)`
    (same defaults and validation as the API; raises `SyncroValidationError`) and is inspected
    with `get(id)` / `all()`, which return exactly what the API would show (JSON numbers as
    `Decimal`). Hold `lock` while reading several books for a consistent snapshot.
    """

    def __init__(
        self,
        *,
        subdomain: str = "acme",
        utc_offset: timedelta = timedelta(hours=-5),
        account_id: int = 51001,
        user_id: int = 3001,
        user_email: str = "billing-bot@acme-msp.example",
        user_name: str = "Billing Bot",
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.subdomain = subdomain
        self.tz = timezone(utc_offset)
        self.account_id = account_id
        self.user_id = user_id
        self.user_email = user_email
        self.user_name = user_name
        self._now = now or (lambda: datetime.now(UTC))
        self.vendors: dict[int, str] = {}
        self.categories: dict[int, str] = {}
        self._next_ids = {"vendor": 410001, "category": 52001}
        self.customers = CustomerBook(self)
        self.products = ProductBook(self)
        self.schedules = ScheduleBook(self)
        self.lines = ScheduleLineBook(self)
        self.invoices = InvoiceBook(self)

    def now(self) -> datetime:
        """The current time in the account's time zone."""
        return self._now().astimezone(self.tz)

    def add_vendor(self, name: str) -> int:
        """Create a product vendor (needed for SKUs); returns its id."""
        with self.lock:
            vendor_id = self._take_id("vendor")
            self.vendors[vendor_id] = name
            return vendor_id

    def add_category(self, name: str) -> int:
        """Create a product category; returns its id."""
        with self.lock:
            category_id = self._take_id("category")
            self.categories[category_id] = name
            return category_id

    def _take_id(self, kind: str) -> int:
        self._next_ids[kind] += 1
        return self._next_ids[kind] - 1
