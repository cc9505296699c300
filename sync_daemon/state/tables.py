"""The state database schema as SQLAlchemy Core tables; Alembic migrations must match it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    column,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from sync_daemon.state.records import (
    IntentStatus,
    Origin,
    PlannedChangeStatus,
    PlanStatus,
    RunStatus,
    RunTrigger,
    VendorCustomerStatus,
)

# Stable constraint names let SQLite batch migrations find and alter constraints later.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_PLACES = Decimal("0.0001")
_MAX_INTEGER_DIGITS = 14  # Numeric(18, 4)


class ExactDecimal(TypeDecorator[Decimal]):
    """`Numeric(18, 4)` that round-trips `Decimal` exactly on every backend.

    SQLite has no decimal type (NUMERIC affinity turns text into a float), so there the
    value is stored as fixed-point text. Values that need more than four decimal places or
    fourteen integer digits are refused rather than rounded.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(18, 4, asdecimal=True)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Use text on SQLite, the native numeric type elsewhere."""
        return dialect.type_descriptor(
            String(24) if dialect.name == "sqlite" else self.impl_instance
        )

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> Any:
        """Check that the value fits exactly, then render it for the backend."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise TypeError(f"expected a Decimal, got {type(value).__name__}: {value!r}")
        exact = Decimal(value)
        if not exact.is_finite():
            raise ValueError(f"{exact} is not a finite amount")
        fixed = exact.quantize(_PLACES) if exact.adjusted() < _MAX_INTEGER_DIGITS else None
        if fixed is None or fixed != exact:
            raise ValueError(f"{exact} does not fit Numeric(18, 4) exactly")
        fixed = abs(fixed) if fixed.is_zero() else fixed  # no "-0.0000"
        return format(fixed, "f") if dialect.name == "sqlite" else fixed

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Return the stored value as a Decimal with four places."""
        return None if value is None else Decimal(value).quantize(_PLACES)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that accepts only aware datetimes and always returns them in UTC.

    SQLite stores naive UTC text; PostgreSQL stores `timestamptz`.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes and convert aware ones to UTC."""
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}; use an aware UTC time")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to naive values and normalise aware ones to UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Autoincrement on SQLite needs the column to be exactly INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


def _one_of(name: str, values: tuple[str, ...]) -> CheckConstraint:
    """A CHECK that column `name` holds one of `values`, named `ck_<table>_<name>`."""
    return CheckConstraint(column(name).in_(values), name=name)


metadata = MetaData(naming_convention=NAMING_CONVENTION)

vendor_customers = Table(
    "vendor_customers",
    metadata,
    Column("vendor", String(32), primary_key=True),
    Column("vendor_customer_id", String(255), primary_key=True),
    Column("billing_motion", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("psa_customer_id", BigInteger),
    Column("psa_customer_name", Text),
    Column("schedule_id", BigInteger),
    Column("minimum", Integer),
    Column("included", Integer),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    _one_of("status", get_args(VendorCustomerStatus)),
)

managed_products = Table(
    "managed_products",
    metadata,
    Column("vendor", String(32), primary_key=True),
    Column("sku", String(255), primary_key=True),
    Column("syncro_product_id", BigInteger, nullable=False, unique=True),
    Column("origin", String(16), nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text),
    Column("last_price_cost", ExactDecimal),
    Column("last_price_retail", ExactDecimal),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    _one_of("origin", get_args(Origin)),
)

managed_lines = Table(
    "managed_lines",
    metadata,
    Column("syncro_line_id", BigInteger, primary_key=True, autoincrement=False),
    Column("schedule_id", BigInteger, nullable=False),
    Column("vendor", String(32), nullable=False),
    Column("vendor_customer_id", String(255), nullable=False),
    Column("billing_motion", String(64), nullable=False),
    Column("sku", String(255), nullable=False),
    Column("syncro_product_id", BigInteger, nullable=False),
    Column("last_retail", ExactDecimal, nullable=False),
    Column("last_cost", ExactDecimal, nullable=False),
    Column("last_quantity", ExactDecimal, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("schedule_id", "vendor", "vendor_customer_id", "billing_motion", "sku"),
    Index(None, "vendor"),
    _one_of("origin", get_args(Origin)),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("vendor", String(32), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("status", String(16), nullable=False),
    Column("counts", JSON, nullable=False),
    Column("message", Text),
    Index(None, "started_at"),
    _one_of("trigger", get_args(RunTrigger)),
    _one_of("status", get_args(RunStatus)),
)

# One row per vendor whose pass holds the run lock (SQLite), or that last took the advisory lock
# (PostgreSQL, where the row only names the holder). No foreign key: the lock is taken before
# the run is recorded.
run_locks = Table(
    "run_locks",
    metadata,
    Column("vendor", String(32), primary_key=True),
    Column("run_id", String(32), nullable=False),
    Column("holder", String(255), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
)

applied_statements = Table(
    "applied_statements",
    metadata,
    Column("vendor", String(32), primary_key=True),
    Column("statement_id", String(255), primary_key=True),
    Column("run_id", ForeignKey("sync_runs.run_id"), nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("sync_runs.run_id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("vendor", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=False),
    Column("customer", Text),
    Column("field", String(64)),
    Column("before", Text),
    Column("after", Text),
    Column("reason", Text, nullable=False),
)

write_intents = Table(
    "write_intents",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("run_id", ForeignKey("sync_runs.run_id"), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("result_id", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
    Column("settled_at", UTCDateTime),
    Index(None, "status"),
    _one_of("status", get_args(IntentStatus)),
)

# Plans kept for approval, one per pass that planned under `approval = "required"`.
plans = Table(
    "plans",
    metadata,
    Column("run_id", ForeignKey("sync_runs.run_id"), primary_key=True),
    Column("vendor", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime),
    Column("notices", JSON, nullable=False),
    Column("seats", JSON, nullable=False),
    Index(None, "vendor"),
    _one_of("status", get_args(PlanStatus)),
)

planned_changes = Table(
    "planned_changes",
    metadata,
    Column("run_id", ForeignKey("plans.run_id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("customer", String(255)),
    Column("change", JSON, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("applied_run_id", ForeignKey("sync_runs.run_id")),
    Column("message", Text),
    _one_of("status", get_args(PlannedChangeStatus)),
)
