"""The mapping table's pure rules: refresh from the vendor, finding and choosing, CSV in and out."""

from __future__ import annotations

import dataclasses
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_daemon.connectors.syncro import Schedule
from sync_daemon.errors import UsageError
from sync_daemon.mapping.csvfile import COLUMNS, ImportRejectedError, export_rows, parse_import
from sync_daemon.mapping.refresh import Refresh, plan_refresh
from sync_daemon.mapping.table import (
    SortKey,
    choose_schedule,
    find_customer,
    find_vendor_customer,
    mapped,
    select,
    unmapped,
)
from sync_daemon.state import VendorCustomer
from sync_daemon.state.records import VendorCustomerStatus
from tests.support.builders import (
    T0,
    T1,
    VENDOR,
    customer,
    schedule,
    source_customer,
    vendor_customer,
)

# ------------------------------------------------------------------ refresh


def refresh(rows: list[VendorCustomer], seen: list[tuple[str, str, str]]) -> Refresh:
    """`plan_refresh` at T1 with (id, name, billing motion) triples as the vendor's list."""
    return plan_refresh(VENDOR, rows, [source_customer(i, n, billing_motion=m)
                                       for i, n, m in seen], T1)


def test_a_new_vendor_customer_arrives_not_mapped() -> None:
    result = refresh([], [("c1", "Acme", "")])

    assert result == Refresh(
        upserts=(VendorCustomer(vendor=VENDOR, vendor_customer_id="c1", name="Acme",
                                status="not_mapped", first_seen_at=T1, last_seen_at=T1,
                                updated_at=result.upserts[0].updated_at),),
        removals=(), appeared=("Acme",), detached=(), returned=(), seen=(), seen_at=T1,
        vendor=VENDOR)


@pytest.mark.parametrize("status", ["mapped", "not_mapped"])
def test_a_customer_seen_again_keeps_its_status_and_takes_the_new_name(
        status: VendorCustomerStatus) -> None:
    row = vendor_customer("c1", name="Old name", status=status, minimum=2, included=1)

    result = refresh([row], [("c1", "New name", "")])

    assert result.upserts == (dataclasses.replace(row, name="New name", last_seen_at=T1),)
    assert (result.removals, result.appeared, result.detached, result.returned) == (
        (), (), (), ())


def test_a_mapped_customer_gone_from_the_vendor_is_detached() -> None:
    row = vendor_customer("c1", name="Acme")

    result = refresh([row], [])

    assert result.upserts == (dataclasses.replace(row, status="detached"),)
    assert result.upserts[0].last_seen_at == T0  # it was not seen
    assert (result.removals, result.detached) == ((), ("Acme",))


def test_a_not_mapped_customer_gone_from_the_vendor_leaves_the_table() -> None:
    row = vendor_customer("c1", name="Acme", status="not_mapped")

    result = refresh([row], [])

    assert (result.upserts, result.removals, result.detached) == ((), (row,), ())


def test_a_detached_customer_still_gone_stays_as_it_is() -> None:
    row = vendor_customer("c1", status="detached")

    assert refresh([row], []) == Refresh((), (), (), (), (), (), T1, VENDOR)


def test_a_customer_seen_again_unchanged_is_only_marked_seen() -> None:
    row = vendor_customer("c1", name="Acme")

    result = refresh([row], [("c1", "Acme", "")])

    assert (result.upserts, result.removals) == ((), ())
    assert (result.seen, result.seen_at) == ((("c1", ""),), T1)


@pytest.mark.parametrize(("psa_customer_id", "status"), [(500, "mapped"), (None, "not_mapped")])
def test_a_detached_customer_that_comes_back_is_mapped_again(
        psa_customer_id: int | None, status: VendorCustomerStatus) -> None:
    row = vendor_customer("c1", name="Acme", status="detached", psa_customer_id=psa_customer_id,
                          schedule_id=7)

    result = refresh([row], [("c1", "Acme Ltd", "")])

    assert result.upserts == (dataclasses.replace(row, name="Acme Ltd", status=status,
                                                  last_seen_at=T1),)
    assert result.returned == ("Acme Ltd",)
    assert result.upserts[0].psa_customer_id == psa_customer_id


