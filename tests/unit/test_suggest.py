"""`suggest`, `score`, `normalise` and `name_similarity`: which Syncro customer a vendor's is."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_daemon.connectors.syncro import Customer
from sync_daemon.mapping.suggest import (
    HIGH,
    Suggestion,
    email_domain,
    name_similarity,
    normalise,
    score,
    suggest,
)
from sync_daemon.vendor import SourceCustomer
from tests.support.builders import customer, source_customer

# ------------------------------------------------------------------ normalise, similarity


@pytest.mark.parametrize(("name", "normalised"), [
    ("Acme, Inc.", "acme"),
    ("ACME INCORPORATED", "acme"),
    ("The Acme Company", "acme"),
    ("Smith & Jones LLC", "smith jones"),
    ("Smith and Jones", "smith jones"),
    ("Smith&Jones", "smith jones"),
    ("Café Zürich GmbH", "cafe zurich"),
    ("ÅNGSTRÖM  Pty. Ltd.", "angstrom"),
    ("Crème-Brûlée S.A.", "creme brulee s a"),
    ("  Bolt   Co. ", "bolt"),
    ("4Front (UK) plc", "4front uk"),
    ("", ""),
    ("Inc.", ""),
    ("!!!", ""),
])
def test_normalise(name: str, normalised: str) -> None:
    assert normalise(name) == normalised


@pytest.mark.parametrize(("left", "right", "at_least", "below"), [
    ("Acme, Inc.", "ACME Inc", 1.0, 1.01),
    ("Smith & Jones LLC", "Smith and Jones", 1.0, 1.01),
    ("Café Zürich GmbH", "Cafe Zurich", 1.0, 1.01),
    ("The Acme Company", "Acme", 1.0, 1.01),
    ("Northwind", "Northwinds", HIGH, 1.0),
    ("O'Brien Law, P.C.", "OBrien Law", HIGH, 1.0),
    ("Acme Dental", "Acme Dental Care", 0.7, HIGH),  # contained, but not the same firm
    ("Acme Holdings", "Acme Services", 0.5, 0.7),
    ("Acme Dental", "Zenith Plumbing", 0.0, 0.5),
    ("", "Acme", 0.0, 0.001),
    ("Acme", "", 0.0, 0.001),
    ("Inc.", "Ltd.", 0.0, 0.001),  # nothing left to compare
])
def test_name_similarity(left: str, right: str, at_least: float, below: float) -> None:
    assert at_least <= name_similarity(left, right) < below


@pytest.mark.parametrize("name", [
    "東京商事株式会社",
    "Ελληνική Εταιρεία",
    "\u0420\u043e\u0433\u0430 \u0438 \u043a\u043e\u043f\u044b\u0442\u0430",  # Roga i kopyta
])
def test_identical_non_latin_names_are_the_same_firm(name: str) -> None:
    assert name_similarity(name, name) == 1.0


def test_sharp_s_folds_to_ss() -> None:
    assert normalise("Großhandel Müller GmbH") == normalise("GROSSHANDEL MÜLLER")


@pytest.mark.parametrize(("email", "domain"), [
    ("billing@acme.example", "acme.example"),
    ("Billing@ACME.Example ", "acme.example"),
    ("odd@name@acme.example", "acme.example"),
    ("no-at-sign", None),
    ("trailing@", None),
    ("", None),
    (None, None),
])
def test_email_domain(email: str | None, domain: str | None) -> None:
    assert email_domain(email) == domain


# ------------------------------------------------------------------ score


@pytest.mark.parametrize(("vendor", "syncro", "points", "first_reason"), [
    (source_customer("v", "Zeta Holdings", domains=["zeta.example"]),
     customer(1, "ZH Partners", email="billing@zeta.example"), 0.95,
     "same e-mail domain zeta.example"),
    (source_customer("v", "Zeta Holdings", domains=["ZETA.example"]),
     customer(1, "Zeta Holdings Ltd", email="Ann@Zeta.Example"), 1.0,
     "same e-mail domain zeta.example"),
    (source_customer("v", "", domains=["zeta.example"]),
     customer(1, "Zeta", email="a@zeta.example"), 0.95, "same e-mail domain zeta.example"),
    (source_customer("v", "Zeta Holdings", domains=["zeta.com"]),
     customer(1, "ZH Partners", email="billing@zeta.co.uk"), 0.85,
     "e-mail domain zeta.co.uk matches by name"),
    (source_customer("v", "Acme Dental"), customer(1, "Acme Dental Care", email="x@acme.com"),
     0.833, "name 83% similar"),
])
def test_score_weighs_the_email_domain_over_the_name(
        vendor: SourceCustomer, syncro: Customer, points: float, first_reason: str) -> None:
    value, reasons = score(vendor, syncro)

    assert value == points
    assert reasons[0] == first_reason


def test_score_of_unrelated_customers_gives_no_reasons() -> None:
    assert score(source_customer("v", "Inc."), customer(1, "Zenith")) == (0.0, ())


# ------------------------------------------------------------------ suggest


def only(found: list[Suggestion]) -> Suggestion:
    assert len(found) == 1
    return found[0]


def test_an_exact_domain_match_is_high() -> None:
    vendor = source_customer("v1", "Zeta Holdings", domains=["zeta.example"],
                             billing_motion="nce")
    found = only(suggest([vendor], [customer(1, "Unrelated Name Co"),
                                    customer(2, "ZH Partners", email="ap@zeta.example")]))

    assert (found.psa_customer_id, found.confidence, found.runner_up) == (2, "high", None)
    assert found.unambiguous_high
    assert found.billing_motion == "nce"
    assert found.reasons[0] == "same e-mail domain zeta.example"


@pytest.mark.parametrize(("vendor_name", "syncro_name"), [
    ("Acme, Inc.", "ACME Inc"),
    ("Smith & Jones LLC", "Smith and Jones"),
    ("The Acme Company", "Acme"),
    ("Café Zürich GmbH", "Cafe Zurich"),
    ("O'Brien Law, P.C.", "OBrien Law"),
    ("Northwind", "Northwinds"),
])
def test_similar_names_are_high(vendor_name: str, syncro_name: str) -> None:
    found = only(suggest([source_customer("v1", vendor_name)],
                         [customer(1, "Zenith Plumbing"), customer(2, syncro_name)]))

    assert (found.psa_customer_id, found.psa_customer, found.confidence) == (
        2, syncro_name, "high")
    assert found.score >= HIGH


@pytest.mark.parametrize(("names", "best_id", "runner_up"), [
    (["Acme Dental Inc", "ACME DENTAL LLC"], 1, "ACME DENTAL LLC"),  # a tie: the lower id
    (["ACME DENTAL LLC", "Acme Dentals"], 1, "Acme Dentals"),  # 1.0 against 0.957
])
def test_two_syncro_customers_within_a_tenth_are_not_high(
        names: list[str], best_id: int, runner_up: str) -> None:
    found = only(suggest([source_customer("v1", "Acme Dental")],
                         [customer(i, n) for i, n in enumerate(names, start=1)]))

    assert found.psa_customer_id == best_id
    assert found.confidence == "medium"
    assert not found.unambiguous_high
    assert found.runner_up == runner_up


def test_a_runner_up_more_than_a_tenth_behind_is_not_named() -> None:
    found = only(suggest([source_customer("v1", "Acme Dental")],
                         [customer(1, "Acme Dental Care"), customer(2, "Acme Dental")]))

    assert (found.psa_customer_id, found.confidence, found.runner_up) == (2, "high", None)


def test_two_vendor_customers_on_one_syncro_customer_are_demoted() -> None:
    found = suggest([source_customer("v1", "Acme Dental"),
                     source_customer("v2", "Acme Dental Ltd"),
                     source_customer("v3", "Bolt")],
                    [customer(1, "Acme Dental"), customer(2, "Bolt")])

    assert [(s.vendor_customer_id, s.psa_customer_id, s.confidence) for s in found] == [
        ("v1", 1, "medium"), ("v2", 1, "medium"), ("v3", 2, "high")]
    assert found[0].reasons[-1] == "another vendor customer matches it too"
    assert "another vendor customer matches it too" not in found[2].reasons


def test_a_shared_target_leaves_lower_confidences_alone() -> None:
    found = suggest([source_customer("v1", "Acme"), source_customer("v2", "Acme Holdings")],
                    [customer(1, "Acme")])

    assert [(s.confidence, s.reasons[-1]) for s in found] == [
        ("medium", "another vendor customer matches it too"), ("medium", "name 78% similar")]


def test_one_vendor_customer_in_two_billing_motions_stays_high() -> None:
    found = suggest([source_customer("v1", "Acme Dental", billing_motion="csp"),
                     source_customer("v1", "Acme Dental", billing_motion="nce")],
                    [customer(1, "Acme Dental")])

    assert [s.confidence for s in found] == ["high", "high"]


@pytest.mark.parametrize(("vendor_name", "syncro_name", "confidence"), [
    ("Acme Dental", "Acme Dental Care", "medium"),
    ("Acme Holdings", "Acme Services", "low"),
])
def test_weaker_matches_are_medium_or_low(vendor_name: str, syncro_name: str,
                                          confidence: str) -> None:
    found = only(suggest([source_customer("v1", vendor_name)], [customer(1, syncro_name)]))

    assert found.confidence == confidence


@pytest.mark.parametrize(("vendors", "customers"), [
    ([source_customer("v1", "Acme Dental")], [customer(1, "Zenith Plumbing")]),
    ([source_customer("v1", "Blue Sky")], [customer(1, "Red Rock")]),
    ([source_customer("v1", "")], [customer(1, "Acme")]),
    ([source_customer("v1", "Acme")], []),
    ([], [customer(1, "Acme")]),
    ([source_customer("v1", "Acme")], [customer(1, None)]),  # shown as "customer 1"
    ([source_customer("v1", "東京商事")], [customer(1, "Acme")]),
])
def test_unrelated_or_empty_names_get_no_suggestion(vendors: list[SourceCustomer],
                                                    customers: list[Customer]) -> None:
    assert suggest(vendors, customers) == []


def test_a_person_customer_is_matched_by_full_name() -> None:
    found = only(suggest([source_customer("v1", "Jane Doe")],
                         [customer(1, None, fullname="Jane Doe")]))

    assert (found.psa_customer, found.confidence) == ("Jane Doe", "high")


# ------------------------------------------------------------------ properties

NAMES = st.text(alphabet="AaBbCcéÜ &.,'-" + "nc", max_size=16) | st.sampled_from(
    ["Acme Inc", "ACME", "Acme & Co", "Bolt", "Bolt Ltd", "Zeta", "The Company"])
DOMAINS = st.lists(st.sampled_from(["acme.com", "bolt.io", "zeta.example"]), max_size=2)


@settings(max_examples=50, deadline=None, database=None)
@given(st.text("aZ09 &.,'-_\t\nÉéßØæ東Ωд\u0301\ufb01²", max_size=30))
def test_normalise_is_idempotent_words_separated_by_single_spaces(name: str) -> None:
    once = normalise(name)

    assert normalise(once) == once
    assert re.fullmatch(r"([^\W_]+( [^\W_]+)*)?", once)
    assert once == once.casefold()


@settings(max_examples=50, deadline=None, database=None)
@given(NAMES, NAMES)
def test_similarity_is_a_fraction_and_one_for_the_same_name(left: str, right: str) -> None:
    assert 0.0 <= name_similarity(left, right) <= 1.0
    assert name_similarity(left, left) == (1.0 if normalise(left) else 0.0)


@settings(max_examples=40, deadline=None, database=None)
@given(vendors=st.lists(st.tuples(NAMES, DOMAINS), max_size=4),
       syncro=st.lists(st.tuples(NAMES, st.none() | st.sampled_from(
           ["a@acme.com", "b@bolt.io", "c@zeta.example", "d@acme.co.uk"])), max_size=4))
def test_high_confidence_is_unambiguous(vendors: list[tuple[str, list[str]]],
                                        syncro: list[tuple[str, str | None]]) -> None:
    vendor_customers = [source_customer(f"v{n}", name, domains=domains)
                        for n, (name, domains) in enumerate(vendors)]
    customers = [customer(n, name or None, email=email)
                 for n, (name, email) in enumerate(syncro, start=1)]

    found = suggest(vendor_customers, customers)

    assert len({s.vendor_customer_id for s in found}) == len(found)
    assert all(s.score >= 0.5 for s in found)
    high = [s for s in found if s.confidence == "high"]
    assert all(s.score >= HIGH and s.runner_up is None for s in high)
    assert all(count == 1 for count in Counter(s.psa_customer_id for s in high).values())
    for s in high:  # nobody else comes within 0.10 of the chosen one
        others = [score(v, c)[0] for v in vendor_customers if v.id == s.vendor_customer_id
                  for c in customers if c.id != s.psa_customer_id]
        assert all(s.score - other >= 0.1 - 1e-9 for other in others)
