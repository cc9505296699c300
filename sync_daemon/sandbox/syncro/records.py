"""What every Syncro book shares: the record type and errors, Rails-like casting of request
values, rendering for the API, and the base class of a book of records keyed by id."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sync_daemon.sandbox.syncro.state import SyncroState

Record = dict[str, Any]
Coercer = Callable[[Any], Any]

_RAILS_FALSE = {"", "0", "f", "false", "off"}


class SyncroValidationError(Exception):
    """A record failed validation; `messages` is a list, or one string for the short-circuits."""

    def __init__(self, messages: list[str] | str) -> None:
        super().__init__(messages)
        self.messages = messages


class RecordNotFoundError(LookupError):
    """An id in the path or body names nothing; the API answers an empty 404."""


# -- value casting (Rails-like: form values arrive as strings) -----------------------------


def to_bool(value: Any) -> bool:
    """Rails' boolean cast: blank, `0`, `f`, `false` and `off` are false."""
    if isinstance(value, bool):
        return value
    return value is not None and str(value).strip().lower() not in _RAILS_FALSE


def to_decimal(value: Any) -> Decimal | None:
    """A finite number, or None when the value does not read as one."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def to_int(value: Any) -> int | None:
    """An integer (decimals truncated), or None when the value does not read as a number."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    number = to_decimal(value)
    return int(number) if number is not None else None


def to_str(value: Any) -> str | None:
    """The value as text; None stays None."""
    return None if value is None else str(value)


def to_int_list(value: Any) -> list[int]:
    """One value or a list of them as integers, unreadable ones left out."""
    items = value if isinstance(value, list) else [value]
    return [n for n in (to_int(v) for v in items) if n is not None]


def to_dict(value: Any) -> dict[str, Any]:
    """A copy of a mapping; anything else is an empty dict."""
    return dict(value) if isinstance(value, Mapping) else {}


def to_money(value: Any) -> Decimal:
    """Currency units kept to the cent (Syncro stores cents); unreadable values count as 0."""
    number = to_decimal(value) or Decimal(0)
    return number.quantize(Decimal("0.01"), ROUND_HALF_UP)


def is_blank(value: Any) -> bool:
    """None or a string of whitespace (Rails' `blank?` for the values that arrive here)."""
    return value is None or (isinstance(value, str) and not value.strip())


def null_record(keys: Iterable[str]) -> Record:
    """A record with every key of a resource set to null."""
    return dict.fromkeys(keys)


def coerce(params: Mapping[str, Any], fields: Mapping[str, Coercer]) -> Record:
    """Cast the known keys of a request body; unknown keys are ignored."""
    return {key: fields[key](value) for key, value in params.items() if key in fields}


# -- rendering -------------------------------------------------------------------------------


def decimal_string(number: Decimal) -> str:
    """Render like Ruby's BigDecimal: `5` → "5.0", `2.50` → "2.5"."""
    if number == number.to_integral_value():
        return f"{int(number)}.0"
    return format(number.normalize(), "f")


def render_value(value: Any, tz: timezone) -> Any:
    """Times in the account's zone, dates as `YYYY-MM-DD`; Decimals stay exact for the JSON."""
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [render_value(item, tz) for item in value]
    if isinstance(value, dict):
        return {key: render_value(item, tz) for key, item in value.items()}
    return value


def view_of(record: Record, keys: Iterable[str], tz: timezone) -> Record:
    """The API view of `record`: exactly `keys`, in order, each rendered."""
    return {key: render_value(record.get(key), tz) for key in keys}


# -- the books -------------------------------------------------------------------------------


class Book:
    """Records of one resource keyed by id, with ids from a realistic range."""

    def __init__(self, state: SyncroState, first_id: int) -> None:
        self.state = state
        self.records: dict[int, Record] = {}
        self._next_id = first_id

    def new_id(self) -> int:
        """Take the next id."""
        self._next_id += 1
        return self._next_id - 1

    def record(self, record_id: int | None) -> Record:
        """The stored record, or `RecordNotFoundError`."""
        if record_id is None or record_id not in self.records:
            raise RecordNotFoundError(record_id)
        return self.records[record_id]

    def ids(self) -> list[int]:
        """Every id, ascending."""
        with self.state.lock:
            return sorted(self.records)

    def _stamp(self, record: Record, *, created: bool = False) -> None:
        now = self.state.now()
        record["updated_at"] = now
        if created:
            record["created_at"] = now