def test_billing_motions_keep_rows_apart() -> None:
    csp = vendor_customer("c1", name="Acme", billing_motion="csp")
    nce = vendor_customer("c1", name="Acme", billing_motion="nce", status="not_mapped")

    result = refresh([csp, nce], [("c1", "Acme", "nce"), ("c1", "Acme", "azure")])

    by_motion = {r.billing_motion: r.status for r in result.upserts}
    assert by_motion == {"azure": "not_mapped"}
    assert result.seen == (("c1", "nce"),)
    assert result.removals == ()
    assert (result.appeared, result.detached) == (("Acme",), ())


def test_a_customer_gone_from_every_motion_is_detached() -> None:
    csp = vendor_customer("c1", name="Acme", billing_motion="csp")
    nce = vendor_customer("c1", name="Acme", billing_motion="nce", status="not_mapped")

    result = refresh([csp, nce], [("c2", "Bolt", "csp")])

    assert [(r.billing_motion, r.status) for r in result.upserts if r.vendor_customer_id == "c1"] \
        == [("csp", "detached")]
    assert [r.billing_motion for r in result.removals] == ["nce"]


def test_refresh_of_many_rows_at_once() -> None:
    rows = [vendor_customer("m", name="M"),
            vendor_customer("n", name="N", status="not_mapped"),
            vendor_customer("d", name="D", status="detached"),
            vendor_customer("gone-m", name="GM"),
            vendor_customer("gone-n", name="GN", status="not_mapped")]

    result = refresh(rows, [("m", "M", ""), ("n", "N", ""), ("d", "D", ""), ("new", "New", "")])

    assert {r.vendor_customer_id: r.status for r in result.upserts} == {
        "d": "mapped", "new": "not_mapped", "gone-m": "detached"}
    assert sorted(result.seen) == [("m", ""), ("n", "")]
    assert [r.vendor_customer_id for r in result.removals] == ["gone-n"]
    assert (result.appeared, result.detached, result.returned) == (("New",), ("GM",), ("D",))


# ------------------------------------------------------------------ find


CUSTOMERS = [customer(1, "Acme Dental"), customer(2, "Acme Dentistry"),
             customer(3, "Bolt Ltd"), customer(4, "bolt ltd"), customer(42, "7"),
             customer(7, "Seven Seas")]


@pytest.mark.parametrize(("text", "found"), [
    ("1", 1),
    (" 3 ", 3),
    ("acme dental", 1),
    ("ACME DENTISTRY", 2),
    ("  Seven Seas ", 7),
    ("7", 7),  # an id wins over another customer's name
    ("42", 42),
])
def test_find_customer_by_id_or_exact_name_ignoring_case(text: str, found: int) -> None:
    assert find_customer(CUSTOMERS, text).id == found


def test_an_ambiguous_name_lists_every_match_with_its_id() -> None:
    with pytest.raises(UsageError) as caught:
        find_customer(CUSTOMERS, "BOLT LTD")

    assert str(caught.value) == ("Syncro customer 'BOLT LTD' is ambiguous: "
                                 "Bolt Ltd (id 3); bolt ltd (id 4); use the id")


