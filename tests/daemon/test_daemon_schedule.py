"""Scheduled jobs run on their schedule in a real daemon and leave their runs in the history;
the outbox replay runs as a scheduled job too."""

from __future__ import annotations

import json
import time

from daemon_harness import daemon_config, put_outbox_row
from helpers import hashes

pytest_plugins = ["daemon_fixtures"]  # the harness and channel fixtures


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_interval_job_runs_on_schedule_and_records_each_run(harness, channels, tmp_path):
    ch = channels()
    port = harness.port()
    cfg = daemon_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                        channels=ch.as_config(), port=port,
                        jobs={"hall_to_portal": {"source": "hall", "targets": ["portal"],
                                                 "page_size": 500, "schedule": "interval:1s"}})
    daemon = harness.start(cfg, port)

    _wait_for(lambda: len([r for r in daemon.runs() if r["outcome"] == "ok"]) >= 3, 30,
              "three finished scheduled runs")
    runs = [r for r in daemon.runs(job="hall_to_portal") if r["outcome"] != "running"]
    assert {r["trigger"] for r in runs} == {"schedule"}
    assert {r["outcome"] for r in runs} == {"ok"}
    assert sum(r["delivered"] for r in daemon.runs(limit=100)) == len(ch.codes)
    assert hashes(ch.dst_url, "portal_db") == hashes(ch.src_url, "hall_db")

    status = daemon.api("GET", "/status").json()
    (job,) = status["jobs"]
    assert job["next_run"] is not None and job["next_run"].endswith("+08:00")  # Asia/Shanghai
    assert job["last_run"]["trigger"] == "schedule"
    assert status["outbox"] == {"pending": 0, "dead": 0}
    metrics = daemon.api("GET", "/metrics").text
    assert 'syncd_runs_total{job="hall_to_portal",outcome="ok",trigger="schedule"}' in metrics
    assert f'syncd_items_total{{job="hall_to_portal",outcome="delivered"}} {len(ch.codes)}.0' \
        in metrics
    assert 'syncd_outbox_depth{status="pending"} 0.0' in metrics
    assert 'syncd_last_success_timestamp_seconds{job="hall_to_portal"}' in metrics


def test_scheduled_outbox_replay_resends_a_due_item(harness, channels, tmp_path):
    ch = channels()
    port = harness.port()
    state = f"sqlite:///{tmp_path}/state.db"
    cfg = daemon_config(tmp_path / "syncd.toml", state_db=state, channels=ch.as_config(),
                        port=port, replay_every="1s",
                        jobs={"hall_to_portal": {"source": "hall", "targets": ["portal"]}})
    daemon = harness.start(cfg, port)
    code = ch.codes[7]
    put_outbox_row(state, "hall_to_portal", "portal", code)
    assert daemon.api("GET", "/outbox").json()["outbox"][0]["item_code"] == code

    replay = _wait_for(lambda: [r for r in daemon.runs() if r["trigger"] == "replay"
                                and r["outcome"] == "ok"], 20, "a scheduled replay")
    assert replay[0]["mode"] == "items" and replay[0]["delivered"] == 1
    assert daemon.api("GET", "/outbox").json()["outbox"] == []
    assert code in hashes(ch.dst_url, "portal_db")


def test_scheduled_report_writes_files_the_api_lists(harness, channels, tmp_path):
    ch = channels()
    port = harness.port()
    cfg = daemon_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                        channels=ch.as_config(), port=port,
                        jobs={"hall_to_portal": {"source": "hall", "targets": ["portal"]}})
    with cfg.open("a", encoding="utf-8") as fh:
        fh.write('\n[reports]\ndir = "reports"\n'
                 '[reports.scheduled.daily_reconcile]\nschedule = "interval:2s"\n'
                 'args = ["reconcile", "--channels", "hall,portal", "--format", "json,html", '
                 f'"--out", "{tmp_path / "reports"}"]\n')
    daemon = harness.start(cfg, port)
    listed = _wait_for(lambda: [f["name"] for f in daemon.api("GET", "/reports").json()["files"]
                                if f["name"].endswith(".json")], 40, "a scheduled report")
    doc = json.loads((tmp_path / "reports" / listed[0]).read_text(encoding="utf-8"))
    # the portal DB is still empty: every item of the hall DB is missing there
    assert doc["kind"] == "reconcile"
    assert {d["kind"] for d in doc["reconcile"]["diffs"]} == {"missing"}
    assert len(doc["reconcile"]["diffs"]) == len(ch.codes)
    code, _ = daemon.terminate()
    assert code == 0
