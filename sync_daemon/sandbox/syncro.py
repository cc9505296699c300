"""Sandbox Syncro: an in-memory Syncro account served over real HTTP under `/api/v1`.

Faithful to `reference/syncro-api.md` and `reference/assumed-shapes.md` §1, quirks included.
"""

from __future__ import annotations

import copy
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, TypeVar

from sync_daemon.sandbox.http import (
    Clock,
    Handler,
    Request,
    Response,
    SandboxServer,
    SlidingWindowLimiter,
    empty_response,
    json_response,
    text_response,
)

Record = dict[str, Any]
Coercer = Callable[[Any], Any]
T = TypeVar("T")

DEFAULT_TOKEN = "sandbox-syncro-token"  # noqa: S105  a fake token for a local fake server
INVALID_TOKEN_MESSAGE = "Invalid or missing API token."  # noqa: S105  an error message
NOT_AUTHORIZED_MESSAGE = (
    "Not authorized. Please ask account admin to update your group permissions."
)

# Permission strings exactly as the token UI names them (syncro-api.md §1.4).
CUSTOMERS_LIST = "Customers - List/Search"
CUSTOMERS_VIEW = "Customers - View Detail"
CUSTOMERS_CREATE = "Customers - Create"
CUSTOMERS_EDIT = "Customers - Edit"
PRODUCTS_LIST = "Products - List/Search"
PRODUCTS_CREATE = "Products - Create"
PRODUCTS_EDIT = "Products - Edit"
SCHEDULES_LIST = "Recurring Invoices - List"
SCHEDULES_NEW = "Recurring Invoices - New"
SCHEDULES_EDIT = "Recurring Invoices - Edit"
SCHEDULES_DELETE = "Recurring Invoices - Delete"
INVOICES_LIST = "Invoices - List/Search"
INVOICES_VIEW = "Invoices - View Details"
INVOICES_CREATE = "Invoices - Create"
INVOICES_EDIT = "Invoices - Edit"
ALL_PERMISSIONS: frozenset[str] = frozenset(
    {
        CUSTOMERS_LIST, CUSTOMERS_VIEW, CUSTOMERS_CREATE, CUSTOMERS_EDIT, "Customers - Delete",
        PRODUCTS_LIST, PRODUCTS_CREATE, PRODUCTS_EDIT, "Products - Edit Quantities",
        SCHEDULES_LIST, SCHEDULES_NEW, SCHEDULES_EDIT, SCHEDULES_DELETE,
        INVOICES_LIST, INVOICES_VIEW, INVOICES_CREATE, INVOICES_EDIT, "Invoices - Delete",
    }
)  # fmt: skip

FREQUENCIES = (
    "Daily", "Monthly", "Weekly", "Biweekly", "Quarterly",
    "Semi-Annually", "Annually", "Biennially", "Triennially",
)  # fmt: skip
NEXT_RUN_FORMAT_ERROR = "Sorry, unable to read the date, use this format: Y-m-d"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RAILS_FALSE = {"", "0", "f", "false", "off"}


class SyncroValidationError(Exception):
    """A record failed validation; `messages` is a list, or one string for the short-circuits."""

    def __init__(self, messages: list[str] | str) -> None:
        super().__init__(messages)
        self.messages = messages


class RecordNotFoundError(LookupError):
    """An id in the path or body names nothing; the API answers an empty 404."""


# -- value casting (Rails-like: form values arrive as strings) -----------------------------


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return value is not None and str(value).strip().lower() not in _RAILS_FALSE


def _to_decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    number = _to_decimal(value)
    return int(number) if number is not None else None


def _to_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _to_int_list(value: Any) -> list[int]:
    items = value if isinstance(value, list) else [value]
    return [n for n in (_to_int(v) for v in items) if n is not None]


def _to_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _money(value: Any) -> Decimal:
    """Currency units kept to the cent (Syncro stores cents); unreadable values count as 0."""
    number = _to_decimal(value) or Decimal(0)
    return number.quantize(Decimal("0.01"), ROUND_HALF_UP)


def _cents(units: Decimal) -> int:
    return int((units * 100).quantize(Decimal(1), ROUND_HALF_UP))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _empty(keys: Iterable[str]) -> Record:
    """A record with every key of a resource set to null."""
    return dict.fromkeys(keys)


def _coerce(params: Mapping[str, Any], fields: Mapping[str, Coercer]) -> Record:
    """Cast the known keys of a request body; unknown keys are ignored."""
    return {key: fields[key](value) for key, value in params.items() if key in fields}


# -- rendering -------------------------------------------------------------------------------


def decimal_string(number: Decimal) -> str:
    """Render like Ruby's BigDecimal: `5` → "5.0", `2.50` → "2.5"."""
    if number == number.to_integral_value():
        return f"{int(number)}.0"
    return format(number.normalize(), "f")


def _number(number: Decimal) -> float:
    # The only float in the sandbox: the JSON boundary of fields the reference shows as numbers.
    return float(number)


def _render(value: Any, tz: timezone) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [_render(item, tz) for item in value]
    if isinstance(value, dict):
        return {key: _render(item, tz) for key, item in value.items()}
    return value


def _view(record: Record, keys: Iterable[str], tz: timezone) -> Record:
    return {key: _render(record.get(key), tz) for key in keys}


# -- the account ------------------------------------------------------------------------------


