"""syncd's own state tables (SQLAlchemy Core). Changes go through Alembic migrations.

Keys are bounded-length strings so the same tables work on SQLite,
PostgreSQL and MySQL/MariaDB (MySQL indexes need lengths).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

JOB = String(100)
CHANNEL = String(100)
CODE = String(64)

job_run = Table(
    "job_run", metadata,
    Column("id", String(36), primary_key=True),
    Column("job", JOB, nullable=False),
    Column("trigger", String(20), nullable=False),   # schedule | manual | replay | cli
    Column("mode", String(20), nullable=False),      # incremental | full | items | replay
    Column("dry_run", Integer, nullable=False, default=0),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("outcome", String(20), nullable=False),   # running | ok | partial | failed | aborted
    Column("error", Text),
    Column("read", Integer, nullable=False, default=0),
    Column("quarantined", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("delivered", Integer, nullable=False, default=0),
    Column("retried", Integer, nullable=False, default=0),
    Column("dead", Integer, nullable=False, default=0),
    Column("conflicts", Integer, nullable=False, default=0),
    Column("vanished", Integer, nullable=False, default=0),
    Index("ix_job_run_job_started", "job", "started_at"),
)

checkpoint = Table(
    "checkpoint", metadata,
    Column("job", JOB, primary_key=True),
    Column("channel", CHANNEL, primary_key=True),
    Column("cursor", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

item_state = Table(
    "item_state", metadata,
    Column("job", JOB, primary_key=True),
    Column("target", CHANNEL, primary_key=True),
    Column("item_code", CODE, primary_key=True),
    Column("content_hash", String(32), nullable=False),
    Column("target_version", Integer),
    Column("delivered_at", DateTime(timezone=True), nullable=False),
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", JOB, nullable=False),
    Column("target", CHANNEL, nullable=False),
    Column("item_code", CODE, nullable=False),
    Column("content_hash", String(32), nullable=False),
    Column("payload", Text, nullable=False),          # canonical JSON, for operators to read
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text),
    Column("error_details", Text),                    # JSON list of {field, message}
    Column("status", String(10), nullable=False),     # pending | dead
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("job", "target", "item_code", name="uq_outbox_item"),
    Index("ix_outbox_due", "status", "next_attempt_at"),
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", JOB, nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("channel", CHANNEL, nullable=False),
    Column("item_code", CODE),
    Column("field", String(100)),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_quarantine_run", "run_id"),
)

vanished = Table(
    "vanished", metadata,
    Column("job", JOB, primary_key=True),
    Column("channel", CHANNEL, primary_key=True),
    Column("item_code", CODE, primary_key=True),
    Column("run_id", String(36), nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
)

conflict = Table(
    "conflict", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", JOB, nullable=False),
    Column("target", CHANNEL, nullable=False),
    Column("item_code", CODE, nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("detail", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

job_lock = Table(
    "job_lock", metadata,
    Column("job", JOB, primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
)

reconcile_run = Table(
    "reconcile_run", metadata,
    Column("id", String(36), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("channels", Text, nullable=False),          # JSON list
    Column("reference", CHANNEL, nullable=False),
    Column("items", Integer, nullable=False, default=0),
    Column("rates", Text, nullable=False),             # JSON {channel: rate}
)

reconcile_diff = Table(
    "reconcile_diff", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("item_code", CODE, nullable=False),
    Column("channel", CHANNEL, nullable=False),
    Column("field", String(100)),
    Column("kind", String(10), nullable=False),        # missing | extra | differs | stale
    Column("reference_value", Text),
    Column("channel_value", Text),
    Index("ix_reconcile_diff_run", "run_id"),
)

# What each channel held at its last reconcile: a digest of the raw record and the
# exact digest of the item it mapped to, under a fingerprint of everything that
# decided that mapping. Unchanged records are not mapped again (see syncd/seen.py).
# Written by the process that reads the channel.
reconcile_seen = Table(
    "reconcile_seen", metadata,
    Column("channel", CHANNEL, primary_key=True),
    Column("item_code", CODE, primary_key=True),
    Column("fingerprint", String(32), nullable=False),
    Column("raw_digest", String(32), nullable=False),
    Column("exact_digest", String(32), nullable=False),
)

# The content hash of an item found alike across channels only once normalised
# (exact digests apart), valid while the channel's item keeps that exact digest.
# Written by the process that compares, never by a reader, so neither overwrites
# the other's rows.
reconcile_alike = Table(
    "reconcile_alike", metadata,
    Column("channel", CHANNEL, primary_key=True),
    Column("item_code", CODE, primary_key=True),
    Column("fingerprint", String(32), nullable=False),
    Column("exact_digest", String(32), nullable=False),
    Column("content_hash", String(32), nullable=False),
)
