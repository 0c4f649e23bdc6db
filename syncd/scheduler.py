"""APScheduler wiring: the daemon's timetable, rebuilt from the config at every start.

Why an in-memory job store: the config file is the one source of truth for what
runs when; a persistent job store would keep a schedule the config no longer
says. What a run did is persisted instead (``job_run`` in the state DB).

Schedule strings (``[jobs.X] schedule``, ``[reports.scheduled.X] schedule``)::

    interval:30s | interval:5m | interval:2h | interval:1d | interval:250ms
    cron:<minute> <hour> <day> <month> <weekday>      (crontab, in the config's time zone)

Scheduled reports (``[reports.scheduled.NAME]``: ``schedule``, ``args``) run
``syncd report <args>`` as child processes.

Job defaults: ``coalesce`` (a backlog after a pause runs once, not N times),
``max_instances=1`` (a job never overlaps itself), ``misfire_grace_time=60``
(a run more than a minute late is skipped and the next one waits its turn).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syncd.config import Config
from syncd.errors import ConfigError

JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}
REPLAY_JOB_ID = "outbox-replay"
log = structlog.get_logger("syncd.scheduler")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``"30s"`` → 30.0 seconds; raises ValueError on anything else or on zero."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 2h, 1d or 250ms")
    seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be longer than zero")
    return seconds


def parse_schedule(text: str, tz: tzinfo) -> BaseTrigger:
    """A trigger for ``interval:<duration>`` or ``cron:<crontab>``; ValueError when malformed."""
    kind, _, spec = text.partition(":")
    kind = kind.strip().lower()
    if kind == "interval":
        return IntervalTrigger(seconds=parse_duration(spec), timezone=tz)
    if kind == "cron":
        return CronTrigger.from_crontab(spec.strip(), timezone=tz)
    raise ValueError(f"{text!r}: expected interval:<duration> or cron:<5-field crontab>")


def zone(config: Config) -> tzinfo:
    """The config's time zone (cron schedules are read in it)."""
    try:
        return ZoneInfo(config.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {config.timezone!r}", file=config.file,
                          key="timezone") from None


def trigger_for(config: Config, text: str, key: str) -> BaseTrigger:
    """Parse one schedule string from the config, blaming ``key`` when it is wrong."""
    try:
        return parse_schedule(text, zone(config))
    except ValueError as exc:
        raise ConfigError(str(exc), file=config.file, key=key) from None


@dataclass(frozen=True)
class ReportJob:
    """A scheduled ``syncd report …``, run as a child process so a big report's memory
    is returned to the system when it ends, never kept by the long-lived daemon."""

    name: str
    schedule: str
    config_file: str
    args: tuple[str, ...]
    timeout: float = 3600.0

    def __call__(self) -> None:
        argv = [sys.executable, "-m", "syncd.cli", "--config", self.config_file, "report",
                *self.args]
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, timeout=self.timeout,
                                  check=False, text=True)
        except subprocess.TimeoutExpired:
            log.error("report_timed_out", report=self.name, timeout_s=self.timeout)
            return
        event = log.info if done.returncode in (0, 1) else log.error
        event("report_finished", report=self.name, exit_code=done.returncode,
              output=done.stdout.strip()[-500:])


def report_jobs(config: Config) -> list[ReportJob]:
    """``[reports.scheduled.NAME]`` tables: ``schedule`` and ``args`` (after ``syncd report``)."""
    scheduled = config.reports.get("scheduled", {})
    if not isinstance(scheduled, dict):
        raise ConfigError("must be a table of reports", file=config.file, key="reports.scheduled")
    jobs = []
    for name, body in scheduled.items():
        where = f"reports.scheduled.{name}"
        body = body if isinstance(body, dict) else {}
        schedule, args = body.get("schedule"), body.get("args")
        if not isinstance(schedule, str):
            raise ConfigError('needs schedule = "cron:…" or "interval:…"', file=config.file,
                              key=f"{where}.schedule")
        if not args or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ConfigError('needs args = ["reconcile", …] (the arguments after `syncd report`)',
                              file=config.file, key=f"{where}.args")
        jobs.append(ReportJob(name, schedule, config.file, tuple(args)))
    return jobs


def build_scheduler(config: Config, *, run_job: Callable[[str], Any],
                    replay: Callable[[], Any], replay_every: float | None,
                    reports: Sequence[ReportJob] = ()) -> BackgroundScheduler:
    """A scheduler (not yet started) holding every scheduled job of ``config``.

    Args:
        run_job: called with a job name when that job is due.
        replay: the outbox replay, every ``replay_every`` seconds (None: never).
        reports: scheduled reports (see :func:`report_jobs`).

    Raises:
        ConfigError: a schedule string is malformed (naming its key).
    """
    tz = zone(config)
    entries: list[tuple[str, BaseTrigger, Callable[..., Any], tuple[Any, ...]]] = []
    for name, job in config.jobs.items():
        if job.schedule:
            trigger = trigger_for(config, job.schedule, f"jobs.{name}.schedule")
            entries.append((f"job:{name}", trigger, run_job, (name,)))
    if replay_every is not None:
        entries.append((REPLAY_JOB_ID, IntervalTrigger(seconds=replay_every, timezone=tz),
                        replay, ()))
    for report in reports:
        entries.append((f"report:{report.name}", trigger_for(
            config, report.schedule, f"reports.scheduled.{report.name}.schedule"), report, ()))
    # one worker per scheduled entry: a slow job never delays another job's start
    scheduler = BackgroundScheduler(
        timezone=tz, job_defaults=JOB_DEFAULTS,
        executors={"default": ThreadPoolExecutor(max_workers=max(2, len(entries)))})
    for job_id, trigger, func, args in entries:
        scheduler.add_job(func, trigger, args=args, id=job_id, name=job_id,
                          replace_existing=True)
    return scheduler


def next_runs(scheduler: BackgroundScheduler) -> dict[str, str | None]:
    """Scheduler job id → its next fire time (ISO 8601, config zone), None when paused."""
    return {job.id: job.next_run_time.isoformat() if job.next_run_time else None
            for job in scheduler.get_jobs()}
