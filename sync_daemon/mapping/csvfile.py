"""`mapping export` / `mapping import`: the mapping table as CSV for bulk work.

Import checks every row against the table and Syncro before anything changes; one bad row
means nothing is imported and every problem is reported with its line number.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence

from sync_daemon.connectors.syncro import Customer, Schedule
from sync_daemon.errors import UsageError
from sync_daemon.state import VendorCustomer

COLUMNS = ("vendor", "vendor_customer_id", "billing_motion", "vendor_customer", "status",
           "psa_customer_id", "psa_customer", "schedule_id", "minimum", "included")
REQUIRED = ("vendor", "vendor_customer_id", "psa_customer_id", "schedule_id")


class ImportRejectedError(UsageError):
    """The file has problems; the message lists each with its line number."""

    def __init__(self, problems: Sequence[str]) -> None:
        summary = f"{len(problems)} problem(s); nothing was imported"
        super().__init__("\n".join([*problems, summary]))
        self.problems = list(problems)


def export_rows(rows: Sequence[VendorCustomer]) -> str:
    """The rows as CSV text with a header line."""
    out = io.StringIO()
    # RFC 4180 line ends: a lone CR inside a name is then quoted, not taken for a line end.
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([r.vendor, r.vendor_customer_id, r.billing_motion, r.name,
                         r.status.replace("_", "-"), r.psa_customer_id or "",
                         r.psa_customer_name or "", r.schedule_id or "",
                         "" if r.minimum is None else r.minimum,
                         "" if r.included is None else r.included])
    return out.getvalue()


def parse_import(
    text: str,
    vendor: str,
    rows: Sequence[VendorCustomer],
    customers: Sequence[Customer],
    schedules: Sequence[Schedule],
) -> list[VendorCustomer]:
    """The mapping rows the file asks for; `ImportRejectedError` when any line is wrong.

    A line with a Syncro customer maps that vendor customer; a line with both ids blank unmaps
    it. Names in the file are informational: ids decide.
    """
    # newline="": the csv module reads line ends itself (a lone "\r" included).
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames or []
    except csv.Error as exc:
        raise ImportRejectedError([f"line 1: unreadable CSV: {exc}"]) from None
    missing = [c for c in REQUIRED if c not in fieldnames]
    if missing:
        raise ImportRejectedError([f"line 1: missing column(s) {', '.join(missing)}"])
    existing = {(r.vendor_customer_id, r.billing_motion): r for r in rows}
    by_id = {c.id: c for c in customers}
    schedule_by_id = {s.id: s for s in schedules}
    problems: list[str] = []
    result: list[VendorCustomer] = []
    seen: set[tuple[str, str]] = set()
    lines = iter(reader)
    while True:
        try:
            line = next(lines)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(f"line {reader.line_num}: unreadable CSV: {exc}")
            break
        # The line where the record started: quoted fields may span several lines.
        where = f"line {reader.line_num - _extra_lines(line)}"
        try:
            row = _row(line, vendor=vendor, existing=existing, customers=by_id,
                       schedules=schedule_by_id, seen=seen)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        result.append(row)
    if problems:
        raise ImportRejectedError(problems)
    return result


def _row(
    line: dict[str, str | None],
    *,
    vendor: str,
    existing: dict[tuple[str, str], VendorCustomer],
    customers: dict[int, Customer],
    schedules: dict[int, Schedule],
    seen: set[tuple[str, str]],
) -> VendorCustomer:
    def cell(name: str) -> str:
        return (line.get(name) or "").strip()

    if cell("vendor") != vendor:
        raise ValueError(f"vendor {cell('vendor')!r} is not {vendor!r}")
    key = (cell("vendor_customer_id"), cell("billing_motion"))
    if key in seen:
        raise ValueError(f"vendor customer {key[0]!r} appears twice")
    seen.add(key)
    row = existing.get(key)
    if row is None:
        raise ValueError(f"unknown vendor customer {key[0]!r} (run `mapping refresh` first)")
    customer_id = _int(cell("psa_customer_id"), "psa_customer_id")
    schedule_id = _int(cell("schedule_id"), "schedule_id")
    minimum = _int(cell("minimum"), "minimum") if "minimum" in line else None
    included = _int(cell("included"), "included") if "included" in line else None
    unchanged = (customer_id, schedule_id) == (row.psa_customer_id, row.schedule_id)
    if unchanged and row.status == "detached":
        # Re-importing an export must not revive a customer the vendor no longer reports.
        return dataclasses.replace(row, minimum=minimum, included=included)
    if customer_id is None and schedule_id is None:
        return dataclasses.replace(row, status="not_mapped", psa_customer_id=None,
                                   psa_customer_name=None, schedule_id=None, minimum=None,
                                   included=None)
    if customer_id is None or schedule_id is None:
        raise ValueError("psa_customer_id and schedule_id go together (both, or both blank)")
    customer = customers.get(customer_id)
    if customer is None:
        raise ValueError(f"Syncro has no customer {customer_id}")
    schedule = schedules.get(schedule_id)
    if schedule is None or schedule.customer_id != customer_id:
        raise ValueError(f"recurring invoice {schedule_id} does not belong to customer "
                         f"{customer_id}")
    return dataclasses.replace(row, status="mapped", psa_customer_id=customer.id,
                               psa_customer_name=customer.display_name, schedule_id=schedule_id,
                               minimum=minimum, included=included)


def _extra_lines(line: dict[str, str | None]) -> int:
    """Line breaks inside the record's quoted fields."""
    return sum((value or "").count("\n") for value in line.values() if isinstance(value, str))


def _int(text: str, column: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{column} {value} is negative")
    return value
