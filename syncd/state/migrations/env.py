"""Alembic environment: runs on the connection syncd hands over (see state/store.py)."""

from __future__ import annotations

from alembic import context

from syncd.state.store import VERSION_TABLE
from syncd.state.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
