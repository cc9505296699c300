"""The safety guard: `SeatTotals.decrease_percent` and `guard_message`'s thresholds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sync_daemon.jobs import guard_message
from sync_daemon.plan import SeatTotals


def guard(before: int, after: int, zeroed: tuple[str, ...] = (), *, max_decrease: str = "30",
          max_zeroed: int = 3) -> str | None:
    return guard_message(SeatTotals(before, after, zeroed),
                         max_decrease_percent=Decimal(max_decrease),
                         max_zeroed_customers=max_zeroed)


@pytest.mark.parametrize(("before", "after", "percent"), [
    (100, 75, "25.0"),
    (100, 100, "0"),
    (100, 120, "0"),
    (0, 5, "0"),
    (0, 0, "0"),
    (3, 2, "33.3"),
    (3, 1, "66.7"),
    (1, 0, "100.0"),
    (7, 0, "100.0"),
])
def test_decrease_percent(before: int, after: int, percent: str) -> None:
    assert SeatTotals(before, after).decrease_percent == Decimal(percent)


@pytest.mark.parametrize(("before", "after", "max_decrease"), [
    (100, 70, "30"),  # exactly at the limit passes
    (100, 100, "30"),
    (100, 250, "30"),
    (0, 0, "30"),
    (0, 40, "0"),
    (100, 100, "0"),
    (100, 0, "100"),
    (1000, 755, "24.5"),
])
def test_a_decrease_up_to_the_limit_passes(before: int, after: int, max_decrease: str) -> None:
    assert guard(before, after, max_decrease=max_decrease) is None


@pytest.mark.parametrize(("before", "after", "max_decrease", "shown"), [
    (100, 69, "30", "31.0%"),
    (100, 0, "99.9", "100.0%"),
    (100, 99, "0", "1.0%"),
    (1000, 754, "24.5", "24.6%"),
])
def test_a_decrease_above_the_limit_stops(before: int, after: int, max_decrease: str,
                                          shown: str) -> None:
    message = guard(before, after, max_decrease=max_decrease)

    assert message == (f"billed seats would drop {shown} ({before} → {after}), "
                       f"more than the {max_decrease}% allowed")


@pytest.mark.parametrize(("zeroed", "max_zeroed", "stops"), [
    ((), 0, False),
    (("a",), 0, True),
    (("a", "b", "c"), 3, False),  # exactly at the limit passes
    (("a", "b", "c", "d"), 3, True),
    (("a",), 1, False),
])
def test_zeroed_customers_above_the_limit_stop(zeroed: tuple[str, ...], max_zeroed: int,
                                               stops: bool) -> None:
    # Seats barely move: only the zeroed-customers rule can stop this plan.
    message = guard(1000, 999, zeroed, max_zeroed=max_zeroed)

    if stops:
        assert message == (f"{len(zeroed)} customers would go to zero ({', '.join(zeroed)}), "
                           f"more than the {max_zeroed} allowed")
    else:
        assert message is None


def test_both_reasons_are_given_together() -> None:
    message = guard(10, 0, ("Acme → Acme Co", "Bolt → Bolt Ltd"), max_decrease="50",
                    max_zeroed=1)

    assert message == ("billed seats would drop 100.0% (10 → 0), more than the 50% allowed; "
                       "2 customers would go to zero (Acme → Acme Co, Bolt → Bolt Ltd), "
                       "more than the 1 allowed")


@pytest.mark.parametrize(("before", "after"), [(10_000, 7_996), (2_000, 1_599)])
def test_a_decrease_just_above_the_limit_stops_despite_rounding(before: int,
                                                                 after: int) -> None:
    assert (before - after) * 100 > 20 * before  # the drop really is above 20 %

    assert guard(before, after, max_decrease="20") is not None
