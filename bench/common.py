"""Shared bench plumbing: scratch databases, JSON lines, timing."""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

SERVERS = {
    "postgres": os.environ.get("SYNCD_TEST_POSTGRES_URL",
                               "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("SYNCD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


def emit(**fields: object) -> None:
    """One measurement as one JSON line on stdout."""
    print(json.dumps(fields, ensure_ascii=False), flush=True)


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM), in MB; off Linux, ru_maxrss.

    Not ru_maxrss on Linux: it survives the fork and exec that start a spawned child,
    so a child would report its parent's peak."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timed() -> Iterator[list[float]]:
    box = [0.0]
    start = time.perf_counter()
    yield box
    box[0] = time.perf_counter() - start


@contextmanager
def scratch_db(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh empty database (file, PG schema or MySQL database), dropped afterwards."""
    name = f"syncd_b_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        yield f"sqlite:///{workdir / (name + '.db')}"
        return
    admin = sa.create_engine(SERVERS[kind], isolation_level="AUTOCOMMIT")
    base = make_url(SERVERS[kind])
    with admin.connect() as conn:
        if kind == "postgres":
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
            url = base.update_query_dict({"options": f"-csearch_path={name}"})
            drop = f'DROP SCHEMA "{name}" CASCADE'
        else:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            url = base.set(database=name)
            drop = f"DROP DATABASE `{name}`"
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(drop))
        admin.dispose()


def analyze(url: str) -> None:
    """Planner statistics for a freshly seeded PostgreSQL database, as a database in
    service has them (autovacuum gathers them after a load; this machine's server runs
    with autovacuum off). Without them PostgreSQL guesses that each key of a list has
    0.5 % of a table's rows, and reads a whole child table to find the materials of a
    page of keys: 0.25 s instead of 2 ms for 200 keys at 3.5M rows."""
    engine = sa.create_engine(url)
    try:
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                for name in sa.inspect(conn).get_table_names():
                    conn.exec_driver_sql(f'ANALYZE "{name}"')
    finally:
        engine.dispose()


def workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="syncd-bench-")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