@pytest.mark.parametrize(("text", "message"), [
    ("acme", ("no Syncro customer 'acme'; did you mean: Acme Dental (id 1); "
              "Acme Dentistry (id 2)")),
    ("Dent", ("no Syncro customer 'Dent'; did you mean: Acme Dental (id 1); "
              "Acme Dentistry (id 2)")),
    ("Zeta", "no Syncro customer 'Zeta'"),
    ("99", "no Syncro customer '99'"),
    ("", "no Syncro customer ''"),
])
def test_an_unknown_customer_names_close_candidates(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        find_customer(CUSTOMERS, text)

    assert str(caught.value) == message


def test_close_candidates_are_capped_at_ten() -> None:
    many = [customer(i, f"Acme {i}") for i in range(1, 15)]

    with pytest.raises(UsageError) as caught:
        find_customer(many, "acme")

    assert str(caught.value).count("(id ") == 10


ROWS = [vendor_customer("100", name="Acme", billing_motion="csp"),
        vendor_customer("200", name="Bolt", billing_motion="csp"),
        vendor_customer("300", name="Acme", billing_motion="nce")]


@pytest.mark.parametrize(("text", "motion", "found"), [
    ("200", None, ("200", "csp")),
    ("bolt", None, ("200", "csp")),
    ("acme", "NCE", ("300", "nce")),
    ("100", "csp", ("100", "csp")),
])
def test_find_vendor_customer_by_id_or_name_within_a_billing_motion(
        text: str, motion: str | None, found: tuple[str, str]) -> None:
    row = find_vendor_customer(ROWS, text, motion)

    assert (row.vendor_customer_id, row.billing_motion) == found


def test_a_vendor_name_in_two_motions_is_ambiguous_and_lists_the_ids() -> None:
    with pytest.raises(UsageError, match=r"ambiguous: Acme \(id 100, billing motion csp\); "
                                         r"Acme \(id 300, billing motion nce\)"):
        find_vendor_customer(ROWS, "Acme")


def test_a_billing_motion_filter_hides_the_other_motions() -> None:
    with pytest.raises(UsageError, match="no vendor customer '200'"):
        find_vendor_customer(ROWS, "200", "nce")


def test_an_id_in_two_billing_motions_is_reported_as_ambiguous() -> None:
    rows = [vendor_customer("100", name="Acme", billing_motion="csp"),
            vendor_customer("100", name="Acme", billing_motion="nce")]

    with pytest.raises(UsageError, match="ambiguous"):
        find_vendor_customer(rows, "100")


# ------------------------------------------------------------------ choose_schedule

ACME = customer(500, "Acme")
OTHER = customer(600, "Other")


def schedules_of(*specs: tuple[int, int, bool]) -> list[Schedule]:
    """(id, customer id, paused) triples."""
    return [schedule(i, customer_id=c, paused=p, name=f"Plan {i}") for i, c, p in specs]


@pytest.mark.parametrize(("schedules", "wanted", "chosen"), [
    (schedules_of((1, 500, False)), None, 1),
    (schedules_of((1, 500, True), (2, 500, False), (3, 600, False)), None, 2),
    (schedules_of((1, 500, False), (2, 500, False)), 2, 2),
    (schedules_of((1, 500, True)), 1, 1),  # an explicit choice may be paused
])
def test_choose_schedule(schedules: list[Schedule], wanted: int | None, chosen: int) -> None:
    assert choose_schedule(ACME, schedules, wanted).id == chosen


@pytest.mark.parametrize(("schedules", "wanted", "message"), [
    (schedules_of((1, 500, False), (3, 600, False)), 3,
     "recurring invoice 3 does not belong to Acme (id 500); theirs: 1 'Plan 1'"),
    (schedules_of((1, 500, True)), 9,
     "recurring invoice 9 does not belong to Acme (id 500); theirs: 1 'Plan 1' (paused)"),
    ([], 9, "recurring invoice 9 does not belong to Acme (id 500); theirs: none"),
    ([], None, ("Acme has no active recurring invoice in Syncro; create one, then map with "
                "--schedule ID")),
    (schedules_of((1, 500, True), (2, 600, False)), None,
     "Acme has no active recurring invoice in Syncro; create one, then map with --schedule ID"),
    (schedules_of((1, 500, False), (2, 500, False), (3, 500, True)), None,
     ("Acme has several active recurring invoices: 1 'Plan 1'; 2 'Plan 2'; "
      "choose one with --schedule ID")),
])
def test_choose_schedule_refuses(schedules: list[Schedule], wanted: int | None,
                                 message: str) -> None:
    with pytest.raises(UsageError) as caught:
        choose_schedule(ACME, schedules, wanted)

    assert str(caught.value) == message


# ------------------------------------------------------------------ mapped / unmapped


@pytest.mark.parametrize("status", ["not_mapped", "mapped", "detached"])
def test_mapped_points_the_row_at_the_customer_and_schedule(
        status: VendorCustomerStatus) -> None:
    row = vendor_customer("c1", status=status)

    result = mapped(row, customer(77, "Zeta"), schedule(9, customer_id=77), minimum=5,
                    included=None)

    assert result == dataclasses.replace(row, status="mapped", psa_customer_id=77,
                                         psa_customer_name="Zeta", schedule_id=9, minimum=5,
                                         included=None)


@pytest.mark.parametrize("status", ["mapped", "not_mapped"])
def test_unmapped_clears_the_mapping(status: VendorCustomerStatus) -> None:
    row = vendor_customer("c1", status=status, minimum=3, included=1)

    assert unmapped(row) == dataclasses.replace(
        row, status="not_mapped", psa_customer_id=None, psa_customer_name=None,
        schedule_id=None, minimum=None, included=None)


def test_unmapping_a_detached_row_removes_it() -> None:
    assert unmapped(vendor_customer("c1", status="detached")) is None


# ------------------------------------------------------------------ select

LISTED = [
    vendor_customer("11", name="beta", psa_customer_name="Zulu Co"),
    vendor_customer("12", name="Alpha", status="not_mapped"),
    vendor_customer("13", name="Gamma", status="detached", psa_customer_name="acme corp"),
    vendor_customer("14", name="alpha", billing_motion="nce", psa_customer_name="Acme Inc"),
]


@pytest.mark.parametrize(("status", "search", "sort", "ids"), [
    (None, None, "vendor-customer", ["12", "14", "11", "13"]),
    ("mapped", None, "vendor-customer", ["14", "11"]),
    ("not-mapped", None, "vendor-customer", ["12"]),
    ("not_mapped", None, "vendor-customer", ["12"]),
    ("detached", None, "vendor-customer", ["13"]),
    (None, "ALPHA", "vendor-customer", ["12", "14"]),
    (None, "acme", "vendor-customer", ["14", "13"]),  # the Syncro name is searched too
    (None, "13", "vendor-customer", ["13"]),  # and the vendor id
    ("mapped", "acme", "vendor-customer", ["14"]),
    (None, "nothing", "vendor-customer", []),
    (None, None, "status", ["13", "14", "11", "12"]),  # Detached, Mapped, Not mapped
    (None, None, "psa-customer", ["13", "14", "11", "12"]),  # no Syncro customer last
])
def test_select_filters_searches_and_sorts(status: str | None, search: str | None,
                                           sort: SortKey, ids: list[str]) -> None:
    chosen = select(LISTED, status=status, search=search, sort=sort)

    assert [r.vendor_customer_id for r in chosen] == ids


# ------------------------------------------------------------------ CSV

SYNCRO_CUSTOMERS = [customer(500, "Acme Syncro"), customer(600, "Bolt Syncro")]
SYNCRO_SCHEDULES = [schedule(1, customer_id=500), schedule(2, customer_id=600),
                    schedule(3, customer_id=500, paused=True)]
TABLE = [
    vendor_customer("c1", name="Acme", psa_customer_id=500, psa_customer_name="Acme Syncro",
                    schedule_id=1, minimum=5, included=0),
    vendor_customer("c2", name="Bolt, \"the\" company\nof bolts", psa_customer_id=600,
                    psa_customer_name="Bolt Syncro", schedule_id=2),
    vendor_customer("c3", name="Café Zürich", status="not_mapped"),
    vendor_customer("c1", name="Acme", billing_motion="nce", psa_customer_id=500,
                    psa_customer_name="Acme Syncro", schedule_id=3, included=10),
]
HEADER = ",".join(COLUMNS)


def parse(text: str, rows: list[VendorCustomer] = TABLE) -> list[VendorCustomer]:
    return parse_import(text, VENDOR, rows, SYNCRO_CUSTOMERS, SYNCRO_SCHEDULES)


def test_export_writes_a_header_and_one_line_per_row() -> None:
    text = export_rows(TABLE[:1] + TABLE[2:3])

    assert text == (f"{HEADER}\r\n"
                    "proofpoint,c1,,Acme,mapped,500,Acme Syncro,1,5,0\r\n"
                    "proofpoint,c3,,Café Zürich,not-mapped,,,,,\r\n")


def test_export_then_import_gives_the_same_rows() -> None:
    assert parse(export_rows(TABLE)) == TABLE


def test_export_then_import_keeps_a_detached_row_detached() -> None:
    table = [*TABLE, vendor_customer("c9", status="detached", psa_customer_id=500,
                                     psa_customer_name="Acme Syncro", schedule_id=1)]

    assert parse(export_rows(table), table) == table


# Everything CSV treats specially, and text that is merely unusual ("\r" alone: see below).
NAME_CHARACTERS = "aZ09 ,;\"'\n\t\x00\x85\u2028éß東😀\ufeff"


@settings(max_examples=40, deadline=None, database=None)
@given(names=st.lists(st.text(NAME_CHARACTERS), min_size=1, max_size=4),
       ids=st.lists(st.text(string.ascii_letters + string.digits + "-", min_size=1),
                    min_size=4, max_size=4, unique=True),
       limits=st.lists(st.none() | st.integers(0, 10**6), min_size=8, max_size=8))
def test_any_names_and_limits_survive_the_round_trip(names: list[str], ids: list[str],
                                                     limits: list[int | None]) -> None:
    table = [vendor_customer(vid, name=name or "x", minimum=limits[2 * n],
                             included=limits[2 * n + 1])
             for n, (vid, name) in enumerate(zip(ids, names, strict=False))]

    assert parse(export_rows(table), table) == table


def test_a_name_with_a_carriage_return_survives_the_round_trip() -> None:
    table = [vendor_customer("c1", name="Acme\rDental")]

    try:
        result = parse(export_rows(table), table)
    except Exception as error:  # any failure is the bug under test
        raise AssertionError(f"the export could not be read back: {error!r}") from error
    assert result == table


def test_a_line_with_both_ids_blank_unmaps_the_customer() -> None:
    text = f"{HEADER}\nproofpoint,c1,,Acme,mapped,,,,,\n"

    assert parse(text) == [dataclasses.replace(
        TABLE[0], status="not_mapped", psa_customer_id=None, psa_customer_name=None,
        schedule_id=None, minimum=None, included=None)]


def test_names_in_the_file_are_informational_and_ids_decide() -> None:
    text = (f"{HEADER}\n"
            "proofpoint,c3,,Renamed in Excel,detached,600,Not Bolt at all,2, 4 ,\n")

    assert parse(text) == [dataclasses.replace(
        TABLE[2], status="mapped", psa_customer_id=600, psa_customer_name="Bolt Syncro",
        schedule_id=2, minimum=4, included=None)]


def test_only_the_required_columns_are_needed() -> None:
    text = "schedule_id,psa_customer_id,vendor_customer_id,vendor\n2,600,c3,proofpoint\n"

    assert parse(text) == [dataclasses.replace(
        TABLE[2], status="mapped", psa_customer_id=600, psa_customer_name="Bolt Syncro",
        schedule_id=2)]


def test_every_bad_line_is_reported_with_its_number_and_nothing_is_returned() -> None:
    rows = [vendor_customer(f"c{n}", status="not_mapped") for n in range(1, 13)]
    text = "\n".join([
        HEADER,
        "proofpoint,c1,,,,500,,1,,",          # 2: fine
        "proofpoint,zz,,,,500,,1,,",          # 3: unknown vendor customer
        "proofpoint,c3,,,,abc,,1,,",          # 4: not a whole number
        "proofpoint,c4,,,,500,,1,-1,",        # 5: negative
        "proofpoint,c5,,,,500,,,,",           # 6: a customer without a schedule
        "proofpoint,c6,,,,500,,2,,",          # 7: another customer's schedule
        "proofpoint,c1,,,,500,,1,,",          # 8: a duplicate of line 2
        "cloudiq,c8,,,,500,,1,,",             # 9: the wrong vendor
        "proofpoint,c9,,,,999,,1,,",          # 10: no such Syncro customer
        "proofpoint,c10,,,,500,,77,,",        # 11: no such schedule
        "proofpoint,c11,,,,500,,1,,2.5",      # 12: not a whole number
        "proofpoint,c12,,,,,,1,,",            # 13: a schedule without a customer
        "",
    ])

    with pytest.raises(ImportRejectedError) as caught:
        parse(text, rows)

    problems = [
        "line 3: unknown vendor customer 'zz' (run `mapping refresh` first)",
        "line 4: psa_customer_id 'abc' is not a whole number",
        "line 5: minimum -1 is negative",
        "line 6: psa_customer_id and schedule_id go together (both, or both blank)",
        "line 7: recurring invoice 2 does not belong to customer 500",
        "line 8: vendor customer 'c1' appears twice",
        "line 9: vendor 'cloudiq' is not 'proofpoint'",
        "line 10: Syncro has no customer 999",
        "line 11: recurring invoice 77 does not belong to customer 500",
        "line 12: included '2.5' is not a whole number",
        "line 13: psa_customer_id and schedule_id go together (both, or both blank)",
    ]
    assert caught.value.problems == problems
    assert str(caught.value) == "\n".join([*problems, "11 problem(s); nothing was imported"])
    assert isinstance(caught.value, UsageError)


@pytest.mark.parametrize(("header", "missing"), [
    ("vendor_customer_id,psa_customer_id,schedule_id", "vendor"),
    ("vendor,vendor_customer_id,psa_customer_id", "schedule_id"),
    ("vendor,customer,psa_customer_id", "vendor_customer_id, schedule_id"),
    ("", "vendor, vendor_customer_id, psa_customer_id, schedule_id"),
])
def test_missing_columns_are_reported_on_line_1(header: str, missing: str) -> None:
    with pytest.raises(ImportRejectedError) as caught:
        parse(f"{header}\nproofpoint,c1,500,1\n" if header else "")

    assert caught.value.problems == [f"line 1: missing column(s) {missing}"]


@pytest.mark.parametrize("before_the_bad_line", [
    "\n",
    'proofpoint,c2,,"two\nlines",mapped,600,,2,,\n',
])
def test_problems_name_the_physical_line(before_the_bad_line: str) -> None:
    text = f"{HEADER}\nproofpoint,c1,,,,500,,1,,\n{before_the_bad_line}proofpoint,zz,,,,500,,1,,\n"
    line_of_zz = text.split("\n").index("proofpoint,zz,,,,500,,1,,") + 1

    with pytest.raises(ImportRejectedError) as caught:
        parse(text)

    assert caught.value.problems == [
        f"line {line_of_zz}: unknown vendor customer 'zz' (run `mapping refresh` first)"]


def test_customers_are_checked_against_syncro() -> None:
    with pytest.raises(ImportRejectedError, match="line 2: Syncro has no customer 500"):
        parse_import(f"{HEADER}\nproofpoint,c1,,,,500,,1,,\n", VENDOR, TABLE, [],
                     SYNCRO_SCHEDULES)
