"""Stopping and refusing to start: SIGTERM mid-run exits 0 with the run recorded as stopped and
the next start resumes (PostgreSQL state DB and target); bad set-ups exit 2 naming the key."""

from __future__ import annotations

import signal
import socket
import time

import sqlalchemy as sa
from daemon_harness import FAKE_PASSWORD, daemon_config, state_rows
from helpers import hashes
from sqlalchemy.engine import make_url

from syncd.state import tables as t

pytest_plugins = ["daemon_fixtures"]  # the harness and channel fixtures


def _with_password(url: str) -> str:
    """The local test server trusts loopback, so a password in the URL is only there to leak."""
    return make_url(url).set(password=FAKE_PASSWORD).render_as_string(hide_password=False)


def _delivered(state_url: str) -> int:
    engine = sa.create_engine(state_url)
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(t.item_state)).scalar_one()
    engine.dispose()
    return int(n)


def test_sigterm_mid_run_exits_0_and_the_next_start_resumes(harness, channels, fresh_db,
                                                            tmp_path):
    ch = channels(target_url=fresh_db("postgres"))
    state = _with_password(fresh_db("postgres"))
    port = harness.port()
    def config(page_size: int):
        return daemon_config(tmp_path / "syncd.toml", state_db=state, channels=ch.as_config(),
                             port=port, jobs={"job": {"source": "hall", "targets": ["portal"],
                                                      "page_size": page_size}})

    cfg = config(page_size=10)  # small pages: the run is long enough to be stopped mid-way
    daemon = harness.start(cfg, port)
    resp = daemon.api("POST", "/jobs/job/run?wait=false", json={})
    assert resp.status_code == 202, resp.text
    run_id = resp.json()["run_id"]
    deadline = time.monotonic() + 20
    while _delivered(state) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.api("GET", "/status").json()["jobs"][0]["running_run_id"] == run_id

    code, seconds = daemon.terminate(timeout=30)
    assert code == 0, daemon.stderr()[-3000:]
    assert seconds < 30
    (run,) = state_rows(state, t.job_run)
    assert (run["id"], run["outcome"]) == (run_id, "stopped")
    assert 0 < run["delivered"] < len(ch.codes)
    assert state_rows(state, t.job_lock) == []
    assert state_rows(state, t.checkpoint)  # the stop left a checkpoint to resume from
    assert _delivered(state) == run["delivered"]  # the state says what was recorded, no more

    again = harness.start(config(page_size=300), port)  # big pages: the rest goes quickly
    resp = again.api("POST", "/jobs/job/run", json={})
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["outcome"] == "ok"
    assert run["delivered"] + result["counts"]["delivered"] == len(ch.codes)  # resumed, not redone
    assert hashes(ch.dst_url, "portal_db") == hashes(ch.src_url, "hall_db")
    code, _ = again.terminate()
    assert code == 0


def test_a_drain_that_times_out_exits_3_and_the_next_start_takes_over(harness, channels,
                                                                     tmp_path):
    ch = channels()
    state = f"sqlite:///{tmp_path}/state.db"
    port = harness.port()

    def config(page_size: int):
        return daemon_config(tmp_path / "syncd.toml", state_db=state, channels=ch.as_config(),
                             port=port, jobs={"job": {"source": "hall", "targets": ["portal"],
                                                      "page_size": page_size}})

    daemon = harness.start(config(page_size=10), port, drain_timeout=0)
    assert daemon.api("POST", "/jobs/job/run?wait=false", json={}).status_code == 202
    code, seconds = daemon.terminate(timeout=30)
    assert code == 3 and seconds < 10
    assert '"drain_timed_out"' in daemon.stderr()

    again = harness.start(config(page_size=300), port)
    result = again.api("POST", "/jobs/job/run", json={}).json()
    assert result["outcome"] == "ok", result
    first, second = sorted(state_rows(state, t.job_run), key=lambda r: r["started_at"])
    # killed mid-page: the next start broke the dead owner's lock and closed its run;
    # or the page ended while the process was exiting: the run recorded itself as stopped
    assert first["outcome"] in ("interrupted", "stopped")
    assert second["outcome"] == "ok"
    assert hashes(ch.dst_url, "portal_db") == hashes(ch.src_url, "hall_db")


def test_sigint_on_an_idle_daemon_exits_0_at_once(harness, channels, tmp_path):
    port = harness.port()
    cfg = daemon_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                        channels=channels().as_config(), port=port,
                        jobs={"job": {"source": "hall", "targets": ["portal"],
                                      "schedule": "cron:0 3 * * *"}})
    daemon = harness.start(cfg, port)
    assert daemon.api("GET", "/ready").status_code == 200
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.wait(timeout=15) == 0
    assert '"daemon_stopped"' in daemon.stderr()


def _refused(harness, cfg) -> str:
    done = harness.cli(cfg, "run", timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    return done.stderr


def test_the_daemon_refuses_to_start_without_a_token(harness, channels, tmp_path):
    cfg = daemon_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                        channels=channels().as_config(), port=harness.port(), token=False,
                        jobs={"job": {"source": "hall", "targets": ["portal"]}})
    assert "[admin.token] is required" in _refused(harness, cfg)


def test_a_bad_schedule_names_its_key(harness, channels, tmp_path):
    cfg = daemon_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                        channels=channels().as_config(), port=harness.port(),
                        jobs={"job": {"source": "hall", "targets": ["portal"],
                                      "schedule": "cron:61 * * * *"}})
    assert "[jobs.job.schedule]" in _refused(harness, cfg)


def test_a_taken_port_names_the_admin_port(harness, channels, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = daemon_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                            channels=channels().as_config(), port=taken.getsockname()[1],
                            jobs={"job": {"source": "hall", "targets": ["portal"]}})
        assert "[admin.port] admin API cannot listen" in _refused(harness, cfg)
