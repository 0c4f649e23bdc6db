"""Soak: 1,000 scheduled runs in one daemon process; memory must stay flat.

    python bench/run.py soak [--runs 1000] [--items 20] [--every 10ms]

The daemon's own scheduler (APScheduler, coalescing, one instance per job)
fires a small full-scan job as often as it can, while a writer edits one
source item every 100 ms so runs deliver as well as compare, and the outbox
replay job ticks every second. RSS is sampled every tenth of the runs, after a
GC; ``rss_start_mb`` is the first sample (imports, pools and caches warm) and
``growth_mb`` what the rest added: a leak of a few kB per run shows as megabytes.

Measurement (one JSON line):
  soak_scheduled_runs  runs, seconds, rss_before_first_run_mb, rss_start_mb, rss_end_mb,
                       growth_mb, rss_samples_mb
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import threading
import time
from pathlib import Path

from common import emit, log, workdir
from sqlalchemy import func, select

from connectors.sql import SqlChannel
from syncd import log as syncd_log
from syncd.admin.settings import AdminSettings
from syncd.codes import MAPPINGS_DIR
from syncd.config import load_config
from syncd.daemon import Daemon
from syncd.legacy_schemas import create_legacy_tables
from syncd.mapping import load_mapping
from syncd.model import ServiceItem
from syncd.sample import edit, generate
from syncd.sqlutil import make_engine
from syncd.state import tables as t
from syncd.state.store import StateStore, open_store

SAMPLES = 10


def rss_mb() -> float:
    """Resident set size now (not the peak: a leak shows as growth, a spike does not)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def finished_runs(store: StateStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.job_run)
                                .where(t.job_run.c.outcome != "running")).scalar_one())


def write_items(url: str, schema: str, items: list[ServiceItem]) -> None:
    channel = SqlChannel(schema, make_engine(url), load_mapping(MAPPINGS_DIR / f"{schema}.yaml"))
    try:
        channel.write([channel.mapping.from_item(i) for i in items])
    finally:
        channel.close()


def editor(url: str, items: list[ServiceItem], stop: threading.Event) -> None:
    """Change one source item every 100 ms, so scheduled runs have something to deliver."""
    k = 0
    while not stop.wait(0.1):
        i = k % len(items)
        items[i] = edit(items[i], k)
        write_items(url, "hall_db", [items[i]])
        k += 1


def soak(runs: int, n_items: int, every: str) -> None:
    syncd_log.configure(level="ERROR")
    # at a 10 ms interval nearly every tick finds the job still running: APScheduler's
    # "skipped: maximum number of running instances" warning is expected here, not news
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    with workdir() as tmpname:
        tmp = Path(tmpname)
        src, dst = f"sqlite:///{tmp}/hall.db", f"sqlite:///{tmp}/portal.db"
        items = list(generate(n_items, seed=9))
        for url, schema in ((src, "hall_db"), (dst, "portal_db")):
            engine = make_engine(url)
            create_legacy_tables(engine, schema)
            engine.dispose()
        write_items(src, "hall_db", items)
        cfg = tmp / "syncd.toml"
        cfg.write_text(f"""
state_db = "sqlite:///{tmp}/state.db"
[admin]
replay_every = "1s"
[channels.hall]
kind = "sql"
url = "{src}"
mapping = "hall_db.yaml"
[channels.portal]
kind = "sql"
url = "{dst}"
mapping = "portal_db.yaml"
[jobs.soak]
source = "hall"
targets = ["portal"]
mode = "full"
schedule = "interval:{every}"
""", encoding="utf-8")
        config = load_config(cfg, os.environ)
        store = open_store(config.state_db)
        daemon = Daemon(config, store, AdminSettings.from_config(config))
        stop = threading.Event()
        writer = threading.Thread(target=editor, args=(src, items, stop), daemon=True)
        samples: list[float] = []
        gc.collect()
        before = rss_mb()
        start = time.perf_counter()
        daemon.start()
        writer.start()
        while (done := finished_runs(store)) < runs:
            if done >= (len(samples) + 1) * runs // SAMPLES:
                gc.collect()
                samples.append(round(rss_mb(), 1))
                log(f"{done} runs, rss {samples[-1]} MB")
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        stop.set()
        writer.join()
        daemon.stop(30)
        gc.collect()
        end = rss_mb()
        done = finished_runs(store)
        store.close()
    warm = samples[0] if samples else before
    emit(name="soak_scheduled_runs", runs=done, seconds=round(seconds, 1),
         runs_per_s=round(done / seconds, 1), rss_before_first_run_mb=round(before, 1),
         rss_start_mb=warm, rss_end_mb=round(end, 1), growth_mb=round(end - warm, 1),
         rss_samples_mb=samples)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py soak")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--every", default="10ms", help="the job's schedule interval")
    args = parser.parse_args(argv)
    soak(args.runs, args.items, args.every)
