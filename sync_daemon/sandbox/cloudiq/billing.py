"""The month-closing arithmetic of Cloud-iQ (assumed-shapes §3.6, §3.7): half-up cents,
proration by days, and the draft billing records of one calendar month."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from sync_daemon.sandbox.cloudiq.model import (
    BillingCycle,
    BillingRecord,
    ProvisionType,
    StatementKey,
    Subscription,
)
from sync_daemon.sandbox.cloudiq.periods import (
    midnight,
    month_bounds,
    quantity_periods,
    shift_months,
)

if TYPE_CHECKING:
    from sync_daemon.sandbox.cloudiq.state import CloudiqState

CENT = Decimal("0.01")


def to_cents(value: Decimal) -> Decimal:
    """Round half-up to cents, as every total on a billing record is."""
    return value.quantize(CENT, ROUND_HALF_UP)


def prorate(unit_price: Decimal, quantity: int, days: int, days_in_month: int) -> Decimal:
    """`unit * quantity * days / days_in_month`, rounded once, at the end."""
    return to_cents(unit_price * quantity * days / days_in_month)


class MonthlyBilling:
    """Prices one calendar month of a state's subscriptions into draft billing records.

    Monthly-billed seats are prorated by days, one record per run of equal quantity;
    annual-billed seats are charged whole in the month their term year starts; usage is one
    record per meter. Trials are free. Drafts have id 0 until `CloudiqState.close_month`.
    """

    def __init__(self, state: CloudiqState, year: int, month: int) -> None:
        self.state = state
        self.first, self.last = month_bounds(year, month)
        self.days_in_month = self.last.day
        following = self.last + timedelta(days=1)
        # Statements of a month appear early in the next one (the reference's example: the 3rd).
        self.created_at = midnight(following.replace(day=3)) + timedelta(hours=4)

    def charges(self) -> dict[StatementKey, list[BillingRecord]]:
        """Draft records per statement, in subscription order."""
        drafts: dict[StatementKey, list[BillingRecord]] = {}
        for subscription in self.state.subscriptions():
            if subscription.is_trial:
                continue
            for key, record in self._charge(subscription):
                drafts.setdefault(key, []).append(record)
        return drafts

    def _charge(self, subscription: Subscription) -> list[tuple[StatementKey, BillingRecord]]:
        if subscription.provision_type == ProvisionType.USAGE:
            return [(self._key(subscription), record) for record in self._usage(subscription)]
        if subscription.billing_cycle == BillingCycle.ANNUAL:
            # Each annual order is invoiced on a statement of its own (§3.6).
            key = self._key(subscription, subscription.order_id)
            return [(key, record) for record in self._annual(subscription)]
        return [(self._key(subscription), record) for record in self._monthly(subscription)]

    def _monthly(self, subscription: Subscription) -> list[BillingRecord]:
        first = max(self.first, subscription.start_on)
        if first > self.last:
            return []
        cost, retail = subscription.price.sales_price, subscription.sales_price
        records = []
        for start, end, quantity in quantity_periods(subscription.history, first, self.last):
            days = (end - start).days + 1
            records.append(self._record(
                subscription, (start, end), Decimal(quantity),
                (cost, prorate(cost, quantity, days, self.days_in_month)),
                (retail, prorate(retail, quantity, days, self.days_in_month)),
            ))  # fmt: skip
        return records

    def _annual(self, subscription: Subscription) -> list[BillingRecord]:
        start = subscription.start_on
        if self.first.month != start.month or self.first.year < start.year:
            return []
        term_start = shift_months(start, 12 * (self.first.year - start.year))
        quantity = subscription.quantity_on(term_start)
        if quantity == 0:
            return []
        term_end = shift_months(term_start, 12) - timedelta(days=1)
        cost, retail = subscription.price.sales_price, subscription.sales_price
        return [self._record(
            subscription, (term_start, term_end), Decimal(quantity),
            (cost, to_cents(cost * quantity)), (retail, to_cents(retail * quantity)),
        )]  # fmt: skip

    def _usage(self, subscription: Subscription) -> list[BillingRecord]:
        return [
            self._record(
                subscription, (self.first, self.last), usage.quantity,
                (usage.unit_price, to_cents(usage.unit_price * usage.quantity)),
                (usage.retail_unit_price, to_cents(usage.retail_unit_price * usage.quantity)),
                unit=usage.unit, meter=(usage.category, usage.meter),
            )
            for usage in self.state.usage(self.first.year, self.first.month)
            if usage.subscription_id == subscription.id
        ]  # fmt: skip

    def _key(self, subscription: Subscription, order_id: str | None = None) -> StatementKey:
        profile = self.state.invoice_profile(subscription.invoice_profile_id)
        return StatementKey(
            profile.organization_id, profile.id, subscription.provision_type, order_id
        )

    def _record(
        self,
        subscription: Subscription,
        period: tuple[date, date],
        quantity: Decimal,
        cost: tuple[Decimal, Decimal],
        retail: tuple[Decimal, Decimal],
        *,
        unit: str | None = None,
        meter: tuple[str, str] | None = None,
    ) -> BillingRecord:
        """A draft record; `cost` and `retail` are (unit price, total)."""
        start, end = period
        # The term around the month's end, so one subscription shows one term per statement.
        _, term_end = subscription.term_on(max(self.last, start))
        return BillingRecord(
            id=0, statement_id=0, created_at=self.created_at,
            tenant=self.state.tenant(subscription.tenant_id), product=subscription.product,
            subscription_id=subscription.id, subscription_name=subscription.name,
            publisher_subscription_id=subscription.publisher_subscription_id,
            subscription_start_on=subscription.start_on, subscription_end_on=term_end,
            start_on=start, end_on=end, quantity=quantity,
            unit=unit or subscription.product.unit, unit_price=cost[0], amount=cost[1],
            retail_unit_price=retail[0], retail_total=retail[1],
            currency=self.state.currency, provision_type=subscription.provision_type,
            billing_cycle=subscription.billing_cycle, term=subscription.term,
            meter_category=meter[0] if meter else None, meter_name=meter[1] if meter else None,
        )  # fmt: skip
