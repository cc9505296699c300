"""Bring the mapping table up to date with the customers a vendor reports (pure).

New vendor customers arrive as Not mapped. A Mapped customer the vendor no longer reports
becomes Detached (its lines go to 0 on the next sync); a Not mapped one simply leaves the
table. A Detached customer that comes back is Mapped again, to the same Syncro customer.
Rows are kept while the vendor still reports the customer under any billing motion.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sync_daemon.state import VendorCustomer
from sync_daemon.vendor import SourceCustomer


@dataclass(frozen=True, slots=True)
class Refresh:
    """Rows to write and rows to remove; the lists name customers for the summary.

    `seen` are the keys (vendor customer id, billing motion) of rows that only need their
    `last_seen_at` set to `seen_at`: most rows, most passes, written in one statement.
    """

    upserts: tuple[VendorCustomer, ...]
    removals: tuple[VendorCustomer, ...]
    appeared: tuple[str, ...]
    detached: tuple[str, ...]
    returned: tuple[str, ...]
    seen: tuple[tuple[str, str], ...] = ()
    seen_at: datetime | None = None
    vendor: str = ""


def plan_refresh(
    vendor: str, rows: Sequence[VendorCustomer], seen: Sequence[SourceCustomer], now: datetime
) -> Refresh:
    """The mapping-table changes that follow from the vendor's current customer list."""
    existing = {(r.vendor_customer_id, r.billing_motion): r for r in rows}
    upserts: list[VendorCustomer] = []
    appeared: list[str] = []
    returned: list[str] = []
    unchanged: list[tuple[str, str]] = []
    seen_keys = set()
    for customer in seen:
        key = (customer.id, customer.billing_motion)
        seen_keys.add(key)
        row = existing.get(key)
        if row is None:
            upserts.append(VendorCustomer(
                vendor=vendor, vendor_customer_id=customer.id,
                billing_motion=customer.billing_motion, name=customer.name,
                status="not_mapped", first_seen_at=now, last_seen_at=now))
            appeared.append(customer.name)
            continue
        status = row.status
        if status == "detached":
            status = "mapped" if row.psa_customer_id is not None else "not_mapped"
            returned.append(customer.name)
        if status == row.status and customer.name == row.name:
            unchanged.append(key)
            continue
        upserts.append(dataclasses.replace(row, name=customer.name, status=status,
                                           last_seen_at=now))
    removals: list[VendorCustomer] = []
    detached: list[str] = []
    # A customer billed under several motions (Cloud-iQ) is gone only when it is gone from
    # all of them: a motion with no statement this month is not a departure.
    seen_ids = {customer.id for customer in seen}
    for key, row in existing.items():
        if key in seen_keys or row.vendor_customer_id in seen_ids:
            continue
        if row.status == "mapped":
            upserts.append(dataclasses.replace(row, status="detached"))
            detached.append(row.name)
        elif row.status == "not_mapped":
            removals.append(row)
    return Refresh(tuple(upserts), tuple(removals), tuple(appeared), tuple(detached),
                   tuple(returned), tuple(unchanged), now, vendor)
