"""`syncd run`: scheduled jobs, the outbox replay and reports, plus the admin API.

    Dispatcher     one run per job at a time in this process (manual, scheduled, replay)
    DaemonEngine   a SyncEngine whose every run goes through the dispatcher
    Daemon         engine + scheduler + metrics; status, readiness, replay, drain
    serve()        the process: signals, the API server thread, graceful stop

Why a dispatcher on top of the state DB's job lock: the lock is the backstop
across processes, but inside the daemon a second trigger must be told at once,
with the id of the run in progress, instead of racing for a row.

SIGTERM/SIGINT: no new run starts; running ones stop after their current page
(recorded and checkpointed, outcome "stopped"); the process exits 0 once they
have. It exits 3 when they have not within the drain timeout (the next start
breaks their stale locks and resumes from the checkpoints), or when the API
server died under it (so systemd's Restart=on-failure brings it back).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from syncd.admin import create_app
from syncd.admin.settings import AdminSettings
from syncd.config import Config
from syncd.engine import RunRequest, RunResult, SyncEngine, owner_id
from syncd.errors import ConfigError, JobBusyError, SyncdError
from syncd.metrics import Metrics
from syncd.scheduler import REPLAY_JOB_ID, build_scheduler, next_runs, report_jobs
from syncd.state.store import StateStore, open_store

log = structlog.get_logger("syncd.daemon")
EXIT_OK, EXIT_ABNORMAL = 0, 3


class AlreadyRunning(JobBusyError):
    """The job is running in this daemon; carries that run's id once it is known."""

    def __init__(self, job: str, run_id: str | None) -> None:
        self.job, self.run_id = job, run_id
        super().__init__(f"job {job} is already running")


class ShuttingDown(SyncdError):
    """The daemon is draining after SIGTERM; no new run starts."""


