"""Pushing to and pulling from the platform simulator over real HTTP on loopback.

The simulator runs in a thread of the test process; syncd talks to it through
its real connector (signing, envelope, batches, receipts), with faults on.
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from helpers import RunKiller, hashes, seed, write_config
from structlog.testing import capture_logs

from syncd.cli import main
from syncd.codes import MAPPINGS_DIR
from syncd.config import load_config
from syncd.engine import RunRequest, SyncEngine
from syncd.mapping import load_mapping
from syncd.model import content_hash, validate
from syncd.sample import edit, generate
from syncd.sim import PlatformSimulator, serve_in_thread
from syncd.sqlutil import make_engine
from syncd.state.store import open_store

APP, SECRET = "syncd-test", "s3cret-for-tests-only"
PUSH, PULL = "push", "pull"


def _config(tmp_path: Path, platform_url: str, *, secret: str = SECRET, attempts: int = 3,
            source_url: str | None = None, portal_url: str | None = None) -> Path:
    channels = {"platform": ("platform", platform_url, "platform/reference.yaml")}
    jobs = {}
    if source_url:
        channels["hall"] = ("sql", source_url, "hall_db.yaml")
        jobs[PUSH] = {"source": "hall", "targets": ["platform"], "page_size": 300}
    if portal_url:
        channels["portal"] = ("sql", portal_url, "portal_db.yaml")
        jobs[PULL] = {"source": "platform", "targets": ["portal"], "page_size": 100}
    retry = (f"[retry]\nattempts = {attempts}\ninitial = 0.01\nmaximum = 0.05\n"
             "max_retry_after = 0.05\noutbox_attempts = 50\n")
    return write_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                        channels=channels, jobs=jobs, extra=retry,
                        options={"platform": {"app_key": APP, "app_secret": secret,
                                              "timeout": 2.0}})


def _engine(cfg: Path, **kwargs) -> SyncEngine:
    config = load_config(cfg, {})
    store = open_store(config.state_db, max_attempts=config.retry.outbox_attempts)
    return SyncEngine(config, store, sleep=lambda _s: None, **kwargs)


def _platform_hashes(sim: PlatformSimulator) -> dict[str, str]:
    """The platform's items mapped back to canonical, {item_code: content_hash}."""
    mapping = load_mapping(MAPPINGS_DIR / "platform" / "reference.yaml")
    out = {}
    for record in sim.items():
        item = mapping.to_item(record)
        validate(item)
        out[item.item_code] = content_hash(item)
    return out


def _drain(engine: SyncEngine, job: str, rounds: int = 40) -> int:
    """Replay every pending outbox row until none is left; the rounds it took."""
    for n in range(rounds):
        pending = [r["item_code"] for r in engine.store.outbox(job=job, status="pending",
                                                                limit=100_000)]
        if not pending:
            return n
        engine.run(RunRequest(job, trigger="replay", items=tuple(pending)))
    raise AssertionError(f"outbox still not empty after {rounds} replays")


def test_push_5000_items_through_30_percent_faults_lands_each_version_once(tmp_path):
    src = f"sqlite:///{tmp_path}/hall.db"
    seed(src, "hall_db", generate(5000, seed=3))
    sim = PlatformSimulator({APP: SECRET})
    # 30 % of item requests fault: transient errors, dropped connections, and
    # writes applied whose answer is lost (only Idempotency-Key saves those)
    sim.faults.update({"error_ratio": 0.2, "drop_ratio": 0.05, "fault_after_apply_ratio": 0.05,
                       "burst_429": 4, "seed": 11})
    with serve_in_thread(sim) as server:
        engine = _engine(_config(tmp_path, server.url, source_url=src, attempts=2))
        with capture_logs() as logs:
            first = engine.run(RunRequest(PUSH))
        # the app key's quota is kept by this process: the push is not split across workers
        assert not [e for e in logs if e["event"] == "sync_workers_started"]
        assert first.counts["read"] == 5000 and first.counts["dead"] == 0
        assert first.counts["retried"] > 0, "with 30% faults and 2 tries some batches must wait"
        rounds = _drain(engine, PUSH)
        assert rounds >= 1
        assert engine.store.outbox_counts() == {}
        assert sum(sim.dice.served.values()) > 20  # the faults really happened
        assert sim.dice.served["drop_after_apply"] > 0
        ledger = sim.ledger
        assert sorted({code for code, _ in ledger}) == sorted(hashes(src, "hall_db"))
        assert set(ledger.values()) == {1}, sim.applied_twice()
        assert _platform_hashes(sim) == hashes(src, "hall_db")
        again = engine.run(RunRequest(PUSH))
        assert again.counts["delivered"] == 0 and again.outcome == "ok"
        engine.store.close()


