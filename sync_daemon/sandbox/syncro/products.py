"""Syncro products (syncro-api.md §4.2, assumed-shapes §1.5): the book behind `/products`,
with SKUs per vendor and categories."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sync_daemon.sandbox.syncro.records import (
    Book,
    Coercer,
    Record,
    RecordNotFoundError,
    SyncroValidationError,
    coerce,
    is_blank,
    null_record,
    to_bool,
    to_decimal,
    to_int,
    to_int_list,
    to_money,
    to_str,
    view_of,
)

if TYPE_CHECKING:
    from sync_daemon.sandbox.syncro.state import SyncroState

_PRODUCT_FIELDS: dict[str, Coercer] = {
    **dict.fromkeys(
        ("name", "description", "condition", "warranty", "notes", "physical_location",
         "upc_code", "product_category"),
        to_str,
    ),
    **dict.fromkeys(("price_cost", "price_retail", "price_wholesale"), to_money),
    **dict.fromkeys(("maintain_stock", "disabled", "taxable", "serialized"), to_bool),
    **dict.fromkeys(
        ("quantity", "sort_order", "reorder_at", "desired_stock_level", "warranty_template_id",
         "qb_item_id", "tax_rate_id"),
        to_int,
    ),
    "discount_percent": lambda v: to_decimal(v) or Decimal(0),
    "vendor_ids": to_int_list,
    "category_ids": to_int_list,
}  # fmt: skip
_PRODUCT_KEYS = (
    "id", "price_cost", "price_retail", "condition", "description", "maintain_stock", "name",
    "quantity", "warranty", "sort_order", "reorder_at", "disabled", "taxable",
    "product_category", "category_path", "upc_code", "discount_percent", "warranty_template_id",
    "qb_item_id", "desired_stock_level", "price_wholesale", "notes", "tax_rate_id",
    "physical_location", "serialized", "vendor_ids", "long_description", "location_quantities",
    "photos", "product_skus",
)  # fmt: skip
_PRODUCT_DEFAULTS: Record = {
    "price_cost": Decimal(0), "price_retail": Decimal(0), "price_wholesale": Decimal(0),
    "discount_percent": Decimal(0), "maintain_stock": False, "disabled": False, "taxable": True,
    "serialized": False, "quantity": 0, "vendor_ids": [], "category_ids": [],
    "location_quantities": [], "photos": [], "product_skus": [],
}  # fmt: skip


class ProductBook(Book):
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
        record = null_record(_PRODUCT_KEYS) | copy.deepcopy(_PRODUCT_DEFAULTS)
        record |= coerce(params, _PRODUCT_FIELDS)
        self._apply(record, params)
        record["id"] = self.new_id()
        self.records[record["id"]] = record
        return record

    def update(self, product_id: int | None, params: Mapping[str, Any]) -> Record:
        record = copy.deepcopy(self.record(product_id)) | coerce(params, _PRODUCT_FIELDS)
        # PUT applies defaults for this omitted boolean (assumed-shapes §1.5).
        record["maintain_stock"] = to_bool(params.get("maintain_stock", False))
        self._apply(record, params)
        self.records[record["id"]] = record
        return record

    def render(self, record: Record) -> Record:
        view = view_of(record, _PRODUCT_KEYS, self.state.tz)  # prices go out as JSON numbers (§6)
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
            if is_blank(record[key])
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
        return to_int(entry.get("vendor_id")) not in self.state.vendors

    def _apply_sku(self, record: Record, entry: Any) -> None:
        """`product_skus_attributes` semantics of assumed-shapes §1.5."""
        if not isinstance(entry, Mapping):
            return
        if "id" not in entry:
            # An entry without id always adds a row, even a duplicate (assumed-shapes §1.5).
            vendor_id = to_int(entry.get("vendor_id"))
            record["product_skus"].append(
                {"id": self._sku_ids, "vendor_id": vendor_id, "sku": to_str(entry.get("value"))}
            )
            self._sku_ids += 1
            if vendor_id not in record["vendor_ids"]:
                record["vendor_ids"].append(vendor_id)
            return
        sku_id = to_int(entry["id"])
        row = next((s for s in record["product_skus"] if s["id"] == sku_id), None)
        if row is None:
            raise RecordNotFoundError(sku_id)  # Rails nested attributes: unknown id → 404
        if to_bool(entry.get("_destroy")):
            record["product_skus"].remove(row)
            return
        if "value" in entry:
            row["sku"] = to_str(entry["value"])
        if "vendor_id" in entry:
            row["vendor_id"] = to_int(entry["vendor_id"])