@dataclass
class ActiveRun:
    """A run the dispatcher has started; waiters read its result or its error."""

    req: RunRequest
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: RunResult | None = None
    error: Exception | None = None

    def outcome(self) -> RunResult:
        """The finished run's result, or the exception it ended with, re-raised."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Dispatcher:
    """Runs jobs one at a time per job name, and keeps track of what is running."""

    def __init__(self, execute: Callable[[RunRequest], RunResult], store: StateStore,
                 metrics: Metrics) -> None:
        self._execute_run, self.store, self.metrics = execute, store, metrics
        self._lock = threading.Lock()
        self._active: dict[str, ActiveRun] = {}
        self.closed = False

    def run(self, req: RunRequest) -> RunResult:
        """Run ``req`` in this thread; AlreadyRunning/ShuttingDown when it cannot start."""
        active = self._claim(req)
        self._execute(active)
        return active.outcome()

    def start(self, req: RunRequest) -> ActiveRun:
        """Claim the job now (so a refusal is immediate) and run it in a new thread."""
        active = self._claim(req)
        threading.Thread(target=self._execute, args=(active,), name=f"run-{req.job}",
                         daemon=True).start()
        return active

    def run_id(self, job: str, *, wait: float = 0.0) -> str | None:
        """The id of the job's run in progress (or just finished), waiting up to ``wait`` s."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                active = self._active.get(job)
            if active is not None and active.result is not None:
                return active.result.run_id
            holder = self.store.lock_holder(job)
            if holder is not None and holder["owner"] == owner_id():
                return str(holder["run_id"])
            if active is None or active.done.is_set() or time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._active)

    def close(self) -> None:
        """Refuse new runs from now on (the daemon is stopping)."""
        with self._lock:
            self.closed = True

    def wait_idle(self, timeout: float) -> bool:
        """Wait for the runs in progress to end; False when some are still going."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._active.values())
            if not pending:
                return True
            if not pending[0].done.wait(max(0.0, deadline - time.monotonic())):
                return False

    def _claim(self, req: RunRequest) -> ActiveRun:
        with self._lock:
            if self.closed:
                raise ShuttingDown("syncd is shutting down; no new runs start")
            busy = req.job in self._active
            if not busy:
                self._active[req.job] = active = ActiveRun(req)
        if busy:  # the other run may not have its id yet: it is taking the DB lock
            raise AlreadyRunning(req.job, self.run_id(req.job, wait=2.0))
        return active

    def _execute(self, active: ActiveRun) -> None:
        req = active.req
        try:
            with structlog.contextvars.bound_contextvars(job=req.job, trigger=req.trigger):
                active.result = self._execute_run(req)
        except Exception as exc:  # noqa: BLE001 - handed to the waiter, re-raised by outcome()
            active.error = exc
        finally:
            seconds = time.monotonic() - active.started
            if active.result is not None:
                self.metrics.observe(req.job, req.trigger, active.result.outcome,
                                     active.result.counts, seconds)
            elif not isinstance(active.error, JobBusyError):  # busy elsewhere: no run happened
                self.metrics.observe(req.job, req.trigger, "failed", {}, seconds)
            with self._lock:
                del self._active[req.job]
            active.done.set()


class DaemonEngine(SyncEngine):
    """A SyncEngine whose ``run`` goes through the dispatcher, so replays are serialised too."""

    def __init__(self, config: Config, store: StateStore, *, stop: threading.Event,
                 metrics: Metrics) -> None:
        super().__init__(config, store, stop=stop)
        self.dispatcher = Dispatcher(lambda req: SyncEngine.run(self, req), store, metrics)

    def run(self, req: RunRequest) -> RunResult:
        return self.dispatcher.run(req)


class Daemon:
    """The engine behind the dispatcher, the scheduler, and the metrics, started together."""

    def __init__(self, config: Config, store: StateStore, settings: AdminSettings) -> None:
        self.config, self.store = config, store
        self.stop_event = threading.Event()
        self.metrics = Metrics(config.jobs, store.outbox_counts)
        self.engine = DaemonEngine(config, store, stop=self.stop_event, metrics=self.metrics)
        self.dispatcher = self.engine.dispatcher
        self.scheduler = build_scheduler(
            config, run_job=self.scheduled_run, replay=self.scheduled_replay,
            replay_every=settings.replay_every,
            reports=report_jobs(config))
        reports_dir = config.reports.get("dir")
        self.reports_dir = Path(config.file).parent / reports_dir if reports_dir else None

    def start(self) -> None:
        self.scheduler.start()

    def stop(self, timeout: float) -> bool:
        """Stop taking runs, let the current pages finish; True when all runs ended in time."""
        self.dispatcher.close()
        self.stop_event.set()
        self.scheduler.shutdown(wait=False)
        return self.dispatcher.wait_idle(timeout)

    def scheduled_run(self, job: str) -> None:
        self._quietly(lambda: self.dispatcher.run(RunRequest(job, trigger="schedule")), job=job)

    def scheduled_replay(self) -> None:
        self._quietly(lambda: self.replay(), job=REPLAY_JOB_ID)

    def replay(self, *, job: str | None = None, items: list[str] | None = None,
               include_dead: bool = False) -> list[RunResult]:
        """Re-send outbox items (their latest content) through the dispatcher."""
        return self.engine.replay(job=job, items=items or None, include_dead=include_dead)

    def status(self) -> dict[str, Any]:
        """Jobs with their next, current and last runs; outbox size and dead letters."""
        nexts = next_runs(self.scheduler) if self.scheduler.running else {}
        counts = self.store.outbox_counts()
        running = set(self.dispatcher.running())
        jobs = []
        for name, job in self.config.jobs.items():
            last = self.store.runs(name, limit=1)
            current = self.dispatcher.run_id(name) if name in running else None
            jobs.append({"name": name, "source": job.source, "targets": list(job.targets),
                         "mode": job.mode, "schedule": job.schedule,
                         "next_run": nexts.get(f"job:{name}"), "running_run_id": current,
                         "last_run": last[0] if last else None})
        return {"jobs": jobs, "outbox": {"pending": counts.get("pending", 0),
                                         "dead": counts.get("dead", 0)},
                "replay_next_run": nexts.get(REPLAY_JOB_ID),
                "reports": {k.removeprefix("report:"): v for k, v in nexts.items()
                            if k.startswith("report:")},
                "stopping": self.dispatcher.closed}

    def ready(self) -> tuple[bool, str]:
        """Ready = scheduling, not stopping, and the state DB answers."""
        if self.dispatcher.closed:
            return False, "stopping"
        if not self.scheduler.running:
            return False, "scheduler not running"
        try:
            with self.store.engine.connect() as conn:
                conn.execute(text("select 1"))
        except SQLAlchemyError as exc:
            return False, f"state DB unreachable: {type(exc).__name__}"
        return True, "ready"

    @staticmethod
    def _quietly(fn: Callable[[], Any], *, job: str) -> None:
        """Scheduled work: a busy job or a failed run is logged; the schedule goes on."""
        try:
            fn()
        except (JobBusyError, ShuttingDown) as exc:
            log.info("scheduled_run_skipped", job=job, reason=str(exc))
        except SyncdError as exc:
            log.warning("scheduled_run_failed", job=job, error=str(exc),
                        error_type=type(exc).__name__)


def serve(config: Config, *, drain_timeout: float = 25.0) -> int:
    """Run the daemon until SIGTERM/SIGINT; the process exit code.

    Raises:
        ConfigError: no admin token, a bad schedule, or the API address is taken.
        StateError: the state DB cannot be opened or migrated.
    """
    settings = AdminSettings.from_config(config)
    token = settings.require_token(config)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: _on_signal(signum, stopping))
    store = open_store(config.state_db, max_attempts=config.retry.outbox_attempts)
    try:
        daemon = Daemon(config, store, settings)
        server = uvicorn.Server(uvicorn.Config(
            create_app(daemon, token), log_config=None, access_log=False, lifespan="off",
            server_header=False, timeout_graceful_shutdown=5))
        api = threading.Thread(target=server.run, kwargs={"sockets": [_listen(settings, config)]},
                               name="admin-api", daemon=True)
        daemon.start()
        api.start()
        log.info("daemon_started", admin=settings.base_url, timezone=config.timezone,
                 jobs=sorted(config.jobs), pid=os.getpid())
        api_died = False
        while not stopping.wait(0.5) and not api_died:
            api_died = not api.is_alive()
        if api_died:
            log.error("admin_api_died")
        log.info("daemon_stopping", drain_timeout_s=drain_timeout,
                 running=daemon.dispatcher.running())
        drained = daemon.stop(drain_timeout)
        server.should_exit = True
        api.join(10)
    finally:
        store.close()
    if not drained:
        log.error("drain_timed_out", running=daemon.dispatcher.running(),
                  hint="their locks are broken and their runs resumed at the next start")
        logging.shutdown()
        os._exit(EXIT_ABNORMAL)  # worker threads still in a page would block a normal exit
    log.info("daemon_stopped")
    return EXIT_ABNORMAL if api_died else EXIT_OK


def _on_signal(signum: int, stopping: threading.Event) -> None:
    if stopping.is_set():
        log.info("already_stopping", signal=signal.Signals(signum).name)
    stopping.set()


def _listen(settings: AdminSettings, config: Config) -> socket.socket:
    """Bind the API socket here, so a taken port is a clear error before anything runs."""
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"admin API cannot listen on {settings.host}:{settings.port}: "
                          f"{exc.strerror}", file=config.file, key="admin.port") from None
    return sock
