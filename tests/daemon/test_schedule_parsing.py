"""Schedule strings, the [admin] table and scheduled reports: what the daemon reads at start,
and the key it names when something is wrong."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from syncd.admin.settings import AdminSettings
from syncd.config import Config, JobConfig
from syncd.errors import ConfigError
from syncd.scheduler import (
    JOB_DEFAULTS,
    REPLAY_JOB_ID,
    ReportJob,
    build_scheduler,
    parse_duration,
    parse_schedule,
    report_jobs,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def config(*, schedule: str | None = None, admin: dict | None = None,
           reports: dict | None = None, timezone: str = "Asia/Shanghai") -> Config:
    job = JobConfig(name="hall_to_portal", source="hall", targets=("portal",), schedule=schedule)
    return Config(file="/etc/syncd/syncd.toml", state_db="sqlite://", mappings_dir=Path("."),
                  timezone=timezone, channels={}, jobs={job.name: job}, admin=admin or {},
                  reports=reports or {})


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200),
                                               ("1d", 86400), ("250ms", 0.25), ("0.5s", 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 min", "-1s", "0s", "1w"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_cron_is_read_in_the_configured_zone():
    trigger = parse_schedule("cron:30 2 * * *", SHANGHAI)
    now = datetime(2026, 3, 1, 12, 0, tzinfo=SHANGHAI)
    assert trigger.get_next_fire_time(None, now) == datetime(2026, 3, 2, 2, 30, tzinfo=SHANGHAI)


def test_interval_fires_after_its_period():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=SHANGHAI)
    trigger = parse_schedule("interval:5m", SHANGHAI)
    first = trigger.get_next_fire_time(None, now)
    assert trigger.get_next_fire_time(first, first) - first == timedelta(minutes=5)


@pytest.mark.parametrize("schedule", ["cron:61 * * * *", "cron:* * *", "every 5m", "interval:x"])
def test_a_bad_job_schedule_names_the_job_key(schedule):
    with pytest.raises(ConfigError) as err:
        build_scheduler(config(schedule=schedule), run_job=print, replay=print, replay_every=None)
    assert err.value.key == "jobs.hall_to_portal.schedule"
    assert err.value.file == "/etc/syncd/syncd.toml"


def test_scheduler_holds_jobs_replay_and_reports_with_safe_defaults():
    weekly = ReportJob("weekly", "cron:0 7 * * 1", "syncd.toml", ("inspect",))
    scheduler = build_scheduler(config(schedule="interval:30s"), run_job=print, replay=print,
                                replay_every=60.0, reports=[weekly])
    assert sorted(j.id for j in scheduler.get_jobs()) == [
        "job:hall_to_portal", REPLAY_JOB_ID, "report:weekly"]
    assert JOB_DEFAULTS == {"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}
    assert str(scheduler.timezone) == "Asia/Shanghai"


def test_unknown_time_zone_names_the_timezone_key():
    with pytest.raises(ConfigError) as err:
        build_scheduler(config(timezone="Mars/Olympus"), run_job=print, replay=print,
                        replay_every=None)
    assert err.value.key == "timezone"


def test_admin_defaults_are_loopback_and_a_minutely_replay():
    settings = AdminSettings.from_config(config())
    assert (settings.host, settings.port, settings.token, settings.replay_every) == \
        ("127.0.0.1", 8470, None, 60.0)
    with pytest.raises(ConfigError, match=r"\[admin.token\] is required"):
        settings.require_token(config())
    assert AdminSettings.from_config(config(admin={"replay_every": "off"})).replay_every is None


@pytest.mark.parametrize(("admin", "key"), [({"port": 0}, "admin.port"),
                                            ({"port": "80"}, "admin.port"),
                                            ({"token": "short"}, "admin.token"),
                                            ({"replay_every": "soon"}, "admin.replay_every"),
                                            ({"bind": "0.0.0.0"}, "admin.bind")])
def test_bad_admin_settings_name_their_key(admin, key):
    with pytest.raises(ConfigError) as err:
        AdminSettings.from_config(config(admin=admin))
    assert err.value.key == key


def test_scheduled_reports_need_a_schedule_and_args():
    ok = report_jobs(config(reports={"scheduled": {"weekly": {
        "schedule": "cron:0 7 * * 1", "args": ["reconcile"]}}}))
    assert [(r.name, r.schedule, r.args) for r in ok] == [("weekly", "cron:0 7 * * 1",
                                                           ("reconcile",))]
    for body, key in [({"args": ["x"]}, "schedule"), ({"schedule": "interval:1h"}, "args"),
                      ({"schedule": "interval:1h", "args": "reconcile"}, "args")]:
        with pytest.raises(ConfigError) as err:
            report_jobs(config(reports={"scheduled": {"weekly": body}}))
        assert err.value.key == f"reports.scheduled.weekly.{key}"
