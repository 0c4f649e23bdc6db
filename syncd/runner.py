"""Run a job or an outbox replay for the CLI: through the running daemon when there
is one (so a job never runs twice at once), else in this process under the
state DB's job lock (the backstop when no daemon runs).

A daemon is looked for at the config's ``[admin]`` address; one that answers
/health gets the request. No ``[admin]`` token in the config means no daemon
can be asked, so the run is local.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import structlog

from syncd.admin.client import AdminClient
from syncd.admin.settings import AdminSettings
from syncd.engine import RunRequest, RunResult, SyncEngine

T = TypeVar("T")
log = structlog.get_logger("syncd.runner")


def result_dict(result: RunResult) -> dict[str, Any]:
    return dataclasses.asdict(result)


@contextmanager
def _daemon(ctx: Any) -> Iterator[AdminClient | None]:
    """A client of the running daemon, or None when there is none to ask."""
    settings = AdminSettings.from_config(ctx.config)
    if not settings.token:
        yield None
        return
    client = AdminClient(settings)
    try:
        yield client if client.alive() else None
    finally:
        client.close()


def _locally(ctx: Any, fn: Callable[[SyncEngine], T]) -> T:
    from syncd.progress import cli_progress

    engine = SyncEngine(ctx.config, ctx.store(), progress=cli_progress())
    try:
        return fn(engine)
    finally:
        engine.store.close()


def run_via_daemon_or_locally(ctx: Any, req: RunRequest) -> dict[str, Any]:
    """Run ``req`` once; the result as a dict (a RunResult's fields)."""
    with _daemon(ctx) as daemon:
        if daemon is not None:
            log.info("run_via_daemon", job=req.job, items=len(req.items))
            return daemon.run(req)
    return result_dict(_locally(ctx, lambda engine: engine.run(req)))


def replay_via_daemon_or_locally(ctx: Any, *, job: str | None, items: list[str],
                                 include_dead: bool) -> list[dict[str, Any]]:
    """Replay outbox items; one result dict per job that had any."""
    with _daemon(ctx) as daemon:
        if daemon is not None:
            log.info("replay_via_daemon", job=job, items=len(items))
            return daemon.replay(job=job, items=items, include_dead=include_dead)
    return [result_dict(r) for r in _locally(ctx, lambda engine: engine.replay(
        job=job, items=items or None, include_dead=include_dead))]
