"""The state store: what the daemon owns and has done, kept in SQLite or PostgreSQL.

Database errors leave this module as the daemon's own errors (see `StateStore.transaction`).
`StateStore.run_lock` keeps a vendor's passes one at a time (see `sync_daemon.state.locks`).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, get_args
from uuid import uuid4

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import (
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)

from sync_daemon.errors import ConfigError, InvariantError, SyncError, TransientError
from sync_daemon.logs import get_logger
from sync_daemon.state.locks import (
    Heartbeat,
    LockBackend,
    LockPolicy,
    PostgresLocks,
    SqliteLocks,
    acquire,
)
from sync_daemon.state.records import (
    AuditEntry,
    ManagedLine,
    ManagedProduct,
    PlannedChange,
    PlannedChangeStatus,
    PlanStatus,
    RunLock,
    RunStatus,
    RunTrigger,
    StoredPlan,
    SyncRun,
    VendorCustomer,
    VendorCustomerStatus,
    WriteIntent,
    utc_now,
)
from sync_daemon.state.tables import (
    applied_statements,
    audit_log,
    managed_lines,
    managed_products,
    planned_changes,
    plans,
    sync_runs,
    vendor_customers,
    write_intents,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

R = TypeVar("R", bound="DataclassInstance")  # a record type
Clock = Callable[[], datetime]
log = get_logger()
DEFAULT_LOCK_POLICY = LockPolicy()

_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x73796E63_73746174  # pg_advisory_xact_lock key; any constant of our own
_SQLITE_BUSY_TIMEOUT_S = 30
_ALEMBIC_LOCK = threading.Lock()  # Alembic keeps the running migration in module globals
_KEPT_ON_UPDATE = ("created_at", "first_seen_at")  # when a record was first written stays put


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the revisions shipped in the package, migrating `connection`."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


class StateStore:
    """The daemon's memory. Open with `StateStore.open(url)`; read and write in `transaction()`."""

    def __init__(
        self, engine: Engine, *, clock: Clock = utc_now, locks: LockPolicy = DEFAULT_LOCK_POLICY
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._lock_policy = locks
        backend = PostgresLocks if engine.dialect.name == "postgresql" else SqliteLocks
        self._locks: LockBackend = backend(engine, clock, locks)

    @classmethod
    def open(
        cls, url: str, *, clock: Clock = utc_now, locks: LockPolicy = DEFAULT_LOCK_POLICY
    ) -> StateStore:
        """Connect to `url` (sqlite:// or postgresql://) and migrate it to the latest schema.

        Raises:
            ConfigError: the URL is invalid, or the database cannot be reached or migrated.
        """
        engine = _create_engine(url)
        try:
            _migrate(engine)
        except BaseException as error:
            engine.dispose()
            if not isinstance(error, SQLAlchemyError | CommandError):
                raise
            reason = str(error.orig) if isinstance(error, DBAPIError) else str(error)
            if isinstance(error, CommandError):  # the database is at a revision we do not ship
                reason += "; was it migrated by a newer sync-daemon?"
            raise ConfigError(
                f"cannot open state database {_masked(url)}: {_scrub(reason, engine.url)}"
            ) from None  # the driver's error could quote the password
        return cls(engine, clock=clock, locks=locks)

    def schema_version(self) -> str | None:
        """The Alembic revision the database is at."""
        with _database_errors(), self._engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self._engine.url.render_as_string(hide_password=True)!r})"

    def run_lock(
        self, vendor: str, run_id: str, *, wait: bool = False
    ) -> AbstractContextManager[RunLock]:
        """Hold the vendor's run lock for the block: one pass per vendor, on any machine.

        With `wait`, poll until the holder is done instead of raising. While held, a thread
        refreshes the heartbeat. Leaving the block releases the lock; a release that fails
        is logged, not raised (the lock then ends with the process or goes stale).

        Raises:
            LockedError: another pass holds the lock (it names its run id and start).
            TransientError: the database is locked or unreachable.
        """
        return self._hold(vendor, run_id, wait=wait)

    def lock_holder(self, vendor: str) -> RunLock | None:
        """The pass holding the vendor's run lock now, or None (a dead holder counts as none)."""
        with _database_errors():
            return self._locks.holder(vendor)

    @contextmanager
    def _hold(self, vendor: str, run_id: str, *, wait: bool) -> Iterator[RunLock]:
        with _database_errors():
            held = acquire(self._locks, vendor, run_id, wait=wait, policy=self._lock_policy)
        heartbeat = Heartbeat(held, self._lock_policy.heartbeat_s)
        try:
            yield held.lock
        finally:
            heartbeat.stop()
            try:
                with _database_errors():
                    if not held.release():
                        log.warning("lock.lost", vendor=vendor, run_id=run_id,
                                    detail="the lock was taken over before the pass ended")
            except SyncError as error:
                log.error("lock.release_failed", vendor=vendor, run_id=run_id, error=str(error))

    @contextmanager
    def transaction(self) -> Iterator[StateTransaction]:
        """One transaction: commits when the block ends, rolls back when it raises.

        Raises:
            InvariantError: a write broke a constraint or a value cannot be stored exactly.
            TransientError: the database is locked or unreachable; try again later.
        """
        # SQLite (pysqlite) takes its write lock at the first write, not here, so readers in
        # other processes are never blocked and reads see the latest commit, as PostgreSQL's
        # READ COMMITTED does. Upserts are single INSERT .. ON CONFLICT statements on both.
        with _database_errors(), self._engine.begin() as connection:
            yield StateTransaction(connection, self._clock)