class SyncroState:
    """One Syncro account in memory: customers, products, schedules and lines, invoices.

    Every book (`customers`, `products`, `schedules`, `lines`, `invoices`) seeds with `add(...)`
    (same defaults and validation as the API; raises `SyncroValidationError`) and is inspected
    with `get(id)` / `all()`, which return exactly what the API would show. Hold `lock` while
    reading several books for a consistent snapshot.
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


class _Book:
    """Records of one resource keyed by id, with ids from a realistic range."""

    def __init__(self, state: SyncroState, first_id: int) -> None:
        self.state = state
        self.records: dict[int, Record] = {}
        self._next_id = first_id

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def record(self, record_id: int | None) -> Record:
        """The stored record, or `RecordNotFoundError`."""
        if record_id is None or record_id not in self.records:
            raise RecordNotFoundError(record_id)
        return self.records[record_id]

    def ids(self) -> list[int]:
        """Every id, ascending."""
        with self.state.lock:
            return sorted(self.records)

    def _stamp(self, record: Record, *, created: bool = False) -> None:
        now = self.state.now()
        record["updated_at"] = now
        if created:
            record["created_at"] = now


# -- customers (syncro-api.md §4.1, assumed-shapes §1.4) --------------------------------------

_CUSTOMER_FIELDS: dict[str, Coercer] = {
    **dict.fromkeys(
        ("business_name", "firstname", "lastname", "email", "phone", "mobile", "address",
         "address_2", "city", "state", "zip", "notes", "referred_by", "notification_email",
         "invoice_cc_emails"),
        _to_str,
    ),
    **dict.fromkeys(("get_sms", "opt_out", "no_email"), _to_bool),
    **dict.fromkeys(("ref_customer_id", "tax_rate_id", "invoice_term_id"), _to_int),
    "properties": _to_dict,
}  # fmt: skip
_CUSTOMER_KEYS = (
    "id", "firstname", "lastname", "fullname", "business_name", "email", "phone", "mobile",
    "created_at", "updated_at", "pdf_url", "address", "address_2", "city", "state", "zip",
    "latitude", "longitude", "notes", "get_sms", "opt_out", "disabled", "no_email",
    "location_name", "location_id", "properties", "online_profile_url", "tax_rate_id",
    "notification_email", "invoice_cc_emails", "invoice_term_id", "referred_by",
    "ref_customer_id", "business_and_full_name", "business_then_name", "contacts",
)  # fmt: skip
_CUSTOMER_DEFAULTS: Record = {
    "get_sms": False, "opt_out": False, "disabled": False, "no_email": False,
    "properties": {}, "contacts": [],
}  # fmt: skip


class CustomerBook(_Book):
    """Customers; detail views add `phones`, `contracts` and `addresses`."""

    def __init__(self, state: SyncroState) -> None:
        super().__init__(state, 1500001)
        self._phone_ids = 2600001

    def add(self, *, disabled: bool = False, **fields: Any) -> Record:
        """Seed a customer (`disabled` cannot be set through the API); returns the detail view."""
        with self.state.lock:
            record = self.create(fields)
            record["disabled"] = disabled
            return self.render(record, detail=True)

    def get(self, customer_id: int) -> Record | None:
        """Detail view, or None."""
        with self.state.lock:
            record = self.records.get(customer_id)
            return self.render(record, detail=True) if record else None

    def all(self) -> list[Record]:
        """List views of every customer, disabled ones included."""
        with self.state.lock:
            return [self.render(self.records[i]) for i in sorted(self.records)]

    def create(self, params: Mapping[str, Any]) -> Record:
        record = _empty(_CUSTOMER_KEYS) | copy.deepcopy(_CUSTOMER_DEFAULTS)
        record |= _coerce(params, _CUSTOMER_FIELDS)
        self._validate(record)
        record["id"] = self.new_id()
        record["online_profile_url"] = (
            f"https://{self.state.subdomain}.syncromsp.com/my_profile/v2/customer/{record['id']}"
        )
        # Phone and mobile also become phone sub-records, digits only (syncro-api.md §4.1).
        record["phones"] = [
            self._phone(record["id"], label, record[key])
            for key, label in (("phone", "Phone"), ("mobile", "Mobile"))
            if not _blank(record[key])
        ]
        self._derive(record)
        self._stamp(record, created=True)
        self.records[record["id"]] = record
        return record

    def update(self, customer_id: int | None, params: Mapping[str, Any]) -> Record:
        record = dict(self.record(customer_id)) | _coerce(params, _CUSTOMER_FIELDS)
        self._validate(record)
        self._derive(record)
        self._stamp(record)
        self.records[record["id"]] = record
        return record

    def render(self, record: Record, *, detail: bool = False) -> Record:
        view = _view(record, _CUSTOMER_KEYS, self.state.tz)
        if detail:
            view |= {"phones": _render(record["phones"], self.state.tz)}
            view |= {"contracts": [], "addresses": []}
        return view

    @staticmethod
    def _validate(record: Record) -> None:
        messages = []
        if _blank(record["business_name"]) and _blank(record["lastname"]):
            messages.append("Lastname can't be blank")
        if not _blank(record["email"]) and not _EMAIL.fullmatch(record["email"].strip()):
            messages.append("Email is not an email")
        if messages:
            raise SyncroValidationError(messages)

    @staticmethod
    def _derive(record: Record) -> None:
        fullname = " ".join(n for n in (record["firstname"], record["lastname"]) if n).strip()
        business = record["business_name"] or ""
        record["fullname"] = fullname
        record["business_then_name"] = business or fullname
        record["business_and_full_name"] = (
            f"{business} - {fullname}" if business and fullname else business or fullname
        )

    def _phone(self, customer_id: int, label: str, number: str) -> Record:
        self._phone_ids += 1
        now = self.state.now()
        return {
            "id": self._phone_ids - 1, "customer_id": customer_id, "label": label,
            "number": re.sub(r"\D", "", number), "extension": None,
            "created_at": now, "updated_at": now,
        }  # fmt: skip


# -- products (syncro-api.md §4.2, assumed-shapes §1.5) ---------------------------------------

_PRODUCT_FIELDS: dict[str, Coercer] = {
    **dict.fromkeys(
        ("name", "description", "condition", "warranty", "notes", "physical_location",
         "upc_code", "product_category"),
        _to_str,
    ),
    **dict.fromkeys(("price_cost", "price_retail", "price_wholesale"), _money),
    **dict.fromkeys(("maintain_stock", "disabled", "taxable", "serialized"), _to_bool),
    **dict.fromkeys(
        ("quantity", "sort_order", "reorder_at", "desired_stock_level", "warranty_template_id",
         "qb_item_id", "tax_rate_id"),
        _to_int,
    ),
    "discount_percent": lambda v: _to_decimal(v) or Decimal(0),
    "vendor_ids": _to_int_list,
    "category_ids": _to_int_list,
}  # fmt: skip
_PRODUCT_KEYS = (
    "id", "price_cost", "price_retail", "condition", "description", "maintain_stock", "name",
    "quantity", "warranty", "sort_order", "reorder_at", "disabled", "taxable",
    "product_category", "category_path", "upc_code", "discount_percent", "warranty_template_id",
    "qb_item_id", "desired_stock_level", "price_wholesale", "notes", "tax_rate_id",
    "physical_location", "serialized", "vendor_ids", "long_description", "location_quantities",
    "photos", "product_skus",
)  # fmt: skip
_PRODUCT_NUMBERS = ("price_cost", "price_retail", "price_wholesale", "discount_percent")
_PRODUCT_DEFAULTS: Record = {
    "price_cost": Decimal(0), "price_retail": Decimal(0), "price_wholesale": Decimal(0),
    "discount_percent": Decimal(0), "maintain_stock": False, "disabled": False, "taxable": True,
    "serialized": False, "quantity": 0, "vendor_ids": [], "category_ids": [],
    "location_quantities": [], "photos": [], "product_skus": [],
}  # fmt: skip


class ProductBook(_Book):
    """Products with SKUs per vendor; prices are currency units."""

    def __init__(self, state: SyncroState) -> None:
        super().__init__(state, 15000001)
        self._sku_ids = 620001

    def add(
        self,
        name: str,
        description: str | None = None,
        *,
        skus: Iterable[tuple[int, str]] = (),
        **fields: Any,
    ) -> Record:
        """Seed a product; `description` defaults to `name`, `skus` are (vendor_id, sku) pairs."""
        sku_rows = [{"vendor_id": vendor, "value": sku} for vendor, sku in skus]
        params = {"name": name, "description": description or name, **fields}
        with self.state.lock:
            return self.render(self.create(params | {"product_skus_attributes": sku_rows}))

    def get(self, product_id: int) -> Record | None:
        """The product view, or None."""
        with self.state.lock:
            record = self.records.get(product_id)
            return self.render(record) if record else None

    def all(self) -> list[Record]:
        """Every product, disabled ones included."""
        with self.state.lock:
            return [self.render(self.records[i]) for i in sorted(self.records)]

    def create(self, params: Mapping[str, Any]) -> Record:
        record = _empty(_PRODUCT_KEYS) | copy.deepcopy(_PRODUCT_DEFAULTS)
        record |= _coerce(params, _PRODUCT_FIELDS)
        self._apply(record, params)
        record["id"] = self.new_id()
        self.records[record["id"]] = record
        return record

    def update(self, product_id: int | None, params: Mapping[str, Any]) -> Record:
        record = copy.deepcopy(self.record(product_id)) | _coerce(params, _PRODUCT_FIELDS)
        # PUT applies defaults for this omitted boolean (assumed-shapes §1.5).
        record["maintain_stock"] = _to_bool(params.get("maintain_stock", False))
        self._apply(record, params)
        self.records[record["id"]] = record
        return record

    def render(self, record: Record) -> Record:
        view = _view(record, _PRODUCT_KEYS, self.state.tz)
        view |= {key: _number(record[key]) for key in _PRODUCT_NUMBERS}
        view["product_skus"] = [
            {"id": s["id"], "vendor_name": self.state.vendors[s["vendor_id"]], "sku": s["sku"]}
            for s in record["product_skus"]
        ]
        return view

    def _apply(self, record: Record, params: Mapping[str, Any]) -> None:
        """Validate, then apply SKUs and categories to a record not yet stored."""
        messages = [
            f"{label} can't be blank"
            for key, label in (("name", "Name"), ("description", "Description"))
            if _blank(record[key])
        ]
        entries = params.get("product_skus_attributes") or []
        if isinstance(entries, Mapping):  # form-encoded nested attributes arrive keyed "0", "1"…
            entries = list(entries.values())
        if any(self._sku_vendor_missing(e) for e in entries):
            messages.append("Product skus vendor must exist")
        if messages:
            raise SyncroValidationError(messages)
        if "vendor_ids" in params:
            record["vendor_ids"] = [v for v in record["vendor_ids"] if v in self.state.vendors]
        for entry in entries:
            self._apply_sku(record, entry)
        if "category_ids" in params:
            known = [c for c in record["category_ids"] if c in self.state.categories]
            names = [self.state.categories[c] for c in known]
            record["category_ids"] = known
            record["product_category"] = record["category_path"] = names[0] if names else None

    def _sku_vendor_missing(self, entry: Any) -> bool:
        if not isinstance(entry, Mapping) or ("id" in entry and "vendor_id" not in entry):
            return False  # editing or removing an existing row keeps its vendor
        return _to_int(entry.get("vendor_id")) not in self.state.vendors

    def _apply_sku(self, record: Record, entry: Any) -> None:
        """`product_skus_attributes` semantics of assumed-shapes §1.5."""
        if not isinstance(entry, Mapping):
            return
        if "id" not in entry:
            # An entry without id always adds a row, even a duplicate (assumed-shapes §1.5).
            vendor_id = _to_int(entry.get("vendor_id"))
            record["product_skus"].append(
                {"id": self._sku_ids, "vendor_id": vendor_id, "sku": _to_str(entry.get("value"))}
            )
            self._sku_ids += 1
            if vendor_id not in record["vendor_ids"]:
                record["vendor_ids"].append(vendor_id)
            return
        sku_id = _to_int(entry["id"])
        row = next((s for s in record["product_skus"] if s["id"] == sku_id), None)
        if row is None:
            raise RecordNotFoundError(sku_id)  # Rails nested attributes: unknown id → 404
        if _to_bool(entry.get("_destroy")):
            record["product_skus"].remove(row)
            return
        if "value" in entry:
            row["sku"] = _to_str(entry["value"])
        if "vendor_id" in entry:
            row["vendor_id"] = _to_int(entry["vendor_id"])


# -- schedules (syncro-api.md §4.3, assumed-shapes §1.6) --------------------------------------

_SCHEDULE_FIELDS: dict[str, Coercer] = {
    **dict.fromkeys(
        ("name", "frequency", "generated_invoice_name", "memo", "unbilled_ticket_charge_order"),
        _to_str,
    ),
    **dict.fromkeys(
        ("customer_id", "contract_id", "location_id", "user_id", "invoice_term_id",
         "template_id", "payment_id", "source_id", "invoice_id"),
        _to_int,
    ),
    **dict.fromkeys(
        ("email_customer", "snail_mail", "charge_mop", "invoice_unbilled_ticket_charges",
         "paused", "last_day_of_month", "keep_pricing_current", "allow_blank_invoices",
         "email_receipt", "charge_on_due_date", "apply_credit", "reset_prepay_hours",
         "create_ticket_on_failed_billing", "create_ticket_one_month_prior_to_end",
         "schedule_retry_card_on_failed_billing"),
        _to_bool,
    ),
    # Stored comma-separated whether sent as a string or an array (syncro-api.md §4.3).
    "invoice_unbilled_ticket_statuses": lambda v: ",".join(v) if isinstance(v, list) else v,
}  # fmt: skip
_SCHEDULE_KEYS = (
    "id", "account_id", "customer_id", "contract_id", "email_customer", "frequency", "name",
    "next_run", "snail_mail", "charge_mop", "subtotal", "invoice_unbilled_ticket_charges",
    "paused", "last_invoice_paid", "payment_id", "charge_on_due_date", "invoice_term_id",
    "location_id", "user_id", "recurring_type_id", "period_mode_id", "subscription_status",
    "reset_prepay_hours", "last_day_of_month", "keep_pricing_current", "generated_invoice_name",
    "allow_blank_invoices", "template_id", "memo", "apply_credit",
    "invoice_unbilled_ticket_statuses", "email_receipt", "source_id", "invoice_id", "last_run",
    "created_at", "updated_at", "create_ticket_on_failed_billing",
    "create_ticket_one_month_prior_to_end", "schedule_retry_card_on_failed_billing",
    "unbilled_ticket_charge_order",
)  # fmt: skip
_SCHEDULE_DEFAULTS: Record = {
    **{key: False for key, cast in _SCHEDULE_FIELDS.items() if cast is _to_bool},
    "recurring_type_id": 1, "period_mode_id": 0, "subscription_status": "active",
    "unbilled_ticket_charge_order": "ticket_number",
}  # fmt: skip


class ScheduleBook(_Book):
    """Recurring invoices; the detail view carries their `lines`, list views do not."""

    def __init__(self, state: SyncroState) -> None:
        super().__init__(state, 4100001)

    def add(
        self,
        customer_id: int,
        name: str = "Monthly Services",
        *,
        frequency: str = "Monthly",
        next_run: date | str | None = None,
        **fields: Any,
    ) -> Record:
        """Seed a schedule; `next_run` defaults to the first of next month."""
        if next_run is None:
            today = self.state.now().date()
            next_run = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
        params = {"customer_id": customer_id, "name": name, "frequency": frequency}
        with self.state.lock:
            record = self.create(params | {"next_run": str(next_run), **fields})
            return self.render(record, with_lines=True)

    def get(self, schedule_id: int) -> Record | None:
        """Detail view with `lines`, or None (also after deletion)."""
        with self.state.lock:
            record = self.records.get(schedule_id)
            return self.render(record, with_lines=True) if record else None

    def all(self, customer_id: int | None = None) -> list[Record]:
        """List views (no lines), optionally of one customer."""
        with self.state.lock:
            return [
                self.render(self.records[i])
                for i in sorted(self.records)
                if customer_id is None or self.records[i]["customer_id"] == customer_id
            ]

    def create(self, params: Mapping[str, Any]) -> Record:
        record = _empty(_SCHEDULE_KEYS) | _SCHEDULE_DEFAULTS
        record["account_id"] = self.state.account_id
        record |= self._validated(record, params)
        record["id"] = self.new_id()
        self._stamp(record, created=True)
        self.records[record["id"]] = record
        return record

    def update(self, schedule_id: int, params: Mapping[str, Any]) -> Record:
        record = self.record(schedule_id)
        # invoice_id only seeds lines on create (syncro-api.md §4.3).
        changes = self._validated(record, {k: v for k, v in params.items() if k != "invoice_id"})
        record |= changes
        self._stamp(record)
        return record

    def delete(self, schedule_id: int) -> None:
        self.record(schedule_id)
        del self.records[schedule_id]
        for line in self.state.lines.of_schedule(schedule_id):
            del self.state.lines.records[line["id"]]

    def render(self, record: Record, *, with_lines: bool = False) -> Record:
        view = _view(record, _SCHEDULE_KEYS, self.state.tz)
        lines = self.state.lines.of_schedule(record["id"])
        total = sum((ln["retail_cents"] * ln["quantity"] for ln in lines), Decimal(0)) / 100
        view["subtotal"] = _number(total.quantize(Decimal("0.01"), ROUND_HALF_UP))
        if with_lines:
            view["lines"] = [self.state.lines.render(ln) for ln in lines]
        return view

    def _validated(self, record: Record, params: Mapping[str, Any]) -> Record:
        """The changes `params` make to `record`, or `SyncroValidationError` (§1.6 order)."""
        changes = _coerce(params, _SCHEDULE_FIELDS)
        if "next_run" in params:
            changes["next_run"] = _strict_date(params["next_run"])
        if "period_mode_id" in params:
            changes["period_mode_id"] = _to_int(params["period_mode_id"])
        merged = record | changes
        messages = []
        if merged["frequency"] not in FREQUENCIES:
            messages.append("Frequency Must be a valid selection")
        if merged["next_run"] is None:
            messages.append("Next run can't be blank")
        if _blank(merged["name"]):
            messages.append("Name can't be blank")
        if merged["customer_id"] is None:
            messages.append("Customer can't be blank")
        elif merged["customer_id"] not in self.state.customers.records:
            messages.append("Customer can't be found")
        if merged["period_mode_id"] not in (0, 1, 2, 3):
            messages.append("Period mode Must be a valid selection")
        if messages:
            raise SyncroValidationError(messages)
        return changes


def _strict_date(value: Any) -> date | None:
    """`next_run` must be exactly YYYY-MM-DD; anything else short-circuits (§1.6)."""
    if _blank(value):
        return None
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise SyncroValidationError(NEXT_RUN_FORMAT_ERROR)


# -- schedule line items (syncro-api.md §4.4, assumed-shapes §1.7) ----------------------------

_LINE_FIELDS: dict[str, Coercer] = {
    **dict.fromkeys(
        ("name", "description", "product_category", "vendor_name", "vendor_product_name",
         "m365_unit_type", "syncro_backup_billing_type", "syncro_backup_credit_type"),
        _to_str,
    ),
    **dict.fromkeys(
        ("position", "user_id", "asset_type_id", "saved_asset_search_id",
         "contact_field_type_id", "contact_field_answer_id", "policy_folder_id",
         "bill_units_threshold", "syncro_backup_bill_after_licenses", "recurring_type_id"),
        _to_int,
    ),
    **dict.fromkeys(
        ("taxable", "one_time_charge", "bill_nested_folders", "bill_all_units",
         "include_zero_charge", "syncro_backup_bill_all"),
        _to_bool,
    ),
    "syncro_backup_bill_after_storage": _to_decimal,
}  # fmt: skip
_LINE_KEYS = (
    "id", "cost_cents", "description", "name", "position", "product_id", "quantity",
    "retail_cents", "schedule_id", "taxable", "user_id", "price_cost", "price_retail",
    "product_category", "asset_type_id", "contact_field_type_id", "contact_field_answer_id",
    "recurring_type_id", "device_ids", "one_time_charge", "syncro_backup_billing_type",
    "syncro_backup_credit_type", "syncro_backup_bill_all", "syncro_backup_bill_after_licenses",
    "syncro_backup_bill_after_storage", "vendor_name", "vendor_product_name", "bill_all_units",
    "bill_units_threshold", "include_zero_charge", "saved_asset_search_id", "policy_folder_id",
    "bill_nested_folders", "m365_unit_type",
)  # fmt: skip
_LINE_DEFAULTS: Record = {
    "cost_cents": 0, "retail_cents": 0, "quantity": Decimal(0), "taxable": False,
    "device_ids": [], "one_time_charge": False, "bill_all_units": True,
    "bill_units_threshold": 0, "include_zero_charge": False, "bill_nested_folders": False,
    "m365_unit_type": "all",
}  # fmt: skip


class ScheduleLineBook(_Book):
    """Schedule line items: int cents plus derived currency numbers, quantity as a string."""

    def __init__(self, state: SyncroState) -> None:
        super().__init__(state, 88000001)

    def add(self, schedule_id: int, **fields: Any) -> Record:
        """Seed a line with API fields (`name`, `quantity`, `retail_cents`/`price_retail`…)."""
        with self.state.lock:
            return self.render(self.create(schedule_id, fields))

    def get(self, line_id: int) -> Record | None:
        """The line view, or None."""
        with self.state.lock:
            record = self.records.get(line_id)
            return self.render(record) if record else None

    def all(self, schedule_id: int | None = None) -> list[Record]:
        """Line views by position, optionally of one schedule."""
        with self.state.lock:
            lines = sorted(
                self.records.values(), key=lambda ln: (ln["schedule_id"], ln["position"])
            )
            return [
                self.render(ln)
                for ln in lines
                if schedule_id is None or ln["schedule_id"] == schedule_id
            ]

    def of_schedule(self, schedule_id: int) -> list[Record]:
        """Stored lines of one schedule by position."""
        lines = [ln for ln in self.records.values() if ln["schedule_id"] == schedule_id]
        return sorted(lines, key=lambda ln: (ln["position"], ln["id"]))

    def record_of(self, schedule_id: int, line_id: int | None) -> Record:
        """A line that belongs to this schedule, or `RecordNotFoundError`."""
        line = self.record(line_id)
        if line["schedule_id"] != schedule_id:
            raise RecordNotFoundError(line_id)
        return line

    def create(self, schedule_id: int, params: Mapping[str, Any]) -> Record:
        self.state.schedules.record(schedule_id)
        siblings = self.of_schedule(schedule_id)
        record = _empty(_LINE_KEYS) | copy.deepcopy(_LINE_DEFAULTS)
        record |= {
            "schedule_id": schedule_id,
            "user_id": self.state.user_id,
            "position": max((ln["position"] or 0 for ln in siblings), default=0) + 1,
        }
        record |= self._validated(record, params, creating=True)
        record["id"] = self.new_id()
        self.records[record["id"]] = record
        self._touch(schedule_id)
        return record

    def update(self, schedule_id: int, line_id: int, params: Mapping[str, Any]) -> Record:
        record = self.record_of(schedule_id, line_id)
        record |= self._validated(record, params, creating=False)
        self._touch(schedule_id)
        return record

    def delete(self, schedule_id: int, line_id: int | None) -> None:
        line = self.record_of(schedule_id, line_id)
        del self.records[line["id"]]
        self._touch(schedule_id)

    def render(self, record: Record) -> Record:
        view = _view(record, _LINE_KEYS, self.state.tz)
        view["quantity"] = decimal_string(record["quantity"])
        view["price_retail"] = _number(Decimal(record["retail_cents"]) / 100)
        view["price_cost"] = _number(Decimal(record["cost_cents"]) / 100)
        storage = record["syncro_backup_bill_after_storage"]
        view["syncro_backup_bill_after_storage"] = None if storage is None else _number(storage)
        return view

    def _validated(self, record: Record, params: Mapping[str, Any], *, creating: bool) -> Record:
        """The changes `params` make to `record`, or `SyncroValidationError` (§1.7 order)."""
        changes = _coerce(params, _LINE_FIELDS) | self._money(params)
        if "product_id" in params:
            changes["product_id"] = _to_int(params["product_id"])
        product_id = (record | changes)["product_id"]
        product = self.state.products.records.get(product_id) if product_id else None
        if product is not None and "product_id" in params:
            # Only naming and category come from the product, never prices (§1.7).
            changes["product_category"] = product["product_category"]
            if creating:
                changes.setdefault("name", product["name"])
                changes.setdefault("description", product["description"])
        merged = record | changes
        messages = []
        if _blank(merged["name"]) and product is None:
            messages.append("Name can't be blank")
        if product_id is not None and product is None:
            messages.append("Product can't be found")
        if "quantity" in params:
            changes["quantity"] = _to_decimal(params["quantity"])
            if changes["quantity"] is None:
                messages.append("Quantity is not a number")
        if merged["recurring_type_id"] is not None and not 1 <= merged["recurring_type_id"] <= 11:
            messages.append("Recurring type is not included in the list")
        if messages:
            raise SyncroValidationError(messages)
        return changes

    @staticmethod
    def _money(params: Mapping[str, Any]) -> Record:
        """Cents win over currency units when both are sent for the same side (§1.7)."""
        changes: Record = {}
        for side in ("retail", "cost"):
            if f"{side}_cents" in params:
                changes[f"{side}_cents"] = _to_int(params[f"{side}_cents"]) or 0
            elif f"price_{side}" in params:
                changes[f"{side}_cents"] = _cents(_money(params[f"price_{side}"]))
        return changes

    def _touch(self, schedule_id: int) -> None:
        self.state.schedules.records[schedule_id]["updated_at"] = self.state.now()


# -- invoices (syncro-api.md §4.5, assumed-shapes §1.8) ---------------------------------------

_INVOICE_KEYS = (
    "id", "customer_id", "customer_business_then_name", "number", "name", "date", "due_date",
    "created_at", "updated_at", "subtotal", "total", "tax", "verified_paid", "tech_marked_paid",
    "ticket_id", "pdf_url", "is_paid", "location_id", "po_number", "contact_id", "note",
    "hardwarecost", "user_id", "external_id", "schedule_id", "qbsdk_external_id", "xero_id",
    "is_recurring", "amount_paid", "balance_due",
)  # fmt: skip
_INVOICE_FIELDS: dict[str, Coercer] = {
    **dict.fromkeys(("name", "po_number", "note"), _to_str),
    **dict.fromkeys(("ticket_id", "location_id", "contact_id"), _to_int),
}
_INVOICE_LINE_KEYS = (
    "id", "created_at", "updated_at", "invoice_id", "item", "name", "cost", "price", "quantity",
    "product_id", "taxable", "discount_percent", "position", "invoice_bundle_id",
    "discount_dollars",
)  # fmt: skip
_INVOICE_LINE_DECIMALS = ("cost", "price", "quantity", "discount_percent", "discount_dollars")


class InvoiceBook(_Book):
    """Invoices and their line items; money and quantities are decimal strings."""

    def __init__(self, state: SyncroState) -> None:
        super().__init__(state, 2147483601)  # ids just below 2**31 so clients meet 64-bit ids
        self.line_records: dict[int, Record] = {}
        self._line_ids = 99000001

    def add(
        self, customer_id: int, *, lines: Iterable[Mapping[str, Any]] = (), **fields: Any
    ) -> Record:
        """Seed an invoice and its lines (each as the add-line body); returns the detail view."""
        with self.state.lock:
            record = self.create({"customer_id": customer_id, **fields})
            for line in lines:
                self.add_line_record(record["id"], line)
            return self.render(record, detail=True)

    def get(self, invoice_id: int) -> Record | None:
        """Detail view, or None."""
        with self.state.lock:
            record = self.records.get(invoice_id)
            return self.render(record, detail=True) if record else None

    def all(self) -> list[Record]:
        """List views, newest first."""
        with self.state.lock:
            return [self.render(self.records[i]) for i in sorted(self.records, reverse=True)]

    def find(self, key: str) -> Record:
        """By id or by invoice number (syncro-api.md §4.5)."""
        if key.isdigit() and int(key) in self.records:
            return self.records[int(key)]
        for record in self.records.values():
            if record["number"] == key:
                return record
        raise RecordNotFoundError(key)

    def create(self, params: Mapping[str, Any]) -> Record:
        customer_id = _to_int(params.get("customer_id"))
        if customer_id not in self.state.customers.records:
            raise SyncroValidationError(["Customer can't be blank"])
        today = self.state.now().date()
        invoice_date = _lenient_date(params.get("date")) or today
        record = _empty(_INVOICE_KEYS) | _coerce(params, _INVOICE_FIELDS)
        record |= {
            "id": self.new_id(),
            "customer_id": customer_id,
            "number": _to_str(params.get("number")) or self._next_number(),
            "date": invoice_date,
            "due_date": _lenient_date(params.get("due_date")) or invoice_date,
            "user_id": self.state.user_id,
        }
        flags = ("verified_paid", "tech_marked_paid", "is_paid", "is_recurring")
        record |= dict.fromkeys(flags, False)
        # line_items sent on create are silently dropped (assumed-shapes §1.8).
        self._stamp(record, created=True)
        self.records[record["id"]] = record
        return record

    def add_line_record(self, invoice_id: int, params: Mapping[str, Any]) -> Record:
        invoice = self.record(invoice_id)
        product = self._resolve_product(params)
        line: Record = _empty(_INVOICE_LINE_KEYS) | {
            "invoice_id": invoice_id,
            "item": _to_str(params.get("item")),
            "name": _to_str(params.get("name")),
            "product_id": _to_int(params.get("product_id")),
            "quantity": _invoice_quantity(params.get("quantity")),
            "cost": _money(params.get("cost")),
            "price": _money(params.get("price")),
            "taxable": _to_bool(params.get("taxable", True)),
            "discount_percent": _to_decimal(params.get("line_discount_percent")) or Decimal(0),
            "discount_dollars": _money(params.get("discount_dollars")),
        }
        if product is not None:
            # A resolved product overrides cost, price and taxable (syncro-api.md §4.5).
            line |= {
                "product_id": product["id"],
                "cost": product["price_cost"],
                "price": product["price_retail"],
                "taxable": product["taxable"] and line["taxable"],
            }
            if _blank(line["item"]) and _blank(line["name"]):
                line |= {"item": product["name"], "name": product["description"]}
        if _blank(line["item"]):
            line["item"] = line["name"]
        if _blank(line["item"]):
            raise SyncroValidationError(["Item can't be blank"])
        siblings = [ln for ln in self.line_records.values() if ln["invoice_id"] == invoice_id]
        line["position"] = max((ln["position"] for ln in siblings), default=0) + 1
        line["id"] = self._line_ids
        self._line_ids += 1
        self._stamp(line, created=True)
        self._stamp(invoice)
        self.line_records[line["id"]] = line
        return line

    def render(self, record: Record, *, detail: bool = False) -> Record:
        lines = sorted(
            (ln for ln in self.line_records.values() if ln["invoice_id"] == record["id"]),
            key=lambda ln: ln["position"],
        )
        subtotal = sum((_line_total(ln) for ln in lines), Decimal(0))
        tax = Decimal(0)  # the sandbox account has no tax rates
        hardware = sum((ln["cost"] * ln["quantity"] for ln in lines), Decimal(0))
        customer = self.state.customers.records[record["customer_id"]]
        view = _view(record, _INVOICE_KEYS, self.state.tz)
        view |= {
            "customer_business_then_name": customer["business_then_name"],
            "subtotal": decimal_string(subtotal),
            "tax": decimal_string(tax),
            "total": decimal_string(subtotal + tax),
            "hardwarecost": decimal_string(_round_cents(hardware)),
        }
        paid, balance = Decimal(0), subtotal + tax
        if not detail:
            # The spec shows these as numbers in lists but strings in detail (syncro-api.md §6).
            return view | {"amount_paid": _number(paid), "balance_due": _number(balance)}
        return view | {
            "amount_paid": decimal_string(paid),
            "balance_due": decimal_string(balance),
            "line_items": [self.render_line(ln) for ln in lines],
            "payments": [],
            "customer": self.state.customers.render(customer),
        }

    def render_line(self, line: Record) -> Record:
        view = _view(line, _INVOICE_LINE_KEYS, self.state.tz)
        return view | {key: decimal_string(line[key]) for key in _INVOICE_LINE_DECIMALS}

    def _resolve_product(self, params: Mapping[str, Any]) -> Record | None:
        products = self.state.products.records
        by_id = products.get(_to_int(params.get("product_id")) or 0)
        upc = _to_str(params.get("upc_code"))
        item = (_to_str(params.get("item")) or "").strip().lower()
        by_upc = next((p for p in products.values() if upc and p["upc_code"] == upc), None)
        by_name = next(
            (p for p in products.values() if item and (p["name"] or "").lower() == item), None
        )
        return by_id or by_upc or by_name

    def _next_number(self) -> str:
        numbers = [int(r["number"]) for r in self.records.values() if r["number"].isdigit()]
        return str(max(numbers, default=1000) + 1)


def _invoice_quantity(value: Any) -> Decimal:
    """Defaults to 1 when not sent; Rails casts unreadable numbers to 0."""
    return Decimal(1) if _blank(value) else _to_decimal(value) or Decimal(0)


def _line_total(line: Record) -> Decimal:
    gross = line["price"] * line["quantity"] * (1 - line["discount_percent"] / 100)
    return _round_cents(gross - line["discount_dollars"])


def _round_cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), ROUND_HALF_UP)


def _lenient_date(value: Any) -> date | None:
    """Invoice dates take a date or a timestamp; unreadable values fall back to the default."""
    text = _to_str(value) or ""
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        return None


# -- the HTTP API -----------------------------------------------------------------------------

Route = tuple[str, str, str | None, Handler]
_ID = r"(?P<id>\d+)"


def _paginate(items: list[T], request: Request, per_page: int) -> tuple[list[T], int, int]:
    """Slice one page (1-based); a page past the end is empty."""
    page = _to_int(request.arg("page")) or 1
    page = max(page, 1)
    total_pages = math.ceil(len(items) / per_page)
    return items[(page - 1) * per_page : page * per_page], page, total_pages


def _full_page(key: str, views: list[Record], request: Request, per_page: int) -> Response:
    items, page, total_pages = _paginate(views, request, per_page)
    meta = {
        "total_pages": total_pages, "total_entries": len(views), "per_page": per_page,
        "page": page,
    }  # fmt: skip
    return json_response({key: items, "meta": meta})


def _sorted(records: list[Record], sort: str | None, fields: Iterable[str]) -> list[Record]:
    """Rails-style `sort=field ASC|DESC` over the sortable `fields`; others keep the id order."""
    field, _, direction = (sort or "").strip().partition(" ")
    if field not in fields:
        return records

    def key(record: Record) -> tuple[bool, Any]:
        value = record[field]
        return value is None, value.lower() if isinstance(value, str) else value

    return sorted(records, key=key, reverse=direction.strip().upper() == "DESC")


_CUSTOMER_SORTABLE = (
    "id", "business_name", "firstname", "lastname", "fullname", "email", "phone", "city",
    "state", "zip", "created_at", "updated_at",
)  # fmt: skip
_PRODUCT_SORTABLE = (
    "id", "name", "description", "price_retail", "price_cost", "quantity", "sort_order",
    "upc_code", "product_category",
)  # fmt: skip


def _contains(value: Any, needle: str) -> bool:
    return isinstance(value, str) and needle.lower() in value.lower()


def _saved(key: str, render: Callable[[Record], Record], save: Callable[[], Record], *,
           echo: Mapping[str, Any] | None = None) -> Response:
    """Run a create or update; 422 in the customers/products shape (§5.2), `params` on create."""
    try:
        record = save()
    except SyncroValidationError as error:
        body: Record = {"success": False, "message": error.messages}
        if echo is not None:
            body["params"] = echo
        return json_response(body, 422)
    return json_response({key: render(record)})


class _CustomersApi:
    """`/customers` (syncro-api.md §4.1, assumed-shapes §1.4)."""

    def __init__(self, state: SyncroState) -> None:
        self.state = state
        self.book = state.customers

    def routes(self) -> list[Route]:
        return [
            ("GET", "/customers", CUSTOMERS_LIST, self.list),
            ("GET", f"/customers/{_ID}", CUSTOMERS_VIEW, self.show),
            ("POST", "/customers", CUSTOMERS_CREATE, self.create),
            ("PUT", f"/customers/{_ID}", CUSTOMERS_EDIT, self.update),
        ]

    def list(self, request: Request) -> Response:
        records = [self.book.records[i] for i in sorted(self.book.records)]
        if not _to_bool(request.arg("include_disabled")):
            records = [r for r in records if not r["disabled"]]
        for key in ("business_name", "firstname", "lastname"):
            if needle := request.arg(key):
                records = [r for r in records if _contains(r[key], needle)]
        if email := request.arg("email"):
            records = [r for r in records if (r["email"] or "").lower() == email.strip().lower()]
        if ids := _to_int_list(request.args("id")):
            records = [r for r in records if r["id"] in ids]
        if query := request.arg("query"):
            searched = ("business_name", "firstname", "lastname", "fullname", "email", "phone")
            records = [r for r in records if any(_contains(r[k], query) for k in searched)]
        records = _sorted(records, request.arg("sort"), _CUSTOMER_SORTABLE)
        views = [self.book.render(r) for r in records]
        return _full_page("customers", views, request, per_page=25)

    def show(self, request: Request) -> Response:
        record = self.book.record(_to_int(request.path_params["id"]))
        return json_response({"customer": self.book.render(record, detail=True)})

    def create(self, request: Request) -> Response:
        params = request.params()
        return _saved("customer", self.book.render, lambda: self.book.create(params), echo=params)

    def update(self, request: Request) -> Response:
        record_id = _to_int(request.path_params["id"])
        return _saved("customer", self.book.render,
                      lambda: self.book.update(record_id, request.params()))


class _ProductsApi:
    """`/products` (syncro-api.md §4.2, assumed-shapes §1.5); there is no DELETE."""

    def __init__(self, state: SyncroState) -> None:
        self.state = state
        self.book = state.products

    def routes(self) -> list[Route]:
        return [
            ("GET", "/products", PRODUCTS_LIST, self.list),
            ("GET", f"/products/{_ID}", PRODUCTS_LIST, self.show),
            ("POST", "/products", PRODUCTS_CREATE, self.create),
            ("PUT", f"/products/{_ID}", PRODUCTS_EDIT, self.update),
        ]

    def list(self, request: Request) -> Response:
        records = [self.book.records[i] for i in sorted(self.book.records)]

        def skus(record: Record) -> list[str]:
            return [(s["sku"] or "").lower() for s in record["product_skus"]]

        if name := request.arg("name"):
            records = [r for r in records if _contains(r["name"], name)]
        if sku := request.arg("sku"):
            records = [r for r in records if sku.strip().lower() in skus(r)]
        if upc := request.arg("upc_code"):
            records = [r for r in records if r["upc_code"] == upc]
        if (category := _to_int(request.arg("category_id"))) is not None:
            records = [r for r in records if category in r["category_ids"]]
        if ids := _to_int_list(request.args("id")):
            records = [r for r in records if r["id"] in ids]
        if query := request.arg("query"):
            needle = query.lower()
            records = [
                r
                for r in records
                if any(_contains(r[k], needle) for k in ("name", "description", "upc_code"))
                or any(needle in s for s in skus(r))
            ]
        records = _sorted(records, request.arg("sort"), _PRODUCT_SORTABLE)
        return _full_page("products", [self.book.render(r) for r in records], request, 25)

    def show(self, request: Request) -> Response:
        record = self.book.record(_to_int(request.path_params["id"]))
        return json_response({"product": self.book.render(record)})

    def create(self, request: Request) -> Response:
        params = request.params()
        return _saved("product", self.book.render, lambda: self.book.create(params), echo=params)

    def update(self, request: Request) -> Response:
        record_id = _to_int(request.path_params["id"])
        return _saved("product", self.book.render,
                      lambda: self.book.update(record_id, request.params()))


class _SchedulesApi:
    """`/schedules` and their line items (syncro-api.md §4.3, §4.4; assumed-shapes §1.6, §1.7)."""

    def __init__(self, state: SyncroState) -> None:
        self.state = state
        self.book = state.schedules
        self.lines = state.lines

    def routes(self) -> list[Route]:
        line = rf"/schedules/{_ID}/line_items/(?P<line_id>\d+)"
        return [
            ("GET", "/schedules", SCHEDULES_LIST, self.list),
            ("GET", f"/schedules/{_ID}", SCHEDULES_LIST, self.show),
            ("POST", "/schedules", SCHEDULES_NEW, self.create),
            ("PUT", f"/schedules/{_ID}", SCHEDULES_EDIT, self.update),
            ("DELETE", f"/schedules/{_ID}", SCHEDULES_DELETE, self.delete),
            ("POST", f"/schedules/{_ID}/line_items", SCHEDULES_EDIT, self.add_line),
            ("POST", f"/schedules/{_ID}/add_line_item", SCHEDULES_EDIT, self.add_line),
            ("PUT", line, SCHEDULES_EDIT, self.update_line),
            ("DELETE", line, SCHEDULES_EDIT, self.delete_line),
            ("POST", f"/schedules/{_ID}/remove_line_item", SCHEDULES_EDIT, self.remove_line),
        ]

    def list(self, request: Request) -> Response:
        customer_id = _to_int(request.arg("customer_id"))
        records = [
            self.book.records[i]
            for i in sorted(self.book.records)
            if customer_id is None or self.book.records[i]["customer_id"] == customer_id
        ]
        views = [self.book.render(r) for r in records]  # list items carry no lines (§1.6)
        return _full_page("schedules", views, request, per_page=50)

    def show(self, request: Request) -> Response:
        record = self.book.record(_to_int(request.path_params["id"]))
        return json_response({"schedule": self.book.render(record, with_lines=True)})

    def create(self, request: Request) -> Response:
        try:
            record = self.book.create(request.params())
        except SyncroValidationError as error:
            return json_response({"error": error.messages}, 422)
        return json_response({"schedule": self.book.render(record, with_lines=True)})

    def update(self, request: Request) -> Response:
        schedule_id = self._schedule_id(request)
        try:
            record = self.book.update(schedule_id, request.params())
        except SyncroValidationError as error:
            return json_response({"error": error.messages}, 422)
        return json_response({"schedule": self.book.render(record, with_lines=True)})

    def delete(self, request: Request) -> Response:
        self.book.delete(self._schedule_id(request))
        return json_response({"success": True})

    def add_line(self, request: Request) -> Response:
        schedule_id = self._schedule_id(request)
        try:
            line = self.lines.create(schedule_id, request.params())
        except SyncroValidationError as error:
            return json_response({"error": error.messages}, 422)
        return json_response({"schedule_line_item": self.lines.render(line)})

    def update_line(self, request: Request) -> Response:
        schedule_id = self._schedule_id(request)
        line_id = _to_int(request.path_params["line_id"]) or 0
        self.lines.record_of(schedule_id, line_id)
        try:
            line = self.lines.update(schedule_id, line_id, request.params())
        except SyncroValidationError as error:
            return json_response({"error": error.messages}, 422)
        return json_response({"schedule_line_item": self.lines.render(line)})

    def delete_line(self, request: Request) -> Response:
        line_id = _to_int(request.path_params["line_id"])
        self.lines.delete(self._schedule_id(request), line_id)
        return json_response({"success": True})

    def remove_line(self, request: Request) -> Response:
        """Legacy remove: the id may come under any of three keys (assumed-shapes §1.7)."""
        schedule_id = self._schedule_id(request)
        params = request.params()
        keys = ("schedule_line_item_id", "line_item_id", "id")
        line_id = next((_to_int(params[k]) for k in keys if k in params), None)
        self.lines.delete(schedule_id, line_id)
        return json_response({"success": True})

    def _schedule_id(self, request: Request) -> int:
        schedule_id = _to_int(request.path_params["id"])
        return int(self.book.record(schedule_id)["id"])


class _InvoicesApi:
    """`/invoices` (syncro-api.md §4.5, assumed-shapes §1.8)."""

    def __init__(self, state: SyncroState) -> None:
        self.state = state
        self.book = state.invoices

    def routes(self) -> list[Route]:
        return [
            ("GET", "/invoices", INVOICES_LIST, self.list),
            ("GET", r"/invoices/(?P<key>[^/]+)", INVOICES_VIEW, self.show),
            ("POST", "/invoices", INVOICES_CREATE, self.create),
            ("POST", f"/invoices/{_ID}/line_items", INVOICES_EDIT, self.add_line),
        ]

    def list(self, request: Request) -> Response:
        # customer_id is not a filter here and is silently ignored (assumed-shapes §1.8).
        records = [self.book.records[i] for i in sorted(self.book.records, reverse=True)]
        if (paid := request.arg("paid")) is not None:
            records = [r for r in records if r["is_paid"] == _to_bool(paid)]
        if (unpaid := request.arg("unpaid")) is not None:
            records = [r for r in records if r["is_paid"] != _to_bool(unpaid)]
        if (ticket := _to_int(request.arg("ticket_id"))) is not None:
            records = [r for r in records if r["ticket_id"] == ticket]
        if since := self._timestamp(request.arg("since_updated_at")):
            records = [r for r in records if r["updated_at"] >= since]
        per_page = min(_to_int(request.arg("per_page")) or 25, 25)
        items, page, total_pages = _paginate(records, request, max(per_page, 1))
        meta = {"total_pages": total_pages, "page": page}  # the minimal variant (§3)
        return json_response({"invoices": [self.book.render(r) for r in items], "meta": meta})

    def show(self, request: Request) -> Response:
        record = self.book.find(request.path_params["key"])
        return json_response({"invoice": self.book.render(record, detail=True)})

    def create(self, request: Request) -> Response:
        try:
            record = self.book.create(request.params())
        except SyncroValidationError as error:
            return json_response({"success": False, "message": error.messages}, 422)
        return json_response({"invoice": self.book.render(record, detail=True)})

    def add_line(self, request: Request) -> Response:
        invoice = self.book.record(_to_int(request.path_params["id"]))
        try:
            line = self.book.add_line_record(invoice["id"], request.params())
        except SyncroValidationError as error:
            return json_response({"success": False, "message": error.messages}, 422)
        return json_response(
            {
                "invoice": self.book.render(invoice, detail=True),
                "line_item": self.book.render_line(line),
            }
        )

    def _timestamp(self, text: str | None) -> datetime | None:
        try:
            moment = datetime.fromisoformat((text or "").strip())
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=self.state.tz)


# What GET /me reports per area: permissions granting read, write, delete (assumed-shapes §1.9).
_ME_AREAS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "customer": ((CUSTOMERS_LIST, CUSTOMERS_VIEW), (CUSTOMERS_CREATE, CUSTOMERS_EDIT),
                 ("Customers - Delete",)),
    "product": ((PRODUCTS_LIST,), (PRODUCTS_CREATE, PRODUCTS_EDIT), ()),
    "schedule": ((SCHEDULES_LIST,), (SCHEDULES_NEW, SCHEDULES_EDIT), (SCHEDULES_DELETE,)),
    "invoice": ((INVOICES_LIST, INVOICES_VIEW), (INVOICES_CREATE, INVOICES_EDIT),
                ("Invoices - Delete",)),
}  # fmt: skip


class SyncroSandbox(SandboxServer):
    """The Syncro REST API over HTTP on 127.0.0.1; point a client at `api_url`.

    Args:
        state: the account to serve (a fresh empty one by default); shared, not copied.
        tokens: API token → permission strings it holds (None = every permission).
        requests_per_minute: the per-client-IP limit (sliding 60 s window).
        retry_after: seconds to put in `Retry-After` on 429; None sends no header.
        clock: monotonic seconds for the rate limiter; tests inject a fake.
    """

    def __init__(
        self,
        state: SyncroState | None = None,
        *,
        tokens: Mapping[str, frozenset[str] | None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        requests_per_minute: int = 180,
        retry_after: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(host=host, port=port)
        self.state = state if state is not None else SyncroState()
        self.tokens: dict[str, frozenset[str] | None] = dict(
            tokens if tokens is not None else {DEFAULT_TOKEN: None}
        )
        self.retry_after = retry_after
        self.limiter = SlidingWindowLimiter(requests_per_minute, 60.0, clock)
        self._route("GET", "/me", None, self._me)
        apis = (_CustomersApi, _ProductsApi, _SchedulesApi, _InvoicesApi)
        for api in apis:
            for method, path, permission, handler in api(self.state).routes():
                self._route(method, path, permission, handler)

    @property
    def api_url(self) -> str:
        """`url` plus `/api/v1`: what a Syncro client takes as its base URL."""
        return f"{self.url}/api/v1"

    def handle(self, request: Request) -> Response:
        """Rate-limit per client IP (assumed-shapes §1.2), then route."""
        if not self.limiter.allow(request.client_ip):
            headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
            return text_response("Retry later", 429, headers)
        return super().handle(request)

    def malformed_body(self, request: Request) -> Response:
        """Syncro's answer to unparseable JSON (assumed-shapes §1.9)."""
        return json_response({"error": "Invalid JSON in request body"}, 400)

    def _route(self, method: str, path: str, permission: str | None, handler: Handler) -> None:
        def guarded(request: Request) -> Response:
            token = _token(request)
            if token is None or token not in self.tokens:
                return json_response({"error": INVALID_TOKEN_MESSAGE}, 401)
            granted = self.tokens[token]
            if permission is not None and granted is not None and permission not in granted:
                return json_response({"error": NOT_AUTHORIZED_MESSAGE}, 401)
            with self.state.lock:
                try:
                    return handler(request)
                except RecordNotFoundError:
                    return empty_response(404)

        self.router.add(method, f"/api/v1{path}", guarded)

    def _me(self, request: Request) -> Response:
        granted = self.tokens[_token(request) or ""]
        holds = ALL_PERMISSIONS if granted is None else granted
        permissions = {
            area: {
                "read": any(p in holds for p in read),
                "write": any(p in holds for p in write),
                "delete": any(p in holds for p in delete),
            }
            for area, (read, write, delete) in _ME_AREAS.items()
        }
        state = self.state
        me = {
            "user_id": state.user_id, "user_email": state.user_email,
            "user_name": state.user_name, "admin": granted is None,
            "subdomain": state.subdomain, "permissions": permissions,
        }  # fmt: skip
        return json_response(me)


def _token(request: Request) -> str | None:
    """Bearer header, bare header or `?api_key=` (syncro-api.md §1.3)."""
    header = (request.header("Authorization") or "").strip()
    if header:
        scheme, _, rest = header.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" and rest.strip() else header
    return request.arg("api_key")
