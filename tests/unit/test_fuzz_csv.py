"""Property test: any text given to `mapping import` is imported or rejected with the list of
its bad lines (`ImportRejectedError`, exit 2), never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_daemon.mapping.csvfile import ImportRejectedError, parse_import

HEADER = ("vendor,vendor_customer_id,vendor_customer,status,psa_customer_id,psa_customer,"
          "schedule_id,billing_motion,minimum,included")
cells = st.sampled_from(["", "proofpoint", "1", "-1", "x", "9" * 30, "1e3", " 2 ", "٣", "\x00",
                         '"', "\n", "\r", "\r0"]) | st.text(max_size=5)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.lists(cells, max_size=12), max_size=5), header=st.booleans())
def test_any_csv_text_is_imported_or_rejected_line_by_line(
        lines: list[list[str]], header: bool) -> None:
    text = (HEADER + "\n" if header else "") + "\n".join(",".join(line) for line in lines)
    problems: list[str] = []
    try:
        parse_import(text, "proofpoint", [], [], [])
    except ImportRejectedError as exc:
        problems = exc.problems
    assert all(problem.startswith("line ") for problem in problems)


def test_a_header_the_csv_reader_cannot_read_is_a_rejection() -> None:
    with pytest.raises(ImportRejectedError) as caught:
        parse_import('\r0,"x', "proofpoint", [], [], [])
    assert caught.value.problems[0].startswith("line 1: ")
