"""Plans kept for approval, and the run status `pending` and trigger `approval` they bring.

Revision ID: 0003_plans
Revises: 0002_run_locks
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sync_daemon.state.tables import UTCDateTime

revision: str = "0003_plans"
down_revision: str | Sequence[str] | None = "0002_run_locks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIGGERS = ("manual", "schedule")
_STATUSES = ("running", "succeeded", "partial", "failed", "stopped", "interrupted")


def _one_of(column: str, table: str, *values: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(sa.column(column).in_(values), name=op.f(f"ck_{table}_{column}"))


def _run_checks(triggers: Sequence[str], statuses: Sequence[str]) -> None:
    """Replace the CHECKs on `sync_runs.trigger` and `.status` (SQLite rebuilds the table)."""
    with op.batch_alter_table("sync_runs", recreate="auto") as batch:
        for name, values in (("trigger", triggers), ("status", statuses)):
            batch.drop_constraint(op.f(f"ck_sync_runs_{name}"), type_="check")
            batch.create_check_constraint(op.f(f"ck_sync_runs_{name}"),
                                          sa.column(name).in_(values))


def upgrade() -> None:
    """Apply this revision."""
    _run_checks((*_TRIGGERS, "approval"), (*_STATUSES, "pending"))
    op.create_table(
        "plans",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("notices", sa.JSON(), nullable=False),
        sa.Column("seats", sa.JSON(), nullable=False),
        _one_of("status", "plans", "pending", "approved", "rejected", "superseded"),
        sa.ForeignKeyConstraint(["run_id"], ["sync_runs.run_id"],
                                name=op.f("fk_plans_run_id_sync_runs")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_plans")),
    )
    op.create_index(op.f("ix_plans_vendor"), "plans", ["vendor"])
    op.create_table(
        "planned_changes",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("customer", sa.String(255), nullable=True),
        sa.Column("change", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("applied_run_id", sa.String(32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        _one_of("status", "planned_changes", "pending", "applied", "failed", "refused",
                "rejected", "superseded"),
        sa.ForeignKeyConstraint(["run_id"], ["plans.run_id"],
                                name=op.f("fk_planned_changes_run_id_plans")),
        sa.ForeignKeyConstraint(["applied_run_id"], ["sync_runs.run_id"],
                                name=op.f("fk_planned_changes_applied_run_id_sync_runs")),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_planned_changes")),
    )


def downgrade() -> None:
    """Revert this revision: stored plans are dropped; runs keep their audit entries.

    An approval run becomes `manual`, and a pass that stored a plan becomes `stopped` (it
    applied nothing), so the old CHECKs hold.
    """
    op.drop_table("planned_changes")
    op.drop_index(op.f("ix_plans_vendor"), table_name="plans")
    op.drop_table("plans")
    runs = sa.table("sync_runs", sa.column("trigger"), sa.column("status"))
    op.execute(runs.update().where(runs.c.trigger == "approval").values(trigger="manual"))
    op.execute(runs.update().where(runs.c.status == "pending").values(status="stopped"))
    _run_checks(_TRIGGERS, _STATUSES)
