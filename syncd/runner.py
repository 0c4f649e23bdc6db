"""Run a job or an outbox replay for the CLI: through the running daemon when there
is one (so a job never runs twice at once), else in this process under the
state DB's job lock."""

from __future__ import annotations

import dataclasses
from typing import Any

from syncd.engine import RunRequest, RunResult, SyncEngine


def result_dict(result: RunResult) -> dict[str, Any]:
    return dataclasses.asdict(result)


def _local_engine(ctx: Any) -> SyncEngine:
    from syncd.progress import cli_progress

    return SyncEngine(ctx.config, ctx.store(), progress=cli_progress())


def run_via_daemon_or_locally(ctx: Any, req: RunRequest) -> dict[str, Any]:
    engine = _local_engine(ctx)
    try:
        return result_dict(engine.run(req))
    finally:
        engine.store.close()


def replay_via_daemon_or_locally(ctx: Any, *, job: str | None, items: list[str],
                                 include_dead: bool) -> list[dict[str, Any]]:
    engine = _local_engine(ctx)
    try:
        return [result_dict(r) for r in engine.replay(job=job, items=items or None,
                                                      include_dead=include_dead)]
    finally:
        engine.store.close()
