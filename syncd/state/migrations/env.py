"""Alembic environment: runs on the connection syncd hands over (see state/store.py)."""

from __future__ import annotations

from alembic import context

from syncd.state.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  version_table="syncd_alembic_version", render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
