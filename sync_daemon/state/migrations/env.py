"""Alembic environment: migrates the connection `StateStore.open()` hands over.

The caller holds the migration lock and commits; there is no alembic.ini and no logging setup.
To draft a revision, call `alembic.command.revision(config, autogenerate=True)` with
`sync_daemon.state.store.alembic_config(connection)`.
"""

from __future__ import annotations

from typing import Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from sync_daemon.state.tables import ExactDecimal, UTCDateTime, metadata


def _render_item(kind: str, item: object, autogen: AutogenContext) -> str | Literal[False]:
    """Render our column types by name, importing them, when drafting a revision."""
    if kind == "type" and isinstance(item, ExactDecimal | UTCDateTime):
        autogen.imports.add("from sync_daemon.state.tables import ExactDecimal, UTCDateTime")
        return f"{type(item).__name__}()"
    return False


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise TypeError("migrations need the Connection that StateStore.open() passes in")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
    render_item=_render_item,
)
with context.begin_transaction():
    context.run_migrations()
