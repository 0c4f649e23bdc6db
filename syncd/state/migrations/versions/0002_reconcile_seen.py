"""reconcile_seen: raw digests and content hashes from the last reconcile

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reconcile_seen',
    sa.Column('channel', sa.String(length=100), nullable=False),
    sa.Column('item_code', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=32), nullable=False),
    sa.Column('raw_digest', sa.String(length=32), nullable=False),
    sa.Column('content_hash', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('channel', 'item_code')
    )


def downgrade() -> None:
    op.drop_table('reconcile_seen')
