"""Fixtures for the contract suites: every test runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from sync_daemon.state import StateStore
from sync_daemon.state.tables import metadata
from tests.support.postgres import postgres_server

_database_names = (f"contract_{n}" for n in itertools.count())


class TickingClock:
    """A clock that moves one second per reading, so ordering by time is deterministic."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the server's maintenance database."""
    server = make_url(url)
    return psycopg.connect(
        host=server.host, port=server.port, user=server.username, dbname="postgres", autocommit=True
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A URL to a database in a private PostgreSQL server that lives for the session."""
    with postgres_server() as url:
        StateStore.open(url).close()  # migrated once; `store` empties it for each test
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend under test."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a new, empty database (no schema yet)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.db'}"
        return
    server: str = request.getfixturevalue("postgres_url")
    name = next(_database_names)
    with _admin(server) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_url(server).set(database=name).render_as_string(hide_password=False)
    with _admin(server) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database at the current schema; the `store` fixture opens it."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_url")
    # Emptying the session's database is ten times faster than creating one per test.
    tables = sql.SQL(", ").join(sql.Identifier(table.name) for table in metadata.sorted_tables)
    with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(False)) as db:
        db.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(tables))
    return url


@pytest.fixture
def clock() -> TickingClock:
    """The store's clock."""
    return TickingClock()


@pytest.fixture
def store(store_url: str, clock: TickingClock) -> Iterator[StateStore]:
    """An open store on an empty database."""
    with StateStore.open(store_url, clock=clock) as opened:
        yield opened
