"""Run locks: one row per vendor whose sync pass is running (see `sync_daemon.state.locks`).

Revision ID: 0002_run_locks
Revises: 0001_initial
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sync_daemon.state.tables import UTCDateTime

revision: str = "0002_run_locks"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "run_locks",
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("vendor", name=op.f("pk_run_locks")),
    )


def downgrade() -> None:
    """Revert this revision (a pass running during the downgrade loses its lock)."""
    op.drop_table("run_locks")
