"""``syncd demo``: the whole loop on the embedded defaults, with no config at all.

A department database (SQLite, generated items in the hall system's own schema)
is pushed to the built-in platform simulator on a free loopback port while the
simulator injects faults (transient errors, a 429 burst, answers lost after
the write was applied, two items it always rejects). What the in-process
retries cannot land goes to the outbox, which is replayed until it drains;
the rejected items become dead letters. The platform is then pulled into a
portal database, and a reconciliation of all three says what still differs.

Everything lands in one folder (``syncd-demo/`` by default) with a real config,
so ``syncd --config syncd-demo/syncd.toml status`` and ``outbox list`` work
afterwards. The folder's databases are recreated on every run.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from syncd import log
from syncd.codes import MAPPINGS_DIR
from syncd.config import load_config
from syncd.engine import RunRequest, RunResult, SyncEngine
from syncd.errors import TransferError
from syncd.legacy_schemas import create_legacy_tables, seed_legacy
from syncd.reconcile import reconcile
from syncd.report.build import close_channels, open_channels, openers
from syncd.sample import generate
from syncd.sim import Faults, PlatformSimulator, serve_in_thread
from syncd.sqlutil import make_engine
from syncd.state.store import open_store

APP_KEY = "syncd-demo"
PUSH, PULL = "hall_to_platform", "platform_to_portal"
FILES = ("hall.db", "portal.db", "state.db", "syncd.toml", "syncd-demo.log")
MAX_REPLAY_ROUNDS = 10
PULL_TRIES = 3
#: faults while pushing: a third of the requests fail transiently, some answers are
#: lost after the write was applied, and the platform refuses two items outright
PUSH_FAULTS = {"error_ratio": 0.3, "burst_429": 3, "retry_after": 1,
               "fault_after_apply_ratio": 0.05}
PULL_FAULTS = {"error_ratio": 0.1, "burst_429": 0, "fault_after_apply_ratio": 0.0}

CONFIG = """\
# written by `syncd demo`: the department DB → platform simulator → portal DB
state_db = "sqlite:///{dir}/state.db"
mappings_dir = "{mappings}"

[retry]
attempts = 2          # few tries in process, so the outbox has something to show
deadline = 20.0
initial = 0.05
maximum = 0.5
max_retry_after = 1.0
outbox_attempts = 8

[channels.hall_db]
kind = "sql"
url = "sqlite:///{dir}/hall.db"
mapping = "hall_db.yaml"

[channels.platform]
kind = "platform"
url = "{platform}"
mapping = "platform/reference.yaml"
app_key = "{app_key}"
app_secret = "{app_secret}"   # the simulator's throwaway secret for this demo only
timeout = 5.0

[channels.portal_db]
kind = "sql"
url = "sqlite:///{dir}/portal.db"
mapping = "portal_db.yaml"

[jobs.{push}]
source = "hall_db"
targets = ["platform"]
page_size = 200

[jobs.{pull}]
source = "platform"
targets = ["portal_db"]
page_size = 200
"""


def run_demo(workdir: Path, *, items: int = 2000, as_json: bool = False,
             echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the demo in ``workdir``; returns the summary (also printed unless ``as_json``)."""
    say: Callable[[str], Any] = (lambda _msg: None) if as_json else echo
    started = time.monotonic()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (workdir / name).unlink(missing_ok=True)
    secret = secrets.token_urlsafe(24)
    log_path = workdir / "syncd-demo.log"
    log_file = log_path.open("w", encoding="utf-8")
    try:
        log.configure(secrets=[secret], level="INFO", json=True, stream=log_file)
        return _run(workdir, items, secret, log_path, say, started)
    finally:
        log_file.close()


