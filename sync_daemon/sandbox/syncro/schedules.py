"""Syncro recurring invoices and their line items (syncro-api.md §4.3, §4.4; assumed-shapes
§1.6, §1.7): the books behind `/schedules` and `/schedules/{id}/line_items`."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from sync_daemon.sandbox.syncro.records import (
    Book,
    Coercer,
    Record,
    RecordNotFoundError,
    SyncroValidationError,
    coerce,
    decimal_string,
    is_blank,
    null_record,
    to_bool,
    to_decimal,
    to_int,
    to_money,
    to_str,
    view_of,
)

if TYPE_CHECKING:
    from sync_daemon.sandbox.syncro.state import SyncroState

FREQUENCIES = (
    "Daily", "Monthly", "Weekly", "Biweekly", "Quarterly",
    "Semi-Annually", "Annually", "Biennially", "Triennially",
)  # fmt: skip
NEXT_RUN_FORMAT_ERROR = "Sorry, unable to read the date, use this format: Y-m-d"
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

_SCHEDULE_FIELDS: dict[str, Coercer] = {
    **dict.fromkeys(
        ("name", "frequency", "generated_invoice_name", "memo", "unbilled_ticket_charge_order"),
        to_str,
    ),
    **dict.fromkeys(
        ("customer_id", "contract_id", "location_id", "user_id", "invoice_term_id",
         "template_id", "payment_id", "source_id", "invoice_id"),
        to_int,
    ),
    **dict.fromkeys(
        ("email_customer", "snail_mail", "charge_mop", "invoice_unbilled_ticket_charges",
         "paused", "last_day_of_month", "keep_pricing_current", "allow_blank_invoices",
         "email_receipt", "charge_on_due_date", "apply_credit", "reset_prepay_hours",
         "create_ticket_on_failed_billing", "create_ticket_one_month_prior_to_end",
         "schedule_retry_card_on_failed_billing"),
        to_bool,
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
    **{key: False for key, cast in _SCHEDULE_FIELDS.items() if cast is to_bool},
    "recurring_type_id": 1, "period_mode_id": 0, "subscription_status": "active",
    "unbilled_ticket_charge_order": "ticket_number",
}  # fmt: skip


class ScheduleBook(Book):
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
        record = null_record(_SCHEDULE_KEYS) | _SCHEDULE_DEFAULTS
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
        view = view_of(record, _SCHEDULE_KEYS, self.state.tz)
        lines = self.state.lines.of_schedule(record["id"])
        total = sum((ln["retail_cents"] * ln["quantity"] for ln in lines), Decimal(0)) / 100
        view["subtotal"] = total.quantize(Decimal("0.01"), ROUND_HALF_UP)
        if with_lines:
            view["lines"] = [self.state.lines.render(ln) for ln in lines]
        return view

    def _validated(self, record: Record, params: Mapping[str, Any]) -> Record:
        """The changes `params` make to `record`, or `SyncroValidationError` (§1.6 order)."""
        changes = coerce(params, _SCHEDULE_FIELDS)
        if "next_run" in params:
            changes["next_run"] = _strict_date(params["next_run"])
        if "period_mode_id" in params:
            changes["period_mode_id"] = to_int(params["period_mode_id"])
        merged = record | changes
        messages = []
        if merged["frequency"] not in FREQUENCIES:
            messages.append("Frequency Must be a valid selection")
        if merged["next_run"] is None:
            messages.append("Next run can't be blank")
        if is_blank(merged["name"]):
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
    if is_blank(value):
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
        to_str,
    ),
    **dict.fromkeys(
        ("position", "user_id", "asset_type_id", "saved_asset_search_id",
         "contact_field_type_id", "contact_field_answer_id", "policy_folder_id",
         "bill_units_threshold", "syncro_backup_bill_after_licenses", "recurring_type_id"),
        to_int,
    ),
    **dict.fromkeys(
        ("taxable", "one_time_charge", "bill_nested_folders", "bill_all_units",
         "include_zero_charge", "syncro_backup_bill_all"),
        to_bool,
    ),
    "syncro_backup_bill_after_storage": to_decimal,
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


class ScheduleLineBook(Book):
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
        record = null_record(_LINE_KEYS) | copy.deepcopy(_LINE_DEFAULTS)
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
        view = view_of(record, _LINE_KEYS, self.state.tz)
        view["quantity"] = decimal_string(record["quantity"])
        view["price_retail"] = Decimal(record["retail_cents"]) / 100
        view["price_cost"] = Decimal(record["cost_cents"]) / 100
        return view

    def _validated(self, record: Record, params: Mapping[str, Any], *, creating: bool) -> Record:
        """The changes `params` make to `record`, or `SyncroValidationError` (§1.7 order)."""
        changes = coerce(params, _LINE_FIELDS) | self._money(params)
        if "product_id" in params:
            changes["product_id"] = to_int(params["product_id"])
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
        if is_blank(merged["name"]) and product is None:
            messages.append("Name can't be blank")
        if product_id is not None and product is None:
            messages.append("Product can't be found")
        if "quantity" in params:
            changes["quantity"] = to_decimal(params["quantity"])
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
                changes[f"{side}_cents"] = to_int(params[f"{side}_cents"]) or 0
            elif f"price_{side}" in params:
                changes[f"{side}_cents"] = _cents(to_money(params[f"price_{side}"]))
        return changes

    def _touch(self, schedule_id: int) -> None:
        self.state.schedules.records[schedule_id]["updated_at"] = self.state.now()


def _cents(units: Decimal) -> int:
    return int((units * 100).quantize(Decimal(1), ROUND_HALF_UP))
