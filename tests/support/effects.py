"""What a sync's effects in Syncro should look like, whatever failed on the way.

`billing_state` reduces a Syncro sandbox to the facts a customer is billed by (no ids), so a
run that met faults or crashes can be compared with a run that met none; `audit_changes` does
the same for the audit log. `audit_problems` checks the audit log and the state database
against what Syncro holds: every line and product the daemon owns exists and was created
once, its last audited and recorded quantity and prices are Syncro's, no change is recorded
twice, every one-time charge has one settled intent, nothing is left pending.
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal
from typing import Any

from sync_daemon.sandbox import SyncroState
from sync_daemon.state import StateStore

BillingState = tuple[tuple[Any, ...], ...]
AuditCounts = Counter[tuple[str | None, ...]]
CREATED = ("line.created", "line.adopted", "charge.added")


def billing_state(state: SyncroState, *, skip_product_ids: frozenset[int] = frozenset()
                  ) -> dict[str, BillingState]:
    """Products (name, cost, retail, disabled) and lines (schedule, product name, line name,
    quantity, retail, cost, one-time), sorted, ids left out."""
    with state.lock:
        products = state.products.all()
        lines = state.lines.all()
    names = {int(p["id"]): str(p["name"]) for p in products}
    return {
        "products": tuple(sorted(
            (str(p["name"]), Decimal(str(p["price_cost"])), Decimal(str(p["price_retail"])),
             bool(p["disabled"]))
            for p in products if int(p["id"]) not in skip_product_ids)),
        "lines": tuple(sorted(
            (int(v["schedule_id"]), names.get(v["product_id"]), v["name"],
             Decimal(str(v["quantity"])), Decimal(v["retail_cents"]) / 100,
             Decimal(v["cost_cents"]) / 100, bool(v["one_time_charge"]))
            for v in lines if v["product_id"] not in skip_product_ids)),
    }


def duplicates(state: SyncroState) -> list[str]:
    """Products with the same name, and schedules with two lines of one name: never right here."""
    with state.lock:
        products = Counter(str(p["name"]) for p in state.products.all())
        lines = Counter((int(v["schedule_id"]), v["name"]) for v in state.lines.all())
    return ([f"product {n} {c} times" for n, c in products.items() if c > 1]
            + [f"schedule {s} line {n} {c} times" for (s, n), c in lines.items() if c > 1])


def audit_changes(state_url: str, vendor: str) -> AuditCounts:
    """The audit log's changes, counted: (action, customer, field, before, after), without
    targets, runs and reasons, so a world that crashed compares with one that did not. An
    adoption counts as the create it stands for after a crash (a product by its name only)."""
    with StateStore.open(state_url) as store, store.transaction() as tx:
        audit = tx.list_audit(limit=100_000, vendor=vendor)
    changes: AuditCounts = Counter()
    for entry in audit:
        action, after = entry.action, entry.after
        if action in ("product.created", "product.adopted"):
            action, after = "product.owned", (after or "").split(" ", 1)[0]
        elif action == "line.adopted":
            action = "line.created"
        changes[(action, entry.customer, entry.field, entry.before, after)] += 1
    return changes


def audit_problems(state: SyncroState, state_url: str, vendor: str) -> list[str]:
    """Where the audit log or the state database disagrees with Syncro (empty: they agree)."""
    problems: list[str] = []
    with state.lock:
        lines = {int(v["id"]): v for v in state.lines.all()}
        products = {int(p["id"]): p for p in state.products.all()}
    with StateStore.open(state_url) as store, store.transaction() as tx:
        audit = list(reversed(tx.list_audit(limit=100_000, vendor=vendor)))  # oldest first
        owned_lines = tx.list_managed_lines(vendor=vendor)
        owned_products = tx.list_managed_products(vendor)
        pending = tx.list_pending_intents()
        settled_ids = {i.result_id for i in _settled(tx, audit)}
    problems += [f"intent {i.key} still pending" for i in pending]
    problems += _repeated(audit)
    created = Counter(e.target for e in audit if e.action in CREATED)
    problems += [f"{t} created {n} times in the audit" for t, n in created.items() if n > 1]
    deleted = {e.target for e in audit if e.action == "line.deleted"}
    for target in created:
        line_id = int(target.removeprefix("line:"))
        if line_id not in lines and target not in deleted:
            problems.append(f"{target} is in the audit but not in Syncro, and was not deleted")
    for line in owned_lines:
        view = lines.get(line.syncro_line_id)
        if view is None:
            problems.append(f"owned line {line.syncro_line_id} is not in Syncro")
            continue
        quantity = Decimal(str(view["quantity"]))
        if quantity != line.last_quantity:
            problems.append(f"line {line.syncro_line_id}: Syncro {quantity}, "
                            f"state {line.last_quantity}")
        audited = _last_quantity(audit, f"line:{line.syncro_line_id}")
        if audited != quantity:
            problems.append(f"line {line.syncro_line_id}: Syncro {quantity}, audit {audited}")
    problems += _unowned(lines, owned_products, owned_lines, created, settled_ids)
    problems += _product_problems(products, owned_products, audit)
    return problems


def _unowned(lines: dict[int, Any], owned_products: list[Any], owned_lines: list[Any],
             created: Counter[str], settled_ids: set[int | None]) -> list[str]:
    """Lines of the daemon's products that it does not own, or that no audit entry made."""
    problems = []
    owned_ids = {p.syncro_product_id for p in owned_products}
    owned_line_ids = {line.syncro_line_id for line in owned_lines}
    for line_id, view in lines.items():
        if view["product_id"] not in owned_ids:
            continue
        if view["one_time_charge"]:
            if line_id not in settled_ids:
                problems.append(f"charge line {line_id} has no settled intent")
        elif line_id not in owned_line_ids:
            problems.append(f"line {line_id} of a managed product is not owned")
        if f"line:{line_id}" not in created:
            problems.append(f"line {line_id} of a managed product has no audit entry")
    return problems