class StateTransaction:
    """Reads and writes inside one database transaction; get one from `StateStore.transaction()`.

    Upserts (`put_*`) insert or replace by the record's key; the store keeps `created_at`
    (`first_seen_at` for vendor customers) from the first write and stamps `updated_at`.
    """

    def __init__(self, connection: Connection, clock: Clock) -> None:
        self._connection = connection
        self._now = clock

    # -- sync runs -------------------------------------------------------------------------

    def start_run(self, vendor: str, trigger: RunTrigger, run_id: str | None = None) -> SyncRun:
        """Record a new run in status `running` (with a new id unless one is given)."""
        run = SyncRun(
            run_id=run_id or uuid4().hex,
            vendor=vendor,
            trigger=trigger,
            status="running",
            started_at=self._now(),
            counts={},
        )
        self._connection.execute(insert(sync_runs).values(_values(run)))
        return run

    def finish_run(
        self, run_id: str, status: RunStatus, counts: Mapping[str, int], message: str | None = None
    ) -> SyncRun:
        """Close a running run with its final status and counts.

        Raises:
            InvariantError: the run is unknown, already finished, or `status` is `running`.
        """
        if status == "running":
            raise InvariantError(f"run {run_id} cannot finish in status 'running'")
        row = self._connection.execute(
            update(sync_runs)
            .where(sync_runs.c.run_id == run_id, sync_runs.c.status == "running")
            .values(status=status, counts=dict(counts), message=message, finished_at=self._now())
            .returning(*sync_runs.c)
        ).one_or_none()
        if row is None:
            raise InvariantError(f"run {run_id} is unknown or already finished")
        return SyncRun(**row._mapping)

    def get_run(self, run_id: str) -> SyncRun | None:
        """The run with this id, if any."""
        return self._first(SyncRun, sync_runs, run_id=run_id)

    def list_runs(self, vendor: str | None = None, limit: int = 20) -> list[SyncRun]:
        """The latest runs, newest first."""
        return self._list(
            SyncRun, sync_runs, {"vendor": vendor}, [sync_runs.c.started_at.desc()], limit
        )

    # -- audit log (append-only: there is deliberately no update or delete) ----------------

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append entries to the audit log; their `id` is assigned by the database."""
        rows = [{k: v for k, v in _values(entry).items() if k != "id"} for entry in entries]
        if rows:
            self._connection.execute(insert(audit_log), rows)

    def list_audit(
        self, limit: int = 50, vendor: str | None = None, run_id: str | None = None
    ) -> list[AuditEntry]:
        """The latest audit entries, newest first."""
        filters = {"vendor": vendor, "run_id": run_id}
        return self._list(AuditEntry, audit_log, filters, [audit_log.c.id.desc()], limit)

    # -- vendor customers ------------------------------------------------------------------

    def get_vendor_customer(
        self, vendor: str, vendor_customer_id: str, billing_motion: str = ""
    ) -> VendorCustomer | None:
        """The vendor customer with this key, if known."""
        return self._first(
            VendorCustomer,
            vendor_customers,
            vendor=vendor,
            vendor_customer_id=vendor_customer_id,
            billing_motion=billing_motion,
        )

    def list_vendor_customers(
        self, vendor: str, status: VendorCustomerStatus | None = None
    ) -> list[VendorCustomer]:
        """A vendor's customers, optionally only those in `status`, by name."""
        order = [vendor_customers.c.name, vendor_customers.c.vendor_customer_id]
        filters = {"vendor": vendor, "status": status}
        return self._list(VendorCustomer, vendor_customers, filters, order)

    def count_vendor_customers(self, vendor: str) -> dict[VendorCustomerStatus, int]:
        """How many of a vendor's customers are in each status (every status, zeros included)."""
        query = (select(vendor_customers.c.status, func.count())
                 .where(vendor_customers.c.vendor == vendor)
                 .group_by(vendor_customers.c.status))
        found: dict[str, int] = dict(self._connection.execute(query).all())
        return {status: int(found.get(status, 0)) for status in get_args(VendorCustomerStatus)}

    def put_vendor_customer(self, customer: VendorCustomer) -> VendorCustomer:
        """Insert or replace a vendor customer; returns it as stored."""
        return self._put(vendor_customers, customer)

    def touch_vendor_customers(self, vendor: str, keys: Sequence[tuple[str, str]],
                               seen_at: datetime) -> None:
        """Set `last_seen_at` of the rows with these (vendor customer id, billing motion)
        keys, in one statement: the vendor still reports them and nothing else changed."""
        if not keys:
            return
        c = vendor_customers.c
        self._connection.execute(
            update(vendor_customers)
            .where(c.vendor == vendor, c.vendor_customer_id == bindparam("key_id"),
                   c.billing_motion == bindparam("key_motion"))
            .values(last_seen_at=seen_at),
            [{"key_id": key_id, "key_motion": motion} for key_id, motion in keys])

    def delete_vendor_customer(
        self, vendor: str, vendor_customer_id: str, billing_motion: str = ""
    ) -> bool:
        """Forget a vendor customer; False when it was not known."""
        return self._delete(
            vendor_customers,
            vendor=vendor,
            vendor_customer_id=vendor_customer_id,
            billing_motion=billing_motion,
        )

    # -- managed products ------------------------------------------------------------------

    def get_managed_product(self, vendor: str, sku: str) -> ManagedProduct | None:
        """The product managed for a vendor SKU, if any."""
        return self._first(ManagedProduct, managed_products, vendor=vendor, sku=sku)

    def find_managed_product_by_syncro_id(self, syncro_product_id: int) -> ManagedProduct | None:
        """The managed product with this Syncro product id, if any."""
        return self._first(ManagedProduct, managed_products, syncro_product_id=syncro_product_id)

    def list_managed_products(self, vendor: str | None = None) -> list[ManagedProduct]:
        """Managed products, by vendor and SKU."""
        order = [managed_products.c.vendor, managed_products.c.sku]
        return self._list(ManagedProduct, managed_products, {"vendor": vendor}, order)

    def put_managed_product(self, product: ManagedProduct) -> ManagedProduct:
        """Insert or replace by (vendor, sku); a Syncro id used by another SKU is refused."""
        return self._put(managed_products, product)

    def delete_managed_product(self, vendor: str, sku: str) -> bool:
        """Stop managing a product; False when it was not managed."""
        return self._delete(managed_products, vendor=vendor, sku=sku)

    # -- managed lines ---------------------------------------------------------------------

    def get_managed_line(self, syncro_line_id: int) -> ManagedLine | None:
        """The managed line with this Syncro line id, if any."""
        return self._first(ManagedLine, managed_lines, syncro_line_id=syncro_line_id)

    def list_managed_lines(
        self, vendor: str | None = None, schedule_id: int | None = None
    ) -> list[ManagedLine]:
        """Managed lines, by schedule and line id."""
        order = [managed_lines.c.schedule_id, managed_lines.c.syncro_line_id]
        filters = {"vendor": vendor, "schedule_id": schedule_id}
        return self._list(ManagedLine, managed_lines, filters, order)

    def managed_line_ids(self) -> frozenset[int]:
        """The Syncro ids of every managed line, of every vendor (no records built)."""
        rows = self._connection.execute(select(managed_lines.c.syncro_line_id))
        return frozenset(int(line_id) for (line_id,) in rows)

    def put_managed_line(self, line: ManagedLine) -> ManagedLine:
        """Insert or replace by Syncro line id; a second line for the same key is refused."""
        return self._put(managed_lines, line)

    def delete_managed_line(self, syncro_line_id: int) -> bool:
        """Stop managing a line; False when it was not managed."""
        return self._delete(managed_lines, syncro_line_id=syncro_line_id)

    # -- applied statements ----------------------------------------------------------------

    def is_statement_applied(self, vendor: str, statement_id: str) -> bool:
        """Whether this vendor statement has been applied."""
        query = select(applied_statements.c.run_id).filter_by(
            vendor=vendor, statement_id=statement_id
        )
        return self._connection.execute(query).first() is not None

    def has_applied_statements(self, vendor: str) -> bool:
        """Whether any statement of this vendor was ever applied (else the next is the first)."""
        query = select(applied_statements.c.run_id).filter_by(vendor=vendor).limit(1)
        return self._connection.execute(query).first() is not None

    def mark_statement_applied(self, vendor: str, statement_id: str, run_id: str) -> bool:
        """Record a statement as applied by `run_id`; False when it already was."""
        row = {"vendor": vendor, "statement_id": statement_id, "run_id": run_id}
        return self._insert_new(applied_statements, {**row, "applied_at": self._now()})

    # -- write-ahead intents ---------------------------------------------------------------

    def begin_intent(self, key: str, run_id: str, kind: str, payload: Mapping[str, Any]) -> bool:
        """Record the intent to make a write; False when `key` exists (whatever its status).

        `payload` must be JSON (render a Decimal with `str`); a value that is not is refused.
        """
        intent = WriteIntent(
            key=key,
            run_id=run_id,
            kind=kind,
            payload=dict(payload),
            status="pending",
            created_at=self._now(),
        )
        return self._insert_new(write_intents, _values(intent))

    def settle_intent(self, key: str, result_id: int | None) -> WriteIntent:
        """Mark a pending intent as landed, with the id the remote gave.

        Raises:
            InvariantError: no pending intent has this key.
        """
        return self._resolve_intent(key, "settled", result_id)

    def abandon_intent(self, key: str) -> WriteIntent:
        """Mark a pending intent as never landed, so it is not retried.

        Raises:
            InvariantError: no pending intent has this key.
        """
        return self._resolve_intent(key, "abandoned", None)

    def get_intent(self, key: str) -> WriteIntent | None:
        """The intent with this key, if any."""
        return self._first(WriteIntent, write_intents, key=key)

    def list_pending_intents(self) -> list[WriteIntent]:
        """Intents not yet settled or abandoned, oldest first: the ones to reconcile."""
        order = [write_intents.c.created_at, write_intents.c.key]
        return self._list(WriteIntent, write_intents, {"status": "pending"}, order)

    # -- plans kept for approval ----------------------------------------------------------

    def save_plan(self, plan: StoredPlan, changes: Sequence[PlannedChange]) -> None:
        """Store a new plan and its changes (numbered by `seq`)."""
        self._connection.execute(insert(plans).values(_values(plan)
                                                      | {"notices": list(plan.notices),
                                                         "seats": dict(plan.seats)}))
        rows = [_values(change) | {"change": dict(change.change)} for change in changes]
        if rows:
            self._connection.execute(insert(planned_changes), rows)

    def get_plan(self, run_id: str) -> StoredPlan | None:
        """The plan the pass `run_id` stored, if any."""
        return self._first(StoredPlan, plans, run_id=run_id)

    def list_plans(self, vendor: str | None = None, status: PlanStatus | None = None,
                   limit: int | None = 20) -> list[StoredPlan]:
        """Stored plans, newest first."""
        order = [plans.c.created_at.desc(), plans.c.run_id]
        return self._list(StoredPlan, plans, {"vendor": vendor, "status": status}, order, limit)

    def list_planned_changes(self, run_id: str) -> list[PlannedChange]:
        """A plan's changes in the order they were planned (and are applied)."""
        return self._list(PlannedChange, planned_changes, {"run_id": run_id},
                          [planned_changes.c.seq])

    def decide_planned_change(self, run_id: str, seq: int, status: PlannedChangeStatus, *,
                              applied_run_id: str | None = None,
                              message: str | None = None) -> None:
        """Close one pending change of a plan.

        Raises:
            InvariantError: the change is unknown or was already decided.
        """
        done = self._connection.execute(
            update(planned_changes)
            .where(planned_changes.c.run_id == run_id, planned_changes.c.seq == seq,
                   planned_changes.c.status == "pending")
            .values(status=status, applied_run_id=applied_run_id, message=message)
        ).rowcount
        if not done:
            raise InvariantError(f"change {seq} of plan {run_id} is unknown or already decided")

    def close_plan(self, run_id: str, status: PlanStatus,
                   message: str | None = None) -> bool:
        """Close a pending plan; its changes still pending take `status` (with `message`)
        unless the plan was approved. False when the plan was not pending.
        """
        closed = self._connection.execute(
            update(plans).where(plans.c.run_id == run_id, plans.c.status == "pending")
            .values(status=status, decided_at=self._now())
        ).rowcount
        if closed and status != "approved":
            self._connection.execute(
                update(planned_changes)
                .where(planned_changes.c.run_id == run_id,
                       planned_changes.c.status == "pending")
                .values(status=status, message=message))
        return bool(closed)

    # -- generic helpers -------------------------------------------------------------------

    def _first(self, record: Callable[..., R], table: Table, **key: object) -> R | None:
        row = self._connection.execute(select(table).filter_by(**key)).first()
        return None if row is None else record(**row._mapping)

    def _list(
        self,
        record: Callable[..., R],
        table: Table,
        filters: Mapping[str, object],
        order_by: Sequence[Any],
        limit: int | None = None,
    ) -> list[R]:
        """Rows matching every filter that is not None."""
        query = select(table).filter_by(**{k: v for k, v in filters.items() if v is not None})
        rows = self._connection.execute(query.order_by(*order_by).limit(limit))
        return [record(**row._mapping) for row in rows]

    def _put(self, table: Table, record: R) -> R:
        """Upsert on the primary key, atomically on both backends (INSERT .. ON CONFLICT)."""
        values = _values(record) | {"updated_at": self._now()}
        key = [column.name for column in table.primary_key]
        statement = self._dialect_insert(table).values(values)
        changes = {
            name: statement.excluded[name]
            for name in values
            if name not in key and name not in _KEPT_ON_UPDATE
        }
        upsert = statement.on_conflict_do_update(index_elements=key, set_=changes)
        row = self._connection.execute(upsert.returning(*table.c)).one()
        factory: Callable[..., R] = type(record)
        return factory(**row._mapping)

    def _insert_new(self, table: Table, values: Mapping[str, Any]) -> bool:
        """Insert unless the primary key exists; True when inserted."""
        statement = self._dialect_insert(table).values(values).on_conflict_do_nothing()
        returning = statement.returning(*table.primary_key.columns)
        return self._connection.execute(returning).first() is not None

    def _delete(self, table: Table, **key: object) -> bool:
        return self._connection.execute(table.delete().filter_by(**key)).rowcount > 0

    def _resolve_intent(self, key: str, status: str, result_id: int | None) -> WriteIntent:
        row = self._connection.execute(
            update(write_intents)
            .where(write_intents.c.key == key, write_intents.c.status == "pending")
            .values(status=status, result_id=result_id, settled_at=self._now())
            .returning(*write_intents.c)
        ).one_or_none()
        if row is None:
            raise InvariantError(f"no pending write intent {key!r} to mark {status}")
        return WriteIntent(**row._mapping)

    def _dialect_insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        if self._connection.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)


