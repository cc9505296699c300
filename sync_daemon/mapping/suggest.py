"""Suggest which Syncro customer a vendor customer is, by name and e-mail domain (pure).

A shared e-mail domain is the strongest evidence (the vendor's mail domain is the customer's
e-mail domain in Syncro). Names are compared after folding case, punctuation, `&`/`and` and
legal suffixes, by whole words and by characters. A suggestion is *high* confidence only when
it scores 0.90 or more and no other Syncro customer comes within 0.10 of it.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

from sync_daemon.connectors.syncro import Customer
from sync_daemon.vendor import SourceCustomer

HIGH = 0.90
MEDIUM = 0.70
MARGIN = 0.10
# Words that say what kind of company it is, not which one.
NOISE = frozenset({
    "inc", "incorporated", "llc", "llp", "lp", "ltd", "limited", "co", "corp", "corporation",
    "company", "plc", "pty", "gmbh", "bv", "sa", "the", "and", "group", "pc", "pllc", "pa",
})

Confidence = Literal["high", "medium", "low"]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """The best Syncro match for one vendor customer."""

    vendor_customer_id: str
    vendor_customer: str
    psa_customer_id: int
    psa_customer: str
    score: float
    confidence: Confidence
    reasons: tuple[str, ...]
    runner_up: str | None = None
    billing_motion: str = ""

    @property
    def unambiguous_high(self) -> bool:
        """Safe to map without a person looking."""
        return self.confidence == "high"


def normalise(name: str) -> str:
    """Case-folded words without accents, punctuation or legal-form words."""
    # Drop accents only: letters of every script stay, and casefold turns ß into ss.
    decomposed = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    text = text.replace("&", " and ")
    words = [w for w in re.split(r"[\W_]+", text) if w and w not in NOISE]
    return " ".join(words)


def name_similarity(a: str, b: str) -> float:
    """0..1: whole-word containment or character similarity, whichever is higher."""
    left, right = normalise(a), normalise(b)
    if not left or not right:
        return 0.0
    if left == right:
        return 1.0
    words_l, words_r = set(left.split()), set(right.split())
    shorter, longer = sorted((words_l, words_r), key=len)
    contained = len(shorter & longer) / len(longer) if shorter <= longer else 0.0
    # Containment of every word ("acme dental" in "acme dental care") is strong but not equal.
    containment = 0.6 + 0.35 * contained if shorter <= longer else 0.0
    characters = SequenceMatcher(None, left, right).ratio()
    squashed = SequenceMatcher(None, left.replace(" ", ""), right.replace(" ", "")).ratio()
    return round(max(containment, characters, squashed), 3)


def email_domain(email: str | None) -> str | None:
    """The lower-cased domain of an address, or None."""
    if not email or "@" not in email:
        return None
    return email.rsplit("@", 1)[1].strip().casefold() or None


def score(vendor: SourceCustomer, customer: Customer) -> tuple[float, tuple[str, ...]]:
    """How likely `customer` is `vendor`, with the reasons a person can check."""
    reasons: list[str] = []
    similarity = name_similarity(vendor.name, customer.display_name)
    if similarity > 0:
        reasons.append(f"name {similarity:.0%} similar")
    best = similarity
    domain = email_domain(customer.email)
    vendor_domains = {d.casefold() for d in vendor.domains}
    if domain and domain in vendor_domains:
        reasons.insert(0, f"same e-mail domain {domain}")
        # A shared domain with an unrelated-looking name is still very likely the same firm.
        best = max(best, 0.95 if similarity >= 0.4 else 0.9)
        best = min(1.0, best + 0.05)
    elif domain and vendor_domains:
        label = domain.split(".")[0]
        if any(label == d.split(".")[0] for d in vendor_domains):
            reasons.insert(0, f"e-mail domain {domain} matches by name")
            best = max(best, 0.85)
    return round(best, 3), tuple(reasons)


def suggest(
    vendor_customers: Sequence[SourceCustomer], customers: Sequence[Customer]
) -> list[Suggestion]:
    """The best match for every vendor customer that has one worth showing (≥ 0.5)."""
    found: list[Suggestion] = []
    for vendor in vendor_customers:
        ranked = sorted(((score(vendor, c), c) for c in customers),
                        key=lambda item: (-item[0][0], item[1].id))
        if not ranked or ranked[0][0][0] < 0.5:
            continue
        (best, reasons), customer = ranked[0]
        runner_up = ranked[1] if len(ranked) > 1 else None
        close = runner_up is not None and best - runner_up[0][0] < MARGIN
        confidence: Confidence = (
            "high" if best >= HIGH and not close else "medium" if best >= MEDIUM else "low")
        found.append(Suggestion(
            vendor_customer_id=vendor.id, vendor_customer=vendor.name,
            psa_customer_id=customer.id, psa_customer=customer.display_name, score=best,
            confidence=confidence, reasons=reasons,
            runner_up=runner_up[1].display_name if close and runner_up else None,
            billing_motion=vendor.billing_motion,
        ))
    return _demote_shared_targets(found)


def _demote_shared_targets(found: list[Suggestion]) -> list[Suggestion]:
    """Two vendor customers pointing at one Syncro customer need a person: not high."""
    targets: dict[int, set[str]] = {}
    for s in found:
        targets.setdefault(s.psa_customer_id, set()).add(s.vendor_customer_id)
    return [
        dataclasses.replace(s, confidence="medium",
                            reasons=(*s.reasons, "another vendor customer matches it too"))
        if s.confidence == "high" and len(targets[s.psa_customer_id]) > 1 else s
        for s in found
    ]
