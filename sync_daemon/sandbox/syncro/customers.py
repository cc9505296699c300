"""Syncro customers (syncro-api.md §4.1, assumed-shapes §1.4): the book behind `/customers`,
with its validation and the derived name fields."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sync_daemon.sandbox.syncro.records import (
    Book,
    Coercer,
    Record,
    SyncroValidationError,
    coerce,
    is_blank,
    null_record,
    render_value,
    to_bool,
    to_dict,
    to_int,
    to_str,
    view_of,
)

if TYPE_CHECKING:
    from sync_daemon.sandbox.syncro.state import SyncroState

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

_CUSTOMER_FIELDS: dict[str, Coercer] = {
    **dict.fromkeys(
        ("business_name", "firstname", "lastname", "email", "phone", "mobile", "address",
         "address_2", "city", "state", "zip", "notes", "referred_by", "notification_email",
         "invoice_cc_emails"),
        to_str,
    ),
    **dict.fromkeys(("get_sms", "opt_out", "no_email"), to_bool),
    **dict.fromkeys(("ref_customer_id", "tax_rate_id", "invoice_term_id"), to_int),
    "properties": to_dict,
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


class CustomerBook(Book):
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
        record = null_record(_CUSTOMER_KEYS) | copy.deepcopy(_CUSTOMER_DEFAULTS)
        record |= coerce(params, _CUSTOMER_FIELDS)
        self._validate(record)
        record["id"] = self.new_id()
        record["online_profile_url"] = (
            f"https://{self.state.subdomain}.syncromsp.com/my_profile/v2/customer/{record['id']}"
        )
        # Phone and mobile also become phone sub-records, digits only (syncro-api.md §4.1).
        record["phones"] = [
            self._phone(record["id"], label, record[key])
            for key, label in (("phone", "Phone"), ("mobile", "Mobile"))
            if not is_blank(record[key])
        ]
        self._derive(record)
        self._stamp(record, created=True)
        self.records[record["id"]] = record
        return record

    def update(self, customer_id: int | None, params: Mapping[str, Any]) -> Record:
        record = dict(self.record(customer_id)) | coerce(params, _CUSTOMER_FIELDS)
        self._validate(record)
        self._derive(record)
        self._stamp(record)
        self.records[record["id"]] = record
        return record

    def render(self, record: Record, *, detail: bool = False) -> Record:
        view = view_of(record, _CUSTOMER_KEYS, self.state.tz)
        if detail:
            view |= {"phones": render_value(record["phones"], self.state.tz)}
            view |= {"contracts": [], "addresses": []}
        return view

    @staticmethod
    def _validate(record: Record) -> None:
        messages = []
        if is_blank(record["business_name"]) and is_blank(record["lastname"]):
            messages.append("Lastname can't be blank")
        if not is_blank(record["email"]) and not _EMAIL.fullmatch(record["email"].strip()):
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