@contextmanager
def _database_errors() -> Iterator[None]:
    """Turn SQLAlchemy's errors into the daemon's, by who must act."""
    try:
        yield
    except IntegrityError as error:
        raise InvariantError(f"state database refused a write: {error.orig}") from error
    except OperationalError as error:
        raise TransientError(f"state database unavailable: {error.orig}") from error
    except DBAPIError:
        raise
    except StatementError as error:  # a value our column types refuse, e.g. a naive time
        raise InvariantError(f"cannot store a value: {error.orig}") from error


def _values(record: DataclassInstance) -> dict[str, Any]:
    return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}


def _create_engine(url: str) -> Engine:
    """An engine for a sqlite or postgresql URL; SQLite gets WAL, a busy timeout, and FKs."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # Not echoed: without parsing it there is no telling where a password would be.
        raise ConfigError(
            "the state database URL is not a valid URL; expected sqlite:///PATH "
            "or postgresql://USER:PASSWORD@HOST/DATABASE"
        ) from None
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    try:
        if backend == "postgresql":
            # pre-ping: the daemon idles between runs, long enough for a server to drop us
            timeout = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
            return create_engine(parsed, pool_pre_ping=True, connect_args=timeout)
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})
            event.listen(engine, "connect", _configure_sqlite)
            return engine
    except (SQLAlchemyError, ImportError, OSError) as error:  # ImportError: driver missing
        reason = _scrub(str(error), parsed)
        raise ConfigError(f"cannot open state database {_masked(url)}: {reason}") from None
    raise ConfigError(
        f"state database URL {_masked(url)} must start with sqlite:// or postgresql://"
    )


def _configure_sqlite(connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        # WAL lets another process read while we write. synchronous stays FULL: a write
        # intent must survive a power cut before its POST is sent.
        deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_S
        while True:
            try:
                cursor.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as error:
                # Switching the journal mode ignores the busy timeout: SQLite answers BUSY at
                # once while another process switches it or closes the last connection.
                busy = (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    finally:
        cursor.close()


def _migrate(engine: Engine) -> None:
    """Upgrade to head while holding a lock, so two processes starting at once take turns."""
    with _ALEMBIC_LOCK, engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            command.upgrade(alembic_config(connection), "head")
            connection.commit()
            return
        # SQLite alters a table by rebuilding it, and dropping the old one would break the
        # rows that refer to it; foreign keys can only be switched off outside a transaction,
        # so they are checked by hand before the commit instead (Alembic's batch-mode advice).
        connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's write lock, until commit
            command.upgrade(alembic_config(connection), "head")
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                connection.rollback()
                raise InvariantError(f"a migration would break {len(broken)} references "
                                     f"between tables (first: {tuple(broken[0])}); nothing "
                                     "was changed")
            connection.commit()
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys = ON")


def _masked(url: str) -> str:
    """The URL, parsed before, with its password replaced by ***."""
    return make_url(url).render_as_string(hide_password=True)


def _scrub(text: str, url: URL) -> str:
    return text.replace(url.password, "***") if url.password else text
