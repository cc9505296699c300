"""Alembic migrations of the state database, run by `StateStore.open()`."""
