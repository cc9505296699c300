"""Initial schema: vendor customers, managed products and lines, runs, audit, intents.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sync_daemon.state.tables import ExactDecimal, UTCDateTime

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _one_of(column: str, table: str, *values: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(sa.column(column).in_(values), name=op.f(f"ck_{table}_{column}"))


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "sync_runs",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        _one_of("trigger", "sync_runs", "manual", "schedule"),
        _one_of(
            "status",
            "sync_runs",
            "running",
            "succeeded",
            "partial",
            "failed",
            "stopped",
            "interrupted",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_sync_runs")),
    )
    op.create_index(op.f("ix_sync_runs_started_at"), "sync_runs", ["started_at"])

    op.create_table(
        "vendor_customers",
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("vendor_customer_id", sa.String(255), nullable=False),
        sa.Column("billing_motion", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("psa_customer_id", sa.BigInteger(), nullable=True),
        sa.Column("psa_customer_name", sa.Text(), nullable=True),
        sa.Column("schedule_id", sa.BigInteger(), nullable=True),
        sa.Column("minimum", sa.Integer(), nullable=True),
        sa.Column("included", sa.Integer(), nullable=True),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _one_of("status", "vendor_customers", "mapped", "not_mapped", "detached"),
        sa.PrimaryKeyConstraint(
            "vendor", "vendor_customer_id", "billing_motion", name=op.f("pk_vendor_customers")
        ),
    )

    op.create_table(
        "managed_products",
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("sku", sa.String(255), nullable=False),
        sa.Column("syncro_product_id", sa.BigInteger(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("last_price_cost", ExactDecimal(), nullable=True),
        sa.Column("last_price_retail", ExactDecimal(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _one_of("origin", "managed_products", "created", "adopted"),
        sa.PrimaryKeyConstraint("vendor", "sku", name=op.f("pk_managed_products")),
        sa.UniqueConstraint(
            "syncro_product_id", name=op.f("uq_managed_products_syncro_product_id")
        ),
    )

    op.create_table(
        "managed_lines",
        sa.Column("syncro_line_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("vendor_customer_id", sa.String(255), nullable=False),
        sa.Column("billing_motion", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(255), nullable=False),
        sa.Column("syncro_product_id", sa.BigInteger(), nullable=False),
        sa.Column("last_retail", ExactDecimal(), nullable=False),
        sa.Column("last_cost", ExactDecimal(), nullable=False),
        sa.Column("last_quantity", ExactDecimal(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _one_of("origin", "managed_lines", "created", "adopted"),
        sa.PrimaryKeyConstraint("syncro_line_id", name=op.f("pk_managed_lines")),
        sa.UniqueConstraint(
            "schedule_id",
            "vendor",
            "vendor_customer_id",
            "billing_motion",
            "sku",
            name=op.f("uq_managed_lines_schedule_id"),
        ),
    )
    op.create_index(op.f("ix_managed_lines_vendor"), "managed_lines", ["vendor"])

    op.create_table(
        "applied_statements",
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("statement_id", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("applied_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.run_id"], name=op.f("fk_applied_statements_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("vendor", "statement_id", name=op.f("pk_applied_statements")),
    )

    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("customer", sa.Text(), nullable=True),
        sa.Column("field", sa.String(64), nullable=True),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.run_id"], name=op.f("fk_audit_log_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_run_id"), "audit_log", ["run_id"])

    op.create_table(
        "write_intents",
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("settled_at", UTCDateTime(), nullable=True),
        _one_of("status", "write_intents", "pending", "settled", "abandoned"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.run_id"], name=op.f("fk_write_intents_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_write_intents")),
    )
    op.create_index(op.f("ix_write_intents_status"), "write_intents", ["status"])


def downgrade() -> None:
    """Revert this revision (drops every table and its data)."""
    for table in (
        "write_intents",
        "audit_log",
        "applied_statements",
        "managed_lines",
        "managed_products",
        "vendor_customers",
        "sync_runs",
    ):
        op.drop_table(table)
