"""reconcile_seen keeps each item's exact digest; reconcile_alike the content hashes
of items found alike only once normalised

reconcile_seen is a cache (syncd/seen.py), so it is rebuilt empty rather than
altered: the next reconcile maps every record once, as after any change to the
mapping code.

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


def _create(name: str, *digests: str) -> None:
    op.create_table(name,
    sa.Column('channel', sa.String(length=100), nullable=False),
    sa.Column('item_code', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=32), nullable=False),
    *(sa.Column(d, sa.String(length=32), nullable=False) for d in digests),
    sa.PrimaryKeyConstraint('channel', 'item_code')
    )


def upgrade() -> None:
    op.drop_table('reconcile_seen')
    _create('reconcile_seen', 'raw_digest', 'exact_digest')
    _create('reconcile_alike', 'exact_digest', 'content_hash')


def downgrade() -> None:
    op.drop_table('reconcile_alike')
    op.drop_table('reconcile_seen')
    _create('reconcile_seen', 'raw_digest', 'content_hash')
