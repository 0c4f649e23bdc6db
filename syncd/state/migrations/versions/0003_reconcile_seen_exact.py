"""reconcile_seen keeps each item's exact digest; its content hash only when computed

The table is a cache (syncd/seen.py), so it is rebuilt empty rather than altered:
the next reconcile maps every record once, as after any change to the mapping code.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _create(*digests: sa.Column) -> None:
    op.create_table('reconcile_seen',
    sa.Column('channel', sa.String(length=100), nullable=False),
    sa.Column('item_code', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=32), nullable=False),
    sa.Column('raw_digest', sa.String(length=32), nullable=False),
    *digests,
    sa.PrimaryKeyConstraint('channel', 'item_code')
    )


def upgrade() -> None:
    op.drop_table('reconcile_seen')
    _create(sa.Column('exact_digest', sa.String(length=32), nullable=False),
            sa.Column('content_hash', sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_table('reconcile_seen')
    _create(sa.Column('content_hash', sa.String(length=32), nullable=False))
