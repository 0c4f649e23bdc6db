"""The admin API of a real daemon: token required, manual resync through the API and the CLI,
one run per job at a time, outbox list and replay."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from daemon_harness import TOKEN, daemon_config, put_outbox_row
from helpers import hashes

pytest_plugins = ["daemon_fixtures"]  # the harness and channel fixtures


@pytest.fixture
def started(harness, channels, tmp_path):
    """A daemon with one unscheduled job (page size 10, so a full run takes a while)."""
    ch = channels()
    port = harness.port()
    state = f"sqlite:///{tmp_path}/state.db"
    cfg = daemon_config(tmp_path / "syncd.toml", state_db=state, channels=ch.as_config(),
                        port=port, jobs={"job": {"source": "hall", "targets": ["portal"],
                                                 "page_size": 10}})
    return harness.start(cfg, port, log_level="DEBUG"), cfg, ch, state


PROTECTED = ["/status", "/ready", "/runs", "/runs/x", "/outbox", "/metrics", "/reports"]


def test_requests_without_the_right_token_are_refused(started):
    daemon = started[0]
    for token in (None, "", "wrong-token-0123456789", TOKEN + "x", TOKEN[:-1]):
        for path in PROTECTED:
            resp = daemon.api("GET", path, token=token)
            assert resp.status_code == 401, path
            assert resp.headers["www-authenticate"].startswith("Bearer")
        for path in ("/jobs/job/run", "/outbox/replay"):
            assert daemon.api("POST", path, token=token, json={}).status_code == 401, path
    basic = daemon.api("GET", "/status", token=None, auth=("admin", TOKEN))
    assert basic.status_code == 401  # the token under another scheme is no token
    assert daemon.api("GET", "/health", token=None).json() == {"status": "ok", "service": "syncd"}
    assert daemon.runs() == []  # nothing ran


def test_item_resync_through_the_api_runs_once_and_shows_in_history(started):
    daemon, _, ch, _ = started
    code = ch.codes[42]
    resp = daemon.api("POST", "/jobs/job/run", json={"items": [code]})
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["outcome"] == "ok" and result["counts"]["delivered"] == 1
    (run,) = daemon.runs(job="job")
    assert (run["id"], run["trigger"], run["mode"], run["delivered"]) == \
        (result["run_id"], "manual", "items", 1)
    detail = daemon.api("GET", f"/runs/{run['id']}").json()
    assert detail["outcome"] == "ok" and detail["quarantine"] == []
    assert daemon.api("GET", "/runs/no-such-run").status_code == 404
    assert list(hashes(ch.dst_url, "portal_db")) == [code]


def test_cli_sync_goes_through_the_running_daemon(started, harness):
    daemon, cfg, ch, _ = started
    code = ch.codes[9]
    done = harness.cli(cfg, "sync", "job", "--item", code, "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    (run,) = daemon.runs()
    assert run["id"] == result["run_id"]
    assert run["trigger"] == "manual" and run["mode"] == "items"  # the daemon ran it, not the CLI
    assert "run_via_daemon" in done.stderr


def test_two_triggers_at_once_one_runs_the_other_is_told_it_is_running(started, harness):
    daemon, cfg, _, _ = started
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: daemon.api("POST", "/jobs/job/run",
                                                      json={"full": True}), range(2)))
    assert sorted(r.status_code for r in answers) == [200, 409]
    ran = next(r for r in answers if r.status_code == 200).json()
    refused = next(r for r in answers if r.status_code == 409).json()
    assert refused["error"] == "job job is already running"
    assert refused["run_id"] == ran["run_id"]
    assert [r["id"] for r in daemon.runs()] == [ran["run_id"]]

    started_ = daemon.api("POST", "/jobs/job/run?wait=false", json={"full": True})
    assert started_.status_code == 202
    busy = harness.cli(cfg, "sync", "job")
    assert busy.returncode == 4, busy.stderr[-2000:]  # exit code: already running
    assert "already running" in busy.stderr and started_.json()["run_id"] in busy.stderr


def test_outbox_list_and_replay_through_the_api_and_the_cli(started, harness):
    daemon, cfg, ch, state = started
    first, second = ch.codes[3], ch.codes[4]
    put_outbox_row(state, "job", "portal", first)
    put_outbox_row(state, "job", "portal", second)
    rows = daemon.api("GET", "/outbox", params={"status": "pending"}).json()["outbox"]
    assert [r["item_code"] for r in rows] == [first, second]
    assert "payload" not in rows[0]
    assert daemon.api("GET", "/status").json()["outbox"] == {"pending": 2, "dead": 0}

    resp = daemon.api("POST", "/outbox/replay", json={"items": [first]})
    assert resp.status_code == 200, resp.text
    (result,) = resp.json()["results"]
    assert result["outcome"] == "ok" and result["counts"]["delivered"] == 1
    done = harness.cli(cfg, "outbox", "replay", "--item", second)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "replay_via_daemon" in done.stderr
    assert daemon.api("GET", "/outbox").json()["outbox"] == []
    assert [r["trigger"] for r in daemon.runs()] == ["replay", "replay"]
    assert set(hashes(ch.dst_url, "portal_db")) == {first, second}


def test_bad_requests_are_answered_with_400_or_404(started):
    daemon = started[0]
    assert daemon.api("POST", "/jobs/nope/run", json={}).status_code == 404
    assert daemon.api("POST", "/jobs/job/run", content=b"[").status_code == 400
    assert daemon.api("POST", "/jobs/job/run", json={"items": [1]}).status_code == 400
    assert daemon.api("POST", "/jobs/job/run", json={"bogus": 1}).status_code == 400
    assert daemon.api("GET", "/runs", params={"limit": "0"}).status_code == 400
    assert daemon.api("GET", "/outbox", params={"status": "gone"}).status_code == 400
    assert daemon.api("GET", "/ready").json() == {"ready": True, "reason": "ready"}
    assert daemon.api("GET", "/reports").json() == {"dir": None, "files": []}
