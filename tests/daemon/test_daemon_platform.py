"""A real daemon pushing a department DB to the platform simulator on a schedule, signed
with an app secret from the environment that never shows in a log line."""

from __future__ import annotations

import time

from daemon_harness import PLATFORM_SECRET, daemon_config

from syncd.sim import PlatformSimulator, serve_in_thread

pytest_plugins = ["daemon_fixtures"]  # the harness and channel fixtures

APP_KEY = "syncd-city-app"


def test_scheduled_push_to_the_platform_lands_every_item_once(harness, channels, tmp_path):
    ch = channels()
    sim = PlatformSimulator({APP_KEY: PLATFORM_SECRET})
    with serve_in_thread(sim) as server:
        port = harness.port()
        cfg = daemon_config(
            tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db", port=port,
            channels={"hall": ("sql", ch.src_url, "hall_db.yaml"),
                      "platform": ("platform", server.url, "platform/reference.yaml")},
            options={"platform": {"app_key": f'"{APP_KEY}"',
                                  "app_secret": '"${SYNCD_PLATFORM_SECRET}"'}},
            jobs={"hall_to_platform": {"source": "hall", "targets": ["platform"],
                                       "page_size": 500, "schedule": "interval:1s"}})
        daemon = harness.start(cfg, port, log_level="DEBUG")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [r for r in daemon.runs() if r["outcome"] not in ("running",)]
            if len(done) >= 2:
                break
            time.sleep(0.2)
        first, *later = sorted(done, key=lambda r: r["started_at"])
        assert first["outcome"] == "ok" and first["delivered"] == len(ch.codes)
        assert later and all(r["outcome"] == "ok" and r["delivered"] == 0 for r in later)
        assert len(sim.items()) == len(ch.codes)
        assert not sim.applied_twice()
        code, _ = daemon.terminate()
        assert code == 0
