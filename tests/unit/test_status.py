"""`status` from the state database: each configured vendor, enabled or not, in both formats."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sync_daemon.settings import Settings
from sync_daemon.state import PlannedChange, StateStore, StoredPlan, VendorCustomer
from sync_daemon.state.locks import holder_name
from sync_daemon.status import as_dict, as_text, vendor_statuses

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
OSLO = ZoneInfo("Europe/Oslo")


def test_never_run_disabled_and_running_vendors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    settings = Settings(
        state={"url": url}, daemon={"timezone": "Europe/Oslo"},
        syncro={"base_url": "https://acme.syncromsp.example/api/v1", "api_token": "t"},
        proofpoint={"base_url": "https://us1.proofpoint.example/api/v1", "username": "u",
                    "password": "p", "partner_domain": "msp.example"},
        cloudiq={"enabled": False, "client_id": "c", "client_secret": "s", "username": "u",
                 "password": "p", "organization_id": 1},
    )
    with StateStore.open(url, clock=lambda: NOW) as store:
        with store.transaction() as tx:
            tx.put_vendor_customer(VendorCustomer(vendor="cloudiq", vendor_customer_id="t1",
                                                  name="T", status="detached"))
        with store.run_lock("proofpoint", "r" * 32):
            running, idle = vendor_statuses(settings, store, NOW)
    assert (running.vendor, idle.vendor) == ("proofpoint", "cloudiq")
    assert running.next_run_at == datetime(2026, 7, 2, 4, 0, tzinfo=UTC)  # 06:00 CEST
    assert idle.next_run_at is None
    assert as_text(running, OSLO).splitlines() == [
        "proofpoint",
        "  last run     never",
        "  next run     2026-07-02 06:00:00 CEST (schedule 0 6 * * *)",
        f"  running now  yes, since 2026-07-01 14:00:00 CEST (run {'r' * 32} on {holder_name()})",
        "  customers    0 mapped, 0 not mapped, 0 detached",
    ]
    assert as_text(idle, OSLO).splitlines()[2:] == [
        "  next run     none (disabled; schedule 0 5 * * *)",
        "  running now  no",
        "  customers    0 mapped, 0 not mapped, 1 detached",
    ]
    assert as_dict(idle, OSLO) == {
        "vendor": "cloudiq", "enabled": False, "schedule": "0 5 * * *",
        "timezone": "Europe/Oslo", "next_run_at": None, "last_run": None, "running": None,
        "pending_plan": None, "customers": {"mapped": 0, "not_mapped": 0, "detached": 1},
    }
    assert as_dict(running, OSLO)["running"]["since"] == "2026-07-01T12:00:00+00:00"


def test_a_plan_waiting_for_approval_is_shown_with_its_pending_changes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    settings = Settings(
        state={"url": url},
        syncro={"base_url": "https://acme.syncromsp.example/api/v1", "api_token": "t"},
        proofpoint={"base_url": "https://us1.proofpoint.example/api/v1", "username": "u",
                    "password": "p", "partner_domain": "msp.example", "approval": "required"},
    )
    with StateStore.open(url, clock=lambda: NOW) as store:
        with store.transaction() as tx:
            run_id = tx.start_run("proofpoint", "schedule").run_id
            tx.finish_run(run_id, "pending", {"changes_planned": 3})
            tx.save_plan(StoredPlan(run_id=run_id, vendor="proofpoint", status="pending",
                                    created_at=NOW),
                         [PlannedChange(run_id=run_id, seq=seq, kind="UpdateLine",
                                        customer="1", change={}, fingerprint="f")
                          for seq in (1, 2, 3)])
            tx.decide_planned_change(run_id, 1, "applied")
        (status,) = vendor_statuses(settings, store, NOW)
    assert as_dict(status, UTC)["pending_plan"] == {"run_id": run_id, "changes": 2}
    assert f"  approval     plan {run_id} waiting, 2 changes (`sync-daemon plan show`)" in (
        as_text(status, UTC).splitlines())
    assert "pending" in as_text(status, UTC)