def _run(workdir: Path, n: int, secret: str, log_path: Path, say: Callable[[str], Any],
         started: float) -> dict[str, Any]:
    codes = [item.item_code for item in generate(n, seed=2026)]
    rejected = {codes[7 % n], codes[(n * 2) // 3]}
    say(f"department DB: {n} generated service items → {workdir / 'hall.db'}")
    seed_legacy(f"sqlite:///{workdir / 'hall.db'}", "hall_db", generate(n, seed=2026))
    create_legacy_tables(make_engine(f"sqlite:///{workdir / 'portal.db'}"), "portal_db")

    sim = PlatformSimulator({APP_KEY: secret},
                            faults=Faults(reject_items=rejected, seed=7, **PUSH_FAULTS))
    with serve_in_thread(sim) as server:
        say(f"platform simulator: {server.url} (faults: {_faults_text(PUSH_FAULTS)}, "
            f"rejects {len(rejected)} items)")
        config_path = workdir / "syncd.toml"
        config_path.write_text(CONFIG.format(dir=workdir.as_posix(), mappings=MAPPINGS_DIR.as_posix(),
                                             platform=server.url, app_key=APP_KEY,
                                             app_secret=secret, push=PUSH, pull=PULL),
                               encoding="utf-8")
        config_path.chmod(0o600)
        config = load_config(config_path, {})
        store = open_store(config.state_db, max_attempts=config.retry.outbox_attempts)
        engine = SyncEngine(config, store)
        try:
            push = engine.run(RunRequest(PUSH, trigger="demo"))
            say(f"push: {_counts_text(push)}")
            replayed = _drain_outbox(engine, say)
            counts = store.outbox_counts()
            dead = store.outbox(job=PUSH, status="dead")
            for row in dead:
                say(f"  dead letter {row['item_code']}: {row['last_error']}")

            sim.faults.update(PULL_FAULTS)
            say(f"pull: platform → portal DB (faults: {_faults_text(PULL_FAULTS)})")
            _pull(engine, say)
            pulled = sum(r["delivered"] for r in store.runs(PULL))  # the failed tries' too
            injected = dict(sim.dice.served)

            sim.faults.update({"error_ratio": 0.0})
            diff = _reconcile(engine, workdir)
        finally:
            store.close()
    retries = _logged_retries(log_path)
    summary = {
        "items": n,
        "pushed": push.counts["delivered"] + sum(r.counts["delivered"] for r in replayed),
        "pulled": pulled,
        "faults_injected": sum(injected.values()),
        "retried_in_process": retries,
        "sent_to_outbox": push.counts["retried"],
        "replay_rounds": len(replayed),
        "dead_letters": counts.get("dead", 0),
        "outbox_pending": counts.get("pending", 0),
        "remaining_differences": diff["differences"],
        "items_differing": diff["items"],
        "platform_applied_twice": len(sim.applied_twice()),
        "seconds": round(time.monotonic() - started, 1),
        "workdir": str(workdir),
        "log": str(log_path),
    }
    say(_summary_text(summary, injected, dead, diff, workdir))
    return summary


def _drain_outbox(engine: SyncEngine, say: Callable[[str], Any]) -> list[RunResult]:
    """Replay pending outbox rows (due or not) until none are left or the rounds run out."""
    results: list[RunResult] = []
    for round_no in range(1, MAX_REPLAY_ROUNDS + 1):
        pending = [r["item_code"] for r in engine.store.outbox(job=PUSH, status="pending")]
        if not pending:
            break
        result = engine.run(RunRequest(PUSH, trigger="replay", items=tuple(pending)))
        results.append(result)
        left = engine.store.outbox_counts().get("pending", 0)
        say(f"outbox replay {round_no}: {len(pending)} pending → {result.counts['delivered']} "
            f"delivered, {left} still pending")
    return results


def _pull(engine: SyncEngine, say: Callable[[str], Any]) -> RunResult:
    """The pull job; a run that fails on a read the retries could not save is run again,
    as the daemon's next scheduled run would: it resumes from the checkpoint."""
    for attempt in range(1, PULL_TRIES + 1):
        try:
            result = engine.run(RunRequest(PULL, trigger="demo"))
        except TransferError as exc:
            if attempt == PULL_TRIES:
                raise
            say(f"pull failed ({exc}); running it again from the checkpoint")
            continue
        say(f"pull: {_counts_text(result)}")
        return result
    raise AssertionError("unreachable")


def _reconcile(engine: SyncEngine, workdir: Path) -> dict[str, Any]:
    """Hall DB (the source of truth here) against the platform and the portal DB."""
    channels = open_channels(engine.config, ["hall_db", "platform", "portal_db"])
    try:
        result = reconcile(channels, "hall_db", workdir=workdir, store=engine.store,
                           openers=openers(engine.config, list(channels)))
    finally:
        close_channels(channels)
    kinds = Counter(d.kind for d in result.diffs)
    return {"differences": result.total_diffs, "items": len({d.item_code for d in result.diffs}),
            "kinds": dict(kinds), "rates": {n: s.rate for n, s in result.stats.items()}}


def _logged_retries(log_path: Path) -> int:
    """In-process retries, as the ``retrying`` events in this demo's log."""
    n = 0
    with log_path.open("rb") as f:
        for line in f:
            if b'"retrying"' in line and orjson.loads(line).get("event") == "retrying":
                n += 1
    return n


def _faults_text(faults: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in faults.items() if v)


def _counts_text(result: RunResult) -> str:
    c = result.counts
    return (f"{c['read']} read, {c['delivered']} delivered, {c['unchanged']} unchanged, "
            f"{c['retried']} to the outbox, {c['dead']} dead letters ({result.outcome})")


def _summary_text(s: dict[str, Any], injected: dict[str, int], dead: list[dict[str, Any]],
                  diff: dict[str, Any], workdir: Path) -> str:
    faults = ", ".join(f"{k}×{v}" for k, v in sorted(injected.items())) or "none"
    rates = ", ".join(f"{n} {r:.1%}" for n, r in diff["rates"].items())
    lines = [
        "",
        f"summary ({s['seconds']} s)",
        f"  items pushed          {s['pushed']} of {s['items']}",
        f"  items pulled          {s['pulled']}",
        f"  faults injected       {s['faults_injected']} ({faults})",
        f"  retried in process    {s['retried_in_process']}",
        f"  sent to the outbox    {s['sent_to_outbox']}, drained in {s['replay_rounds']} replays",
        f"  dead letters          {s['dead_letters']}",
        f"  outbox pending        {s['outbox_pending']}",
        f"  applied twice         {s['platform_applied_twice']}",
        f"  remaining differences {s['remaining_differences']} in {s['items_differing']} items "
        f"({', '.join(f'{k} {v}' for k, v in diff['kinds'].items()) or 'none'}); "
        f"consistency vs hall_db: {rates}",
    ]
    if dead:
        lines.append(f"  the dead letters stay until their source is fixed: "
                     f"syncd --config {workdir / 'syncd.toml'} outbox list")
    lines.append(f"  log: {s['log']}")
    return "\n".join(lines)
