"""Which vendor statements a pass applies, and which it may record as applied (pure)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date

from sync_daemon.invoices.plan import CustomerKey
from sync_daemon.vendor import Charge, Statement


def split_baseline(statements: Sequence[Statement], *,
                   first_sync: bool) -> tuple[list[Statement], list[Statement]]:
    """(to apply, to record as the baseline) for this pass.

    On a vendor's first sync only the newest period's statements of each billing motion are
    billed; older ones are recorded as applied without their charges, as Billing Sync starts
    from the invoice current when it is switched on, so months billed by hand are not billed
    again.
    """
    if not first_sync:
        return list(statements), []
    # Every statement of the newest period counts: a month has a seat statement, a usage
    # statement and one per annual order.
    newest: dict[str, date] = {}
    for statement in statements:
        current = newest.get(statement.billing_motion)
        if current is None or statement.period_start > current:
            newest[statement.billing_motion] = statement.period_start
    keep = {s.id for s in statements if s.period_start == newest[s.billing_motion]}
    return ([s for s in statements if s.id in keep],
            [s for s in statements if s.id not in keep])


def completed_statements(
    statements: Sequence[Statement],
    charges: Sequence[Charge],
    *,
    mapped: Collection[CustomerKey],
    skipped: Collection[CustomerKey],
    settled: Collection[str],
) -> list[Statement]:
    """Statements whose every charge for a mapped customer has landed.

    A statement with a charge of a customer whose vendor data was unusable stays open, so the
    next pass bills it once the data is right; charges of customers that are not mapped were
    reported as unbilled and do not keep it open.
    """
    done = []
    for statement in statements:
        own = [c for c in charges if c.statement_id == statement.id]
        blocked = any((c.customer_id, c.billing_motion) in skipped for c in own) or any(
            (c.customer_id, c.billing_motion) in mapped and c.key not in settled for c in own)
        if not blocked:
            done.append(statement)
    return done
