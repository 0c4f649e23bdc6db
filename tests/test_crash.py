"""SIGKILL the sync process at random points (real subprocess): after a rerun the
target equals the source, nothing is lost or duplicated, and the state agrees; the
sync workers of a killed run die with it."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from helpers import RunKiller, alive, hashes, seed, write_config

from connectors.registry import open_channel
from syncd.config import load_config
from syncd.engine import RunRequest, SyncEngine
from syncd.legacy_schemas import create_legacy_tables
from syncd.model import content_hash
from syncd.sample import edit, generate
from syncd.sqlutil import make_engine
from syncd.state import tables as t
from syncd.state.store import UNCONFIRMED, open_store

N = 6000
TRIALS = 14


def _sync(cfg, log, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "syncd.cli", "--config", str(cfg), "sync", "job",
                             *extra], stdout=subprocess.DEVNULL, stderr=log)


def _worker_pids(log_path) -> list[int]:
    """The sync workers a run started, from its JSON log."""
    pids = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        if line.startswith("{") and '"sync_workers_started"' in line:
            pids += [int(pid) for pid in re.findall(r"\d+", str(json.loads(line)["pids"]))]
    return pids


@pytest.mark.slow
def test_sigkill_at_random_points_loses_and_duplicates_nothing(fresh_db, tmp_path):
    src_url, dst_url = fresh_db("sqlite"), fresh_db("postgres")
    items = list(generate(N, seed=3))
    seed(src_url, "hall_db", items)
    engine = make_engine(dst_url)
    create_legacy_tables(engine, "portal_db")
    engine.dispose()
    state_url = f"sqlite:///{tmp_path}/state.db"
    cfg = write_config(tmp_path / "syncd.toml", state_db=state_url,
                       channels={"src": ("sql", src_url, "hall_db.yaml"),
                                 "dst": ("sql", dst_url, "portal_db.yaml")},
                       jobs={"job": {"source": "src", "targets": ["dst"], "page_size": 50,
                                     "workers": 2}})
    rng = random.Random(11)
    later = datetime(2027, 1, 1, tzinfo=UTC)
    killed = started = 0
    killer = RunKiller(rng)
    for trial in range(TRIALS):
        if trial:  # change a random slice of the source between trials
            picks = rng.sample(range(N), 300)
            # stamped after every earlier edit, as a system that sets GXSJ = now does
            # (300 picks a second apart span 5 minutes, so trials are 10 minutes apart)
            items_changed = [dataclasses.replace(edit(items[i], trial), updated_at=later
                                                 + timedelta(minutes=10 * trial, seconds=j))
                             for j, i in enumerate(picks)]
            seed(src_url, "hall_db", items_changed, create=False)
        # two in three runs are full refreshes (long), the others incremental (the edits)
        kind = "full" if trial % 3 != 2 else "incremental"
        # every other full run is killed once its workers have started, so that some
        # kills find them running: the rest land anywhere from the run's start
        after = "sync_workers_started" if kind == "full" and trial % 2 == 0 else "run_started"
        log_path = tmp_path / f"trial{trial}.log"
        with log_path.open("w") as log:
            proc = _sync(cfg, log, *(["--full"] if kind == "full" else []))
            killed += killer.kill(proc, log_path, kind, after)
        workers = _worker_pids(log_path)
        started += bool(workers)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers), "a sync worker outlived its run"

    final = subprocess.run([sys.executable, "-m", "syncd.cli", "--config", str(cfg), "sync", "job"],
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    assert killed >= 10, f"only {killed} of {TRIALS} runs were killed mid-way"
    assert started >= 5, f"only {started} of {TRIALS} runs read with sync workers"

    source = hashes(src_url, "hall_db")
    target = hashes(dst_url, "portal_db")
    diff = sorted(k for k in set(source) | set(target) if source.get(k) != target.get(k))
    assert target == source, (diff[:5], len(diff))
    state = sa.create_engine(state_url)

    def delivered() -> dict[str, str]:
        with state.connect() as conn:
            return dict(conn.execute(sa.select(t.item_state.c.item_code,
                                               t.item_state.c.content_hash)).all())

    # the state never claims a version the target does not hold: an item sent in a
    # killed run and unchanged since is unconfirmed until it is next sent
    after_kills = delivered()
    assert {code: h for code, h in after_kills.items() if h != UNCONFIRMED} == {
        code: h for code, h in source.items() if after_kills.get(code) != UNCONFIRMED}
    assert set(after_kills) == set(source)
    full = subprocess.run([sys.executable, "-m", "syncd.cli", "--config", str(cfg), "sync",
                           "job", "--full"], capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]
    assert delivered() == source  # a full run confirms every item
    with state.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.outbox)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(t.job_lock)).scalar() == 0
        outcomes = [r.outcome for r in conn.execute(sa.select(t.job_run.c.outcome))]
    state.dispose()
    assert "running" not in outcomes
    assert outcomes.count("interrupted") >= 10
    dst = sa.create_engine(dst_url)
    with dst.connect() as conn:  # child rows were replaced, never duplicated
        dupes = conn.execute(sa.text(
            "select count(*) from (select item_code, seq from portal_material "
            "group by item_code, seq having count(*) > 1) d")).scalar()
    dst.dispose()
    assert dupes == 0


class _DiesAfterWriting:
    """A target whose writes land, then the process "dies" before they are recorded."""

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, inner.name

    def write(self, records):
        self.inner.write(records)
        raise RuntimeError("killed after the write landed, before it was recorded")

    def close(self) -> None:
        self.inner.close()


def test_a_write_that_landed_unrecorded_is_sent_again_after_the_source_goes_back(fresh_db,
                                                                                  tmp_path):
    """Sent version B, crashed before recording it, then the source went back to A (the
    version the state holds): the target must not keep B."""
    src_url, dst_url = fresh_db("sqlite"), fresh_db("sqlite")
    items = list(generate(20, seed=4))
    seed(src_url, "hall_db", items)
    engine = make_engine(dst_url)
    create_legacy_tables(engine, "portal_db")
    engine.dispose()
    cfg = write_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                       channels={"src": ("sql", src_url, "hall_db.yaml"),
                                 "dst": ("sql", dst_url, "portal_db.yaml")},
                       jobs={"job": {"source": "src", "targets": ["dst"]}})
    config = load_config(cfg, os.environ)
    store = open_store(config.state_db)
    assert SyncEngine(config, store).run(RunRequest("job")).outcome == "ok"

    def dies_on_dst(cfg_, mapping, **runtime):
        channel = open_channel(cfg_, mapping, **runtime)
        return _DiesAfterWriting(channel) if cfg_.name == "dst" else channel

    later = datetime(2027, 1, 1, tzinfo=UTC)
    seed(src_url, "hall_db", [dataclasses.replace(edit(items[0], 1), updated_at=later)],
         create=False)  # version B
    with pytest.raises(RuntimeError, match="before it was recorded"):
        SyncEngine(config, store, open_channel=dies_on_dst).run(RunRequest("job"))
    assert hashes(dst_url, "portal_db")[items[0].item_code] != content_hash(items[0])  # B landed
    back = dataclasses.replace(items[0], updated_at=later + timedelta(minutes=1))
    seed(src_url, "hall_db", [back], create=False)  # back to A
    again = SyncEngine(config, store).run(RunRequest("job"))
    assert (again.outcome, again.counts["delivered"]) == ("ok", 1)
    assert hashes(dst_url, "portal_db") == hashes(src_url, "hall_db")
    store.close()
