"""Repair after a reconciliation: resync differing items from the reference channel.

Each channel that differs gets the reference's current version of its missing,
differing and stale items through the engine (so mapping, state, retries and
the outbox all apply). Where a configured job already carries the reference
into that channel, its job is used, so its delivery state stays true;
otherwise a one-off job ``repair:<reference>-><channel>`` is.

Items only the channel has ("extra") are not removed: whether to cancel them
is a decision for the people who own that channel, and the report lists them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from syncd.config import Config, JobConfig
from syncd.engine import RunRequest, RunResult, SyncEngine
from syncd.reconcile import ReconcileResult
from syncd.state.store import StateStore

REPAIRED_KINDS = ("missing", "differs", "stale")


@dataclass
class RepairPlan:
    channel: str
    job: JobConfig
    items: list[str]
    extra: list[str]  # in the channel only: listed, never removed


def plan(result: ReconcileResult, config: Config) -> list[RepairPlan]:
    """Per channel: the job to use, the items to resync and the extra items left alone."""
    plans = []
    for channel in result.channels:
        diffs = [d for d in result.diffs if d.channel == channel]
        codes = sorted({d.item_code for d in diffs if d.kind in REPAIRED_KINDS})
        extra = sorted({d.item_code for d in diffs if d.kind == "extra"})
        if codes or extra:
            plans.append(RepairPlan(channel, _job_for(config, result.reference, channel),
                                    codes, extra))
    return plans


def repair(config: Config, store: StateStore, plans: Sequence[RepairPlan], *,
           dry_run: bool) -> list[RunResult]:
    """Run each plan's resync (a dry run writes nothing and counts what would be sent)."""
    jobs = dict(config.jobs) | {p.job.name: p.job for p in plans}
    engine = SyncEngine(dataclasses.replace(config, jobs=jobs), store)
    return [engine.run(RunRequest(p.job.name, trigger="repair", items=tuple(p.items),
                                  dry_run=dry_run))
            for p in plans if p.items]


def _job_for(config: Config, reference: str, channel: str) -> JobConfig:
    for job in config.jobs.values():
        if job.source == reference and job.targets == (channel,):
            return job
    return JobConfig(f"repair:{reference}->{channel}", reference, (channel,))