def _set_name(url: str, code: str, name: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text('UPDATE "SP_SXXX" SET "SXMC" = :n, "GXSJ" = "GXSJ" WHERE "SXBM" = :c'),
                     {"n": name, "c": code})
    engine.dispose()


def test_rejected_item_is_a_dead_letter_until_fixed_and_replayed(tmp_path):
    items = list(generate(40, seed=5))
    bad = dataclasses.replace(items[17], item_name=items[17].item_name + "（测试）")
    items[17] = bad
    src = f"sqlite:///{tmp_path}/hall.db"
    seed(src, "hall_db", items)
    sim = PlatformSimulator({APP: SECRET})
    sim.faults.update({"reject_text": "测试"})  # a provincial rule syncd does not know
    with serve_in_thread(sim) as server:
        cfg = _config(tmp_path, server.url, source_url=src)
        engine = _engine(cfg)
        result = engine.run(RunRequest(PUSH))
        assert result.counts["delivered"] == 39 and result.counts["dead"] == 1
        assert result.outcome == "partial"
        [row] = engine.store.outbox(job=PUSH)
        assert row["item_code"] == bad.item_code and row["status"] == "dead"
        assert row["attempts"] == 1  # a 2001 is never retried
        assert "TASK_NAME" in row["last_error"] and "测试" in row["last_error"]
        assert [d["field"] for d in row["error_details"]] == ["TASK_NAME"]
        assert sim.get(bad.item_code) is None
        engine.store.close()

        runner = CliRunner()
        # a plain replay leaves dead letters alone: they need a fix first
        plain = runner.invoke(main, ["--config", str(cfg), "outbox", "replay"])
        assert plain.exit_code == 0, plain.output
        assert sim.get(bad.item_code) is None

        _set_name(src, bad.item_code, items[16].item_name + "（分项）")
        fixed = runner.invoke(main, ["--config", str(cfg), "outbox", "replay",
                                     "--item", bad.item_code])
        assert fixed.exit_code == 0, fixed.output
        assert sim.get(bad.item_code)["TASK_NAME"] == items[16].item_name + "（分项）"
        listed = runner.invoke(main, ["--config", str(cfg), "outbox", "list"])
        assert listed.output.strip() == "outbox: empty"
        assert not sim.applied_twice()


def test_incremental_pull_misses_nothing_while_the_platform_changes_under_it(tmp_path):
    sim = PlatformSimulator({APP: SECRET})
    platform_map = load_mapping(MAPPINGS_DIR / "platform" / "reference.yaml")
    items = list(generate(1000, seed=8))
    for item in items:
        sim.put_direct(platform_map.from_item(item))
    portal = f"sqlite:///{tmp_path}/portal.db"
    seed(portal, "portal_db", [])
    rng = random.Random(4)
    edited: list[str] = []

    def edit_platform(_job: str, counts: dict[str, int]) -> None:
        """Between pages: edit items already listed and items still to come."""
        for k in rng.sample(range(len(items)), 7):
            items[k] = edit(items[k], counts["read"] + k)
            sim.put_direct(platform_map.from_item(items[k]))
            edited.append(items[k].item_code)

    with serve_in_thread(sim) as server:
        cfg = _config(tmp_path, server.url, portal_url=portal)
        first = _engine(cfg, progress=edit_platform).run(RunRequest(PULL))
        assert first.outcome == "ok" and len(edited) >= 70
        second = _engine(cfg).run(RunRequest(PULL))
        # the second run re-reads only what changed during (or just before) the first
        assert second.counts["read"] < 300
        assert hashes(portal, "portal_db") == _platform_hashes(sim)
        assert _platform_hashes(sim) == {i.item_code: content_hash(i) for i in items}
        third = _engine(cfg).run(RunRequest(PULL))
        assert third.counts["delivered"] == 0


