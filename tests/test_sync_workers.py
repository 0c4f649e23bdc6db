"""A whole-table read split by key range across sync workers: the same target, state
and counts as one process, on every database; vanished rows found in every range; a
stopped split read resumes where each worker was, and goes on to what changed since;
a worker's failure is raised in the engine's process with its reason."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from conftest import DB_KINDS
from helpers import hashes, seed, write_config
from syncd.child_process import helper_context
from syncd.config import load_config
from syncd.engine import RunRequest, SyncEngine
from syncd.errors import ConnectorError
from syncd.legacy_schemas import create_legacy_tables
from syncd.model import content_hash
from syncd.sample import edit, generate
from syncd.sqlutil import make_engine
from syncd.state import tables as t
from syncd.state.store import open_store
from syncd.workers import Split, sync_apart

N = 900
LATER = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fork_server_ready():
    """The fork server up, as in a daemon after its first split read. While it starts
    the engine reads ranges itself, and a table this small would be read before any
    worker started: these tests are about the workers."""
    ctx = helper_context()
    helper = ctx.Process(target=time.sleep, args=(0,))
    helper.start()
    helper.join()


def _engine(tmp_path, name: str, src_url: str, dst_url: str, *, workers: int,
            stop: threading.Event | None = None, progress=None) -> SyncEngine:
    cfg = write_config(tmp_path / f"{name}.toml", state_db=f"sqlite:///{tmp_path}/{name}.db",
                       channels={"src": ("sql", src_url, "hall_db.yaml"),
                                 "dst": ("sql", dst_url, "portal_db.yaml")},
                       jobs={"job": {"source": "src", "targets": ["dst"], "page_size": 50,
                                     "workers": workers}})
    config = load_config(cfg, os.environ)
    return SyncEngine(config, open_store(config.state_db), stop=stop, progress=progress)


def _target(fresh_db, kind: str) -> str:
    url = fresh_db(kind)
    engine = make_engine(url)
    create_legacy_tables(engine, "portal_db")
    engine.dispose()
    return url


def _delivered(engine: SyncEngine) -> dict[str, str]:
    with engine.store.engine.connect() as conn:
        return dict(conn.execute(sa.select(t.item_state.c.item_code,
                                           t.item_state.c.content_hash)).all())


def _workers_started(logs: list[dict]) -> list[int]:
    return [e["workers"] for e in logs if e["event"] == "sync_workers_started"]


@pytest.mark.parametrize("kind", DB_KINDS)
def test_a_split_read_lands_what_one_process_lands(fresh_db, tmp_path, kind):
    src_url = fresh_db(kind)
    items = list(generate(N, seed=21))
    seed(src_url, "hall_db", items)
    apart = _engine(tmp_path, "apart", src_url, _target(fresh_db, kind), workers=3)
    alone = _engine(tmp_path, "alone", src_url, _target(fresh_db, kind), workers=1)
    expected = {i.item_code: content_hash(i) for i in items}

    with capture_logs() as logs:
        first = apart.run(RunRequest("job"))
    assert _workers_started(logs) == [3]
    with capture_logs() as logs:
        first_alone = alone.run(RunRequest("job"))
    assert _workers_started(logs) == []
    assert first.outcome == first_alone.outcome == "ok"
    assert first.counts == first_alone.counts
    assert first.counts["delivered"] == N
    for engine in (apart, alone):
        dst_url = engine.config.channels["dst"].url
        assert hashes(dst_url, "portal_db") == expected
        assert _delivered(engine) == expected
        # the split read ended on the change-order cursor: the next run reads changes
        assert not engine.store.checkpoint("job", "src").startswith("split:")

    edited = [dataclasses.replace(edit(items[i], i), updated_at=LATER + timedelta(seconds=i))
              for i in range(0, N, 30)]
    seed(src_url, "hall_db", edited, create=False)
    for engine in (apart, alone):
        second = engine.run(RunRequest("job"))
        assert (second.outcome, second.counts["delivered"]) == ("ok", len(edited))
        assert hashes(engine.config.channels["dst"].url, "portal_db") == hashes(src_url,
                                                                               "hall_db")
    for engine in (apart, alone):
        engine.store.close()


def test_a_first_split_read_in_a_new_process_is_read_here_until_the_workers_start(
        fresh_db, tmp_path):
    # a new `syncd sync` process: its fork server imports for ~0.4 s before any worker
    # starts; meanwhile the engine reads ranges itself, and the workers read the rest
    n = 3000
    src_url, dst_url = fresh_db("sqlite"), _target(fresh_db, "sqlite")
    items = list(generate(n, seed=25))
    seed(src_url, "hall_db", items)
    cfg = write_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                       channels={"src": ("sql", src_url, "hall_db.yaml"),
                                 "dst": ("sql", dst_url, "portal_db.yaml")},
                       jobs={"job": {"source": "src", "targets": ["dst"], "page_size": 50,
                                     "workers": 2}})
    run = subprocess.run([sys.executable, "-m", "syncd.cli", "--config", str(cfg),
                          "sync", "job"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    finished = [e for e in events if e["event"] == "sync_workers_finished"]
    assert len(finished) == 1, run.stderr
    assert finished[0]["pages_here"] >= 1 and finished[0]["pages_by_workers"] >= 1
    assert finished[0]["pages_here"] + finished[0]["pages_by_workers"] == n // 50
    ended = next(e for e in events if e["event"] == "run_finished")
    assert (ended["outcome"], ended["read"], ended["delivered"]) == ("ok", n, n)
    assert hashes(dst_url, "portal_db") == {i.item_code: content_hash(i) for i in items}


def test_a_full_run_in_workers_reports_the_rows_gone_from_every_range(fresh_db, tmp_path):
    src_url = fresh_db("sqlite")
    items = sorted(generate(N, seed=22), key=lambda i: i.item_code)
    seed(src_url, "hall_db", items)
    sync = _engine(tmp_path, "apart", src_url, _target(fresh_db, "sqlite"), workers=3)
    assert sync.run(RunRequest("job")).counts["delivered"] == N
    # the first and last rows, rows at and next to where the ranges are cut, and a few more
    gone = {items[i].item_code for i in (0, 1, 299, 300, 301, 450, 599, 600, 601, N - 1)}
    src = make_engine(src_url)
    with src.begin() as conn:
        for table in ("SP_SXXX", "SP_SXCL", "SP_SXSF"):
            conn.execute(sa.text(f'delete from "{table}" where "SXBM" in :codes')
                         .bindparams(sa.bindparam("codes", expanding=True)),
                         {"codes": sorted(gone)})
    src.dispose()
    with capture_logs() as logs:
        full = sync.run(RunRequest("job", full=True))
    assert _workers_started(logs) == [3]
    assert (full.outcome, full.counts["read"], full.counts["vanished"]) == (
        "ok", N - len(gone), len(gone))
    assert {v["item_code"] for v in sync.store.vanished("job")} == gone
    sync.store.close()


@pytest.mark.parametrize("resume_workers", [1, 2, 3])
def test_a_stopped_split_read_resumes_where_each_worker_was(fresh_db, tmp_path, resume_workers):
    # 20 ranges of 3 pages: a stop finds some ranges read in part, some not begun, and
    # workers ahead of the engine by what the pipes hold
    n = 3000
    src_url, dst_url = fresh_db("sqlite"), _target(fresh_db, "postgres")
    items = sorted(generate(n, seed=23), key=lambda i: i.item_code)
    seed(src_url, "hall_db", items)
    stop = threading.Event()

    def stop_soon(_job: str, counts: dict[str, int]) -> None:
        if counts["read"] >= 200:
            stop.set()

    first = _engine(tmp_path, "state", src_url, dst_url, workers=3, stop=stop,
                    progress=stop_soon).run(RunRequest("job"))
    assert first.outcome == "stopped", first
    assert 200 <= first.counts["delivered"] < n
    sync = _engine(tmp_path, "state", src_url, dst_url, workers=resume_workers)
    stopped_at = sync.store.checkpoint("job", "src")
    assert stopped_at.startswith("split:")
    dry = sync.run(RunRequest("job", dry_run=True))  # says what is left, and moves nothing
    assert dry.counts["delivered"] == n - first.counts["delivered"]
    assert sync.store.checkpoint("job", "src") == stopped_at
    # each page a worker finished before it stopped was recorded: no more, no less
    landed = hashes(dst_url, "portal_db")
    assert _delivered(sync) == landed and len(landed) == first.counts["delivered"]

    # an item read before the stop, edited after the split read began
    before = next(i for i in items if i.item_code in landed)
    changed = dataclasses.replace(edit(before, 1), updated_at=LATER)
    seed(src_url, "hall_db", [changed], create=False)
    with capture_logs() as logs:
        second = sync.run(RunRequest("job"))
    assert _workers_started(logs) == ([resume_workers] if resume_workers > 1 else [])
    assert second.outcome == "ok", second
    assert second.counts["read"] == n - first.counts["read"] + 1  # resumed, plus the edit
    assert first.counts["delivered"] + second.counts["delivered"] == n + 1
    assert hashes(dst_url, "portal_db") == hashes(src_url, "hall_db")
    assert landed[before.item_code] != content_hash(changed)
    assert _delivered(sync)[before.item_code] == content_hash(changed)
    assert not sync.store.checkpoint("job", "src").startswith("split:")
    sync.store.close()


def test_a_worker_that_fails_raises_its_reason_here(fresh_db, tmp_path):
    src_url, dst_url = fresh_db("sqlite"), fresh_db("sqlite")  # no portal tables at dst
    items = sorted(generate(200, seed=24), key=lambda i: i.item_code)
    seed(src_url, "hall_db", items)
    cfg = write_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                       channels={"src": ("sql", src_url, "hall_db.yaml"),
                                 "dst": ("sql", dst_url, "portal_db.yaml")},
                       jobs={"job": {"source": "src", "targets": ["dst"], "page_size": 50}})
    config = load_config(cfg, os.environ)
    store = open_store(config.state_db)
    # the engine opens every channel before its workers do; a SQLite file two workers
    # create at once can refuse one of them (database is locked) while it becomes WAL
    dst = make_engine(dst_url)
    dst.connect().close()
    dst.dispose()
    split = Split.at([items[99].item_code], None)
    with pytest.raises(ConnectorError, match=r"channel=dst .*'portal_guide'.* does not exist"
                                             r".*\(sync worker [01]\)"), \
            sync_apart(config, "job", store.url, split, run_id="r1", force=False,
                       stop_when=threading.Event()) as workers:
        list(workers.pages)
    store.close()

