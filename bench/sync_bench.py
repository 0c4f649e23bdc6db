"""SQL → SQL sync through the mappings vs the raw driver read + bulk write of the same rows.

Measurements (JSON lines):
  raw_copy_<db>          raw DBAPI: read the item, material and fee rows, bulk-insert them
                         (one process, driver executemany): what ``ratio`` is against.
                         Run twice, before and after syncd's full syncs (``seconds`` and
                         ``seconds_after``); the rate is the faster run's, so a slow
                         moment of this machine during one copy does not flatter syncd
  raw_copy_pgcopy_postgres  the same with PostgreSQL's ``COPY`` for every table. syncd
                         writes a page's child rows by COPY (``sqlutil.insert_rows``), so
                         its PostgreSQL lines also give ``ratio_vs_pgcopy``, against
                         this faster raw write
  sync_full_one_process_<db>  syncd: a job's first run hall_db → portal_db through both
                         mappings, with workers = 1 (all in one process)
  sync_full_<db>         the same as syncd runs it by default: the table split across
                         ``workers`` processes (one per CPU, up to 4), in a process
                         that has not run workers before: the fork server they are
                         forked from starts (and imports) inside the timed run, as
                         for a ``syncd sync`` from the command line
  sync_full_again_<db>   the same into another empty target, in the same process, as
                         the daemon runs every job after its first split read: the fork
                         server is running, a worker starts in milliseconds
  sync_incremental_<db>  syncd: after 1% of the items changed; cost should follow the changes
ratio = rows_per_s / raw_rows_per_s (same run, same database).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from common import analyze, emit, log, scratch_db, timed, workdir

from syncd.config import load_config
from syncd.engine import RunRequest, SyncEngine
from syncd.legacy_schemas import SCHEMAS, create_legacy_tables, seed_legacy
from syncd.sample import edit, generate
from syncd.sqlutil import make_engine
from syncd.state.store import open_store
from syncd.workers import default_workers


def raw_copy(src_url: str, dst_url: str, *, pg_copy: bool = False) -> int:
    """Read every hall table with the bare DBAPI cursor and executemany them into a copy
    (``pg_copy``: PostgreSQL's ``COPY`` instead)."""
    md = sa.MetaData()
    tables = SCHEMAS["hall_db"](md)
    dst_engine = make_engine(dst_url)
    md.create_all(dst_engine)
    src_engine = make_engine(src_url)
    src, dst = src_engine.raw_connection(), dst_engine.raw_connection()
    q = '"' if src_engine.dialect.name != "mysql" else "`"
    qd = '"' if dst_engine.dialect.name != "mysql" else "`"
    mark = "?" if dst_engine.dialect.name == "sqlite" else "%s"
    rows_main = 0
    try:
        for table in tables:
            cols = [c.name for c in table.columns]
            cur, out = src.cursor(), dst.cursor()
            cur.execute(f"select {', '.join(q + c + q for c in cols)} from {q}{table.name}{q}")
            insert = (f"insert into {qd}{table.name}{qd} ({', '.join(qd + c + qd for c in cols)}) "
                      f"values ({', '.join([mark] * len(cols))})")
            copy_sql = (f"COPY {qd}{table.name}{qd} ({', '.join(qd + c + qd for c in cols)}) "
                        "FROM STDIN")
            while batch := cur.fetchmany(2000):
                if pg_copy:
                    with out.copy(copy_sql) as copy:
                        for row in batch:
                            copy.write_row(row)
                else:
                    out.executemany(insert, batch)
                if table.name == "SP_SXXX":
                    rows_main += len(batch)
            dst.commit()
    finally:
        src.close()
        dst.close()
        src_engine.dispose()
        dst_engine.dispose()
    return rows_main


def config_for(tmp: Path, src_url: str, dst_url: str, workers: int | None = None) -> Path:
    path = tmp / f"syncd-{workers}.toml"
    path.write_text(f"""
state_db = "sqlite:///{tmp}/state-{workers}.db"
[channels.src]
kind = "sql"
url = "{src_url}"
mapping = "hall_db.yaml"
[channels.dst]
kind = "sql"
url = "{dst_url}"
mapping = "portal_db.yaml"
[jobs.bench]
source = "src"
targets = ["dst"]
page_size = 2000
""" + (f"workers = {workers}\n" if workers else ""), encoding="utf-8")
    return path


def full_sync(tmp: Path, src_url: str, dst_url: str, rows: int, workers: int | None
              ) -> tuple[SyncEngine, float]:
    """A job's first run into an empty target, timed."""
    create_legacy_tables(make_engine(dst_url), "portal_db")
    config = load_config(config_for(tmp, src_url, dst_url, workers), os.environ)
    engine = SyncEngine(config, open_store(config.state_db))
    with timed() as full_t:
        result = engine.run(RunRequest("bench"))
    assert result.counts["delivered"] == rows, result
    return engine, full_t[0]


def run(db: str, rows: int) -> None:
    with workdir() as tmpname, scratch_db(db, Path(tmpname)) as src_url, \
            scratch_db(db, Path(tmpname)) as raw_url, scratch_db(db, Path(tmpname)) as dst_url, \
            scratch_db(db, Path(tmpname)) as one_url, scratch_db(db, Path(tmpname)) as again_url, \
            scratch_db(db, Path(tmpname)) as pg_url, \
            scratch_db(db, Path(tmpname)) as raw_again_url, \
            scratch_db(db, Path(tmpname)) as pg_again_url:
        tmp = Path(tmpname)
        log(f"[{db}] generating and seeding {rows} items")
        items = list(generate(rows, seed=42))
        seed_legacy(src_url, "hall_db", items, batch=2000)
        analyze(src_url)  # as autovacuum would (it is off on this machine's PostgreSQL)

        copies: list[int] = []
        copies_t: list[float] = []
        pg_copies: list[float] = []  # PostgreSQL: syncd's child rows go by COPY

        def copy_raw(into: str, pg_into: str) -> None:
            """The raw copy (and on PostgreSQL the one by COPY), into empty databases."""
            with timed() as raw_t:
                copies.append(raw_copy(src_url, into))
            copies_t.append(raw_t[0])
            if db == "postgres":
                with timed() as pg_t:
                    raw_copy(src_url, pg_into, pg_copy=True)
                pg_copies.append(pg_t[0])

        copy_raw(raw_url, pg_url)
        one, one_seconds = full_sync(tmp, src_url, one_url, rows, workers=1)
        one.store.close()
        engine, full_seconds = full_sync(tmp, src_url, dst_url, rows, workers=None)
        (tmp / "again").mkdir()
        again, again_seconds = full_sync(tmp / "again", src_url, again_url, rows, workers=None)
        again.store.close()
        copy_raw(raw_again_url, pg_again_url)

        copied = copies[0]
        raw_rate = copied / min(copies_t)
        emit(name=f"raw_copy_{db}", rows=copied, seconds=round(copies_t[0], 3),
             seconds_after=round(copies_t[1], 3), rows_per_s=round(raw_rate, 1))
        vs_copy: dict[str, float] = {}
        if pg_copies:
            emit(name=f"raw_copy_pgcopy_{db}", rows=copied, seconds=round(pg_copies[0], 3),
                 seconds_after=round(pg_copies[1], 3),
                 rows_per_s=round(copied / min(pg_copies), 1))
            vs_copy["raw_pgcopy_rows_per_s"] = copied / min(pg_copies)
        for name, seconds, workers in (("sync_full_one_process", one_seconds, 1),
                                       ("sync_full", full_seconds, default_workers()),
                                       ("sync_full_again", again_seconds, default_workers())):
            rate = rows / seconds
            emit(name=f"{name}_{db}", rows=rows, workers=workers, seconds=round(seconds, 3),
                 rows_per_s=round(rate, 1), raw_rows_per_s=round(raw_rate, 1),
                 ratio=round(rate / raw_rate, 3), **against_copy(rate, vs_copy))

        changed = max(1, rows // 100)
        later = datetime(2027, 1, 1, tzinfo=UTC)
        step = rows // changed
        seed_legacy(src_url, "hall_db", [dataclasses.replace(
            edit(items[i], i), updated_at=later + timedelta(seconds=i))
            for i in range(0, rows, step)][:changed], create=False)
        with timed() as inc_t:
            result = engine.run(RunRequest("bench"))
        assert result.counts["delivered"] == changed, result
        inc_rate = changed / inc_t[0]
        emit(name=f"sync_incremental_{db}", rows=changed, table_rows=rows,
             seconds=round(inc_t[0], 3), rows_per_s=round(inc_rate, 1),
             raw_rows_per_s=round(raw_rate, 1), ratio=round(inc_rate / raw_rate, 3),
             seconds_vs_full=round(inc_t[0] / full_seconds, 4))
        engine.store.close()


def against_copy(rate: float, vs_copy: dict[str, float]) -> dict[str, float]:
    """PostgreSQL: the same rate against the raw read + ``COPY`` (the fastest raw write)."""
    if not vs_copy:
        return {}
    raw = vs_copy["raw_pgcopy_rows_per_s"]
    return {"raw_pgcopy_rows_per_s": round(raw, 1), "ratio_vs_pgcopy": round(rate / raw, 3)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py sync")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgres", "mysql"])
    args = parser.parse_args(argv)
    for db in args.db or ["sqlite", "postgres", "mysql"]:
        run(db, args.rows)