def test_wrong_secret_is_one_clear_error_and_never_retried(tmp_path):
    src = f"sqlite:///{tmp_path}/hall.db"
    seed(src, "hall_db", generate(20, seed=1))
    sim = PlatformSimulator({APP: SECRET})
    with serve_in_thread(sim) as server:
        wrong = "not-the-" + SECRET
        cfg = _config(tmp_path, server.url, source_url=src, secret=wrong)
        proc = subprocess.run([sys.executable, "-m", "syncd.cli", "--config", str(cfg), "sync",
                               PUSH], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "1001" in errors[0] or "签名" in errors[0], errors[0]
    assert "Traceback" not in proc.stderr
    assert '"retrying"' not in proc.stderr          # refused once, not hammered
    assert wrong not in proc.stderr and wrong not in proc.stdout
    assert sim.items() == []


@pytest.mark.slow
def test_sigkill_during_push_loses_nothing_and_applies_nothing_twice(tmp_path):
    n = 3000
    items = list(generate(n, seed=12))
    src = f"sqlite:///{tmp_path}/hall.db"
    seed(src, "hall_db", items)
    sim = PlatformSimulator({APP: SECRET})
    sim.faults.update({"error_ratio": 0.1, "fault_after_apply_ratio": 0.05, "seed": 2})
    rng = random.Random(99)
    killed = 0
    killer = RunKiller(rng)
    with serve_in_thread(sim) as server:
        cfg = _config(tmp_path, server.url, source_url=src, attempts=6)
        for trial in range(8):
            if trial % 2:  # edits between some trials, so there is new work to push
                picks = rng.sample(range(n), 150)
                for j, k in enumerate(picks):  # stamped after every earlier edit (GXSJ = now)
                    items[k] = dataclasses.replace(edit(items[k], trial), updated_at=datetime(
                        2027, 1, 1, tzinfo=UTC) + timedelta(minutes=10 * trial, seconds=j))
                seed(src, "hall_db", [items[k] for k in picks], create=False)
            # two in three runs are full refreshes (everything re-sent), the others incremental
            kind = "full" if trial % 3 != 2 else "incremental"
            log_path = tmp_path / f"trial{trial}.log"
            with log_path.open("w") as log:
                proc = subprocess.Popen([sys.executable, "-m", "syncd.cli", "--config",
                                         str(cfg), "sync", PUSH,
                                         *(["--full"] if kind == "full" else [])],
                                        stdout=subprocess.DEVNULL, stderr=log)
                killed += killer.kill(proc, log_path, kind)
        assert killed >= 4, "the kills must land inside runs"
        sim.faults.update({"error_ratio": 0.0, "fault_after_apply_ratio": 0.0})
        final = subprocess.run([sys.executable, "-m", "syncd.cli", "--config", str(cfg), "sync",
                                PUSH], capture_output=True, text=True, timeout=300)
        assert final.returncode in (0, 1), final.stderr[-2000:]
        if final.returncode == 1:  # some items waited in the outbox: replay them
            replay = subprocess.run([sys.executable, "-m", "syncd.cli", "--config", str(cfg),
                                     "outbox", "replay", "--all"], capture_output=True,
                                    text=True, timeout=300)
            assert replay.returncode == 0, replay.stderr[-2000:]
        assert _platform_hashes(sim) == hashes(src, "hall_db")
        assert not sim.applied_twice()
        per_code = Counter(code for code, _ in sim.ledger)
        assert len(per_code) == n


def test_two_way_push_sends_base_versions_and_keeps_platform_edits(tmp_path):
    items = list(generate(12, seed=6))
    src = f"sqlite:///{tmp_path}/hall.db"
    seed(src, "hall_db", items)
    sim = PlatformSimulator({APP: SECRET})
    platform_map = load_mapping(MAPPINGS_DIR / "platform" / "reference.yaml")
    with serve_in_thread(sim) as server:
        cfg = _config(tmp_path, server.url, source_url=src)
        text = cfg.read_text(encoding="utf-8").replace(
            "[jobs.push]\n", "[jobs.push]\ntwo_way = true\n")
        cfg.write_text(text, encoding="utf-8")
        engine = _engine(cfg)
        assert engine.run(RunRequest(PUSH)).counts["delivered"] == 12

        both, same, hall_only = items[2], items[5], items[8]
        # both sides edit item 2 differently: a real conflict
        sim.put_direct(platform_map.from_item(edit(both, 0)))
        # item 5 is edited on the platform and the same edit reaches the hall (the
        # reverse job): same content on both sides, no conflict
        sim.put_direct(platform_map.from_item(edit(same, 1)))
        later = datetime(2027, 1, 1, tzinfo=UTC)
        hall_edits = [dataclasses.replace(edit(both, 3), updated_at=later),
                      dataclasses.replace(edit(same, 1), updated_at=later),
                      dataclasses.replace(edit(hall_only, 2), updated_at=later)]
        seed(src, "hall_db", hall_edits, create=False)
        second = engine.run(RunRequest(PUSH))
        assert second.counts["read"] == 3
        assert second.counts["conflicts"] == 1 and second.counts["delivered"] == 2
        [conflict] = engine.store.conflicts(job=PUSH)
        assert conflict["item_code"] == both.item_code and "2003" in conflict["detail"]
        # the platform's own edit of item 2 was not overwritten
        assert platform_map.to_item(sim.get(both.item_code)).office_hours == \
            edit(both, 0).office_hours
        assert content_hash(platform_map.to_item(sim.get(hall_only.item_code))) == \
            content_hash(hall_edits[2])
        # the settled item now carries the platform's version, the base of its next push
        versions = engine.store.delivered_versions(PUSH, "platform", [same.item_code])
        assert versions == {same.item_code: sim.get(same.item_code)["TASK_VERSION"]}
        # a conflict waits for an operator (it is not retried on its own) …
        assert engine.run(RunRequest(PUSH)).counts["read"] == 0
        listed = CliRunner().invoke(main, ["--config", str(cfg), "conflicts"])
        assert both.item_code in listed.output and "2003" in listed.output
        # … who settles it by making the hall agree with the platform: then it is delivered
        agreed = dataclasses.replace(platform_map.to_item(sim.get(both.item_code)),
                                     updated_at=later + timedelta(minutes=1))
        seed(src, "hall_db", [agreed], create=False)
        settled = engine.run(RunRequest(PUSH))
        assert settled.counts["delivered"] == 1 and settled.counts["conflicts"] == 0
        assert not sim.applied_twice()
        engine.store.close()


def test_two_way_is_refused_for_a_target_without_base_versions(tmp_path):
    src, dst = f"sqlite:///{tmp_path}/hall.db", f"sqlite:///{tmp_path}/portal.db"
    seed(src, "hall_db", generate(3, seed=1))
    seed(dst, "portal_db", [])
    cfg = write_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                       channels={"hall": ("sql", src, "hall_db.yaml"),
                                 "portal": ("sql", dst, "portal_db.yaml")},
                       jobs={"j": {"source": "hall", "targets": ["portal"], "two_way": True}})
    result = CliRunner().invoke(main, ["--config", str(cfg), "sync", "j"])
    assert result.exit_code == 2
    assert "two_way needs targets that take a base version; portal does not" in result.output
