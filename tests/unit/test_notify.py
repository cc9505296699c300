"""`digest()`: which passes are worth an e-mail, and what the one e-mail says."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sync_daemon.apply import Applied
from sync_daemon.jobs import RunReport
from sync_daemon.notify import digest
from sync_daemon.plan import Notice, Plan, UpdateProductPrice

RUN_ID = "7b35" + "0" * 28
SECRET = "S3cr3t-smtp-pass"  # a value that must never reach an e-mail

ERROR = Notice("error", "missing_price", "package ultra has no price", customer="Acme Dental")
PRICE = Notice("warning", "price_change", "PC_PPE-BUSINESS: cost 1.50 → 1.60, retail 3 → 3")
DETACHED = Notice("warning", "detached", "gone from the vendor", customer="Old Co")
UNMAPPED = Notice("warning", "unmapped", "not mapped: nothing billed",
                  customer="Cobalt Marine Supply")
FAILED = Applied(UpdateProductPrice("PPE-BUSINESS", 7, "PC_PPE-BUSINESS", Decimal("1.50"),
                                    Decimal("1.60"), Decimal(3), Decimal(3),
                                    "the vendor's price changed"),
                 error="syncro: PUT /products/7: 422 name taken")


def report(*notices: Notice, status: str = "succeeded", applied: tuple[Applied, ...] = (),
           error: str | None = None, guard: str | None = None) -> RunReport:
    plan = Plan("proofpoint", tuple(a.change for a in applied), notices)
    return RunReport(run_id=RUN_ID, vendor="proofpoint", dry_run=False, status=status,
                     plan=plan, applied=list(applied), error=error, guard=guard,
                     requests={"reads": 3, "writes": 1})


@pytest.mark.parametrize(
    ("run", "on", "subject", "present", "absent"),
    [
        pytest.param(report(ERROR, PRICE, UNMAPPED, status="partial"), {"error"},
                     "[sync-daemon] proofpoint partial: 1 error",
                     ["Acme Dental: package ultra has no price [missing_price]", "Errors (1):"],
                     ["PC_PPE-BUSINESS", "Cobalt", "Warnings"], id="error-notice"),
        pytest.param(report(status="partial", applied=(FAILED,)), {"error"},
                     "[sync-daemon] proofpoint partial: 1 failed change",
                     ["Failed changes (1):", "422 name taken", "product.price_set"], [],
                     id="error-failed-change"),
        pytest.param(report(status="failed", error="syncro: GET /me: unreachable"), {"error"},
                     "[sync-daemon] proofpoint failed",
                     ["The pass failed: syncro: GET /me: unreachable", "Status:  failed"], [],
                     id="error-failed-run"),
        pytest.param(report(status="stopped", guard="billed seats would drop 50%"), {"error"},
                     "[sync-daemon] proofpoint stopped",
                     ["safety guard", "billed seats would drop 50%"], [], id="error-guard"),
        pytest.param(report(ERROR, PRICE, DETACHED, UNMAPPED, status="partial"), {"warning"},
                     "[sync-daemon] proofpoint partial: 2 warnings",
                     ["Warnings (2):", "cost 1.50 → 1.60, retail 3 → 3 [price_change]",
                      "Old Co: gone from the vendor [detached]"],
                     ["Acme Dental", "Cobalt", "Errors"], id="warning"),
        pytest.param(report(PRICE, UNMAPPED), {"unmapped"},
                     "[sync-daemon] proofpoint succeeded: 1 unmapped customer",
                     ["Not mapped (1):", "Cobalt Marine Supply: not mapped: nothing billed"],
                     ["PC_PPE-BUSINESS", "Warnings"], id="unmapped"),
        pytest.param(report(ERROR, PRICE, UNMAPPED, status="partial", applied=(FAILED,)),
                     {"error", "warning", "unmapped"},
                     "[sync-daemon] proofpoint partial: 1 failed change, 1 error, 1 warning, "
                     "1 unmapped customer",
                     ["Failed changes (1):", "Errors (1):", "Warnings (1):", "Not mapped (1):"],
                     [], id="everything"),
        pytest.param(RunReport(run_id=RUN_ID, vendor="proofpoint", dry_run=False,
                               status="pending", plan=Plan("proofpoint", (FAILED.change,), ())),
                     {"unmapped"}, "[sync-daemon] proofpoint plan waiting for approval",
                     ["A plan of 1 change is waiting for approval",
                      f"Apply it:   sync-daemon plan approve {RUN_ID}",
                      f"Discard it: sync-daemon plan reject {RUN_ID}"],
                     ["Failed changes"], id="plan-waiting"),
    ],
)
def test_a_digest_lists_what_on_asks_for(run: RunReport, on: set[str], subject: str,
                                         present: list[str], absent: list[str]) -> None:
    content = digest(run, on)
    assert content is not None
    assert content.subject == subject
    for header in (f"Run:     {RUN_ID}", "Vendor:  proofpoint", f"Status:  {run.status}",
                   "Counts:  changes planned"):
        assert header in content.body
    for text in present:
        assert text in content.body
    for text in absent:
        assert text not in content.body


@pytest.mark.parametrize(
    ("run", "on"),
    [
        pytest.param(report(), {"error", "warning", "unmapped"}, id="clean-run"),
        pytest.param(report(PRICE, DETACHED, UNMAPPED), {"error"}, id="error-none"),
        pytest.param(report(ERROR, UNMAPPED, status="partial"), {"warning"}, id="warning-none"),
        pytest.param(report(ERROR, PRICE, status="partial", applied=(FAILED,)), {"unmapped"},
                     id="unmapped-none"),
        pytest.param(report(ERROR, PRICE, UNMAPPED, status="failed", error="x"), set(),
                     id="on-empty"),
    ],
)
def test_nothing_matching_means_no_email(run: RunReport, on: set[str]) -> None:
    assert digest(run, on) is None


def test_the_digest_holds_no_secret() -> None:
    run = report(ERROR, PRICE, UNMAPPED, status="partial", applied=(FAILED,))
    content = digest(run, {"error", "warning", "unmapped"})
    assert content is not None
    assert SECRET not in content.subject + content.body
    assert "password" not in content.body.lower()
