"""Billing Sync's product rules as a pure function.

One Syncro product per SKU named `<prefix><SKU>`. The daemon follows the product by id, so the
MSP may rename it; after creation only unit cost and retail are updated; a product deleted in
Syncro is created again; a product gone from the vendor is never removed; `disabled` is never
sent, so a product the MSP disabled stays disabled. A hand-made product with exactly the
daemon's name is adopted rather than duplicated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sync_daemon.connectors.syncro import Product
from sync_daemon.plan import AdoptProduct, CreateProduct, ProductChange, UpdateProductPrice
from sync_daemon.state import ManagedProduct
from sync_daemon.vendor import SourceProduct


@dataclass(frozen=True, slots=True)
class ProductRules:
    """`[products]` settings the planner needs."""

    prefix: str = "PC_"
    new_products_taxable: bool = True

    def name_of(self, sku: str) -> str:
        """The Syncro product name of a SKU."""
        return f"{self.prefix}{sku}"


@dataclass(frozen=True, slots=True)
class ProductTarget:
    """Where lines of a SKU point after the product changes: id (None if new) and list prices."""

    sku: str
    product_id: int | None
    name: str
    cost: Decimal
    retail: Decimal
    taxable: bool


def plan_products(
    wanted: Sequence[SourceProduct],
    managed: Mapping[str, ManagedProduct],
    syncro_products: Sequence[Product],
    rules: ProductRules,
    *,
    owned_elsewhere: frozenset[int] = frozenset(),
) -> tuple[list[ProductChange], dict[str, ProductTarget]]:
    """Changes that make Syncro hold one current product per wanted SKU.

    Args:
        wanted: the vendor's SKUs with their prices.
        managed: the daemon's products of this vendor, by SKU.
        syncro_products: every product in Syncro (disabled ones included).
        rules: naming and taxability.
        owned_elsewhere: products another vendor manages; never adopted here.

    Returns:
        The changes, and for each wanted SKU the product its lines should use.
    """
    by_id = {p.id: p for p in syncro_products}
    by_name: dict[str, list[Product]] = {}
    for product in syncro_products:
        by_name.setdefault(product.name, []).append(product)
    owned_ids = {m.syncro_product_id for m in managed.values()} | owned_elsewhere

    changes: list[ProductChange] = []
    targets: dict[str, ProductTarget] = {}
    for item in sorted(wanted, key=lambda w: w.sku):
        name = rules.name_of(item.sku)
        record = managed.get(item.sku)
        current = by_id.get(record.syncro_product_id) if record else None
        if current is None:
            # Several hand-made twins: adopt the oldest, never add one more.
            candidates = sorted((p for p in by_name.get(name, []) if p.id not in owned_ids),
                                key=lambda p: p.id)
            current = candidates[0] if candidates else None
            if current is not None:
                changes.append(AdoptProduct(
                    sku=item.sku, product_id=current.id, name=current.name,
                    reason=f"a product named {name} already exists in Syncro"))
        if current is None:
            reason = (f"product {record.syncro_product_id} was deleted in Syncro; recreated"
                      if record else "new SKU")
            changes.append(CreateProduct(
                sku=item.sku, name=name, description=item.name, cost=item.cost,
                retail=item.retail, taxable=rules.new_products_taxable, reason=reason))
            targets[item.sku] = ProductTarget(item.sku, None, name, item.cost, item.retail,
                                              rules.new_products_taxable)
            continue
        if (current.price_cost, current.price_retail) != (item.cost, item.retail):
            changes.append(UpdateProductPrice(
                sku=item.sku, product_id=current.id, name=current.name,
                cost_before=current.price_cost, cost_after=item.cost,
                retail_before=current.price_retail, retail_after=item.retail,
                reason="Syncro's price differs from the vendor's price list"))
        # A product whose taxable flag Syncro sends as null bills new lines as configured.
        taxable = rules.new_products_taxable if current.taxable is None else current.taxable
        targets[item.sku] = ProductTarget(item.sku, current.id, current.name, item.cost,
                                          item.retail, taxable)
    return changes, targets
