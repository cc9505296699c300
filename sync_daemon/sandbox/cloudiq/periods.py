"""Calendar arithmetic of Cloud-iQ billing (assumed-shapes §3.6, §3.7): months, anniversary
terms and the runs of equal quantity inside a charge period."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync_daemon.sandbox.cloudiq.model import Term


def midnight(day: date) -> datetime:
    """The start of `day` in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def month_bounds(year: int, month: int) -> tuple[date, date]:
    """The first and the last day of a calendar month."""
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def shift_months(day: date, months: int) -> date:
    """`day` moved by whole months, clamped to the end of a shorter month (31 Jan + 1 → 28 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def term_bounds(start_on: date, term: Term, as_of: date) -> tuple[date, date]:
    """First and last day of the auto-renewed term of a subscription that contains `as_of`.

    Terms run from the subscription's start date (anniversary terms); before the start, the
    first term.
    """
    length = 12 if term == "P1Y" else 1
    elapsed = (as_of.year - start_on.year) * 12 + as_of.month - start_on.month
    terms = max(elapsed // length, 0)
    if terms and shift_months(start_on, terms * length) > as_of:
        terms -= 1
    return (
        shift_months(start_on, terms * length),
        shift_months(start_on, (terms + 1) * length) - timedelta(days=1),
    )


def quantity_periods(
    history: Sequence[tuple[date, int]], first: date, last: date
) -> list[tuple[date, date, int]]:
    """Split `[first, last]` into runs of equal quantity, both ends inclusive.

    `history` is `(effective from, quantity)` sorted by date; days before its first entry
    have quantity 0. Runs of quantity 0 are left out.
    """
    starts = [first, *(on for on, _ in history if first < on <= last)]
    runs: list[tuple[date, date, int]] = []
    for index, start in enumerate(starts):
        end = starts[index + 1] - timedelta(days=1) if index + 1 < len(starts) else last
        quantity = quantity_in_force(history, start)
        if runs and runs[-1][2] == quantity:
            runs[-1] = (runs[-1][0], end, quantity)
        else:
            runs.append((start, end, quantity))
    return [run for run in runs if run[2] > 0]


def quantity_in_force(history: Sequence[tuple[date, int]], day: date) -> int:
    """The quantity of `history` in force on `day`; 0 before its first entry."""
    current = 0
    for on, quantity in history:
        if on > day:
            break
        current = quantity
    return current