def _repeated(audit: list[Any]) -> list[str]:
    """A change recorded twice: one target's field set from and to the same values by two
    entries in a row, or a line deleted twice."""
    problems = []
    last: dict[tuple[str, str | None], tuple[str, str | None, str | None]] = {}
    for entry in audit:
        seen = (entry.action, entry.before, entry.after)
        if last.get((entry.target, entry.field)) == seen and entry.action not in CREATED:
            problems.append(f"{entry.target} {entry.field or entry.action}: "
                            f"{entry.before} → {entry.after} recorded twice")
        last[(entry.target, entry.field)] = seen
    return problems


def _product_problems(products: dict[int, Any], owned_products: list[Any],
                      audit: list[Any]) -> list[str]:
    """Owned products without an audit entry, or whose audited or recorded prices are not
    Syncro's."""
    problems = []
    for product in owned_products:
        record = products.get(product.syncro_product_id)
        if record is None:
            continue
        target = f"product:{product.syncro_product_id}"
        if not any(e.target == target and e.action in ("product.created", "product.adopted")
                   for e in audit):
            problems.append(f"{target} owned without an audit entry")
        for name, last_recorded in (("retail", product.last_price_retail),
                                    ("cost", product.last_price_cost)):
            held = Decimal(str(record[f"price_{name}"]))
            audited = _last_price(audit, target, held, name)
            if audited is not None and audited != held:
                problems.append(f"{target}: Syncro {name} {held}, audit {audited}")
            if last_recorded is not None and last_recorded != held:
                problems.append(f"{target}: Syncro {name} {held}, state {last_recorded}")
    return problems


def _settled(tx: Any, audit: list[Any]) -> list[Any]:
    keys = [m.group(1) for e in audit if e.action == "charge.added"
            and (m := re.search(r"\[(\S+)\]$", e.reason)) is not None]
    intents = [tx.get_intent(key) for key in keys]
    return [i for i in intents if i is not None and i.status == "settled"]


def _last_quantity(audit: list[Any], target: str) -> Decimal | None:
    found: Decimal | None = None
    for entry in audit:
        if entry.target != target:
            continue
        if entry.action in CREATED and entry.after:
            found = Decimal(entry.after.split()[1 if entry.action != "charge.added" else 0])
        elif entry.action == "line.quantity_set" and entry.after is not None:
            found = Decimal(entry.after)
    return found


def _last_price(audit: list[Any], target: str, current: Decimal,
                name: str = "retail") -> Decimal | None:
    """The product's `name` price (retail or cost) as the audit log last recorded it."""
    found: Decimal | None = None
    for entry in audit:
        if entry.target != target:
            continue
        if entry.action == "product.created" and entry.after:
            # "<name> cost <cost> retail <retail>"
            words = entry.after.split()
            found = Decimal(words[words.index(name) + 1])
        elif entry.action == "product.price_set" and entry.field == f"price_{name}":
            found = Decimal(str(entry.after))
        elif entry.action == "product.adopted":
            found = current
    return found
