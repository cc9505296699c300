"""Syncro invoices and their line items (syncro-api.md §4.5, assumed-shapes §1.8): the book
behind `/invoices`, with totals as decimal strings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
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

_INVOICE_KEYS = (
    "id", "customer_id", "customer_business_then_name", "number", "name", "date", "due_date",
    "created_at", "updated_at", "subtotal", "total", "tax", "verified_paid", "tech_marked_paid",
    "ticket_id", "pdf_url", "is_paid", "location_id", "po_number", "contact_id", "note",
    "hardwarecost", "user_id", "external_id", "schedule_id", "qbsdk_external_id", "xero_id",
    "is_recurring", "amount_paid", "balance_due",
)  # fmt: skip
_INVOICE_FIELDS: dict[str, Coercer] = {
    **dict.fromkeys(("name", "po_number", "note"), to_str),
    **dict.fromkeys(("ticket_id", "location_id", "contact_id"), to_int),
}
_INVOICE_LINE_KEYS = (
    "id", "created_at", "updated_at", "invoice_id", "item", "name", "cost", "price", "quantity",
    "product_id", "taxable", "discount_percent", "position", "invoice_bundle_id",
    "discount_dollars",
)  # fmt: skip
_INVOICE_LINE_DECIMALS = ("cost", "price", "quantity", "discount_percent", "discount_dollars")


class InvoiceBook(Book):
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
        customer_id = to_int(params.get("customer_id"))
        if customer_id not in self.state.customers.records:
            raise SyncroValidationError(["Customer can't be blank"])
        today = self.state.now().date()
        invoice_date = _lenient_date(params.get("date")) or today
        record = null_record(_INVOICE_KEYS) | coerce(params, _INVOICE_FIELDS)
        record |= {
            "id": self.new_id(),
            "customer_id": customer_id,
            "number": to_str(params.get("number")) or self._next_number(),
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
        line: Record = null_record(_INVOICE_LINE_KEYS) | {
            "invoice_id": invoice_id,
            "item": to_str(params.get("item")),
            "name": to_str(params.get("name")),
            "product_id": to_int(params.get("product_id")),
            "quantity": _invoice_quantity(params.get("quantity")),
            "cost": to_money(params.get("cost")),
            "price": to_money(params.get("price")),
            "taxable": to_bool(params.get("taxable", True)),
            "discount_percent": to_decimal(params.get("line_discount_percent")) or Decimal(0),
            "discount_dollars": to_money(params.get("discount_dollars")),
        }
        if product is not None:
            # A resolved product overrides cost, price and taxable (syncro-api.md §4.5).
            line |= {
                "product_id": product["id"],
                "cost": product["price_cost"],
                "price": product["price_retail"],
                "taxable": product["taxable"] and line["taxable"],
            }
            if is_blank(line["item"]) and is_blank(line["name"]):
                line |= {"item": product["name"], "name": product["description"]}
        if is_blank(line["item"]):
            line["item"] = line["name"]
        if is_blank(line["item"]):
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
        view = view_of(record, _INVOICE_KEYS, self.state.tz)
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
            return view | {"amount_paid": paid, "balance_due": balance}
        return view | {
            "amount_paid": decimal_string(paid),
            "balance_due": decimal_string(balance),
            "line_items": [self.render_line(ln) for ln in lines],
            "payments": [],
            "customer": self.state.customers.render(customer),
        }

    def render_line(self, line: Record) -> Record:
        view = view_of(line, _INVOICE_LINE_KEYS, self.state.tz)
        return view | {key: decimal_string(line[key]) for key in _INVOICE_LINE_DECIMALS}

    def _resolve_product(self, params: Mapping[str, Any]) -> Record | None:
        products = self.state.products.records
        by_id = products.get(to_int(params.get("product_id")) or 0)
        upc = to_str(params.get("upc_code"))
        item = (to_str(params.get("item")) or "").strip().lower()
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
    return Decimal(1) if is_blank(value) else to_decimal(value) or Decimal(0)


def _line_total(line: Record) -> Decimal:
    gross = line["price"] * line["quantity"] * (1 - line["discount_percent"] / 100)
    return _round_cents(gross - line["discount_dollars"])


def _round_cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), ROUND_HALF_UP)


def _lenient_date(value: Any) -> date | None:
    """Invoice dates take a date or a timestamp; unreadable values fall back to the default."""
    text = to_str(value) or ""
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        return None
