"""One page through map → compare → load, for every target of the job.

The engine runs it on the pages it reads, and a sync worker
(:mod:`syncd.workers`) on the pages of its key range; either way what comes
back is a :class:`PageDone`, which the engine counts and records, so the
record step stays in one process, in the order the outcomes arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Page
from syncd.config import JobConfig
from syncd.mapping import Mapping
from syncd.pipeline.compare import compare
from syncd.pipeline.load import load, settle_conflicts
from syncd.pipeline.map import map_page
from syncd.pipeline.record import outcome_of
from syncd.retry import RetryPolicy
from syncd.state.store import PageOutcome, Quarantined, StateStore


@dataclass(frozen=True, slots=True)
class PageDone:
    """What a page came to, ready to count and record. Small on purpose: a worker
    sends it to the engine."""

    read: int
    keys: list[str]  # every record's raw key, sorted: vanished rows are found against them
    codes: list[str]  # item codes mapped or quarantined: what a manual resync found
    quarantined: list[Quarantined]
    unchanged: int
    would_deliver: int  # dry run: what would have been sent
    outcomes: list[PageOutcome] = field(default_factory=list)
    cursor: str | None = None
    last_key: Any = None  # the last record's raw key: where a key-ordered read got to


@dataclass(frozen=True)
class PageRunner:
    """What every page of a run goes through: the job, its source mapping, its
    targets (connector, mapping) and the state they are compared with."""

    job: JobConfig
    source_map: Mapping
    targets: Sequence[tuple[Any, Mapping]]
    store: StateStore
    policy: RetryPolicy
    sleep: Callable[[float], Any]
    run_id: str
    force: bool
    dry_run: bool

    def __call__(self, page: Page) -> PageDone:
        mapped = map_page(self.source_map, page.records)                             # map
        job, unchanged, would_deliver, outcomes = self.job, 0, 0, []
        for target, target_map in self.targets:
            changes = compare(self.store, job.name, target.name, mapped.items,      # compare
                              force=self.force)
            unchanged += len(mapped.items) - len(changes.items)
            if self.dry_run:
                would_deliver += len(changes.items)
                continue
            base = self.store.delivered_versions(
                job.name, target.name, [m.item.item_code for m in changes.items]) \
                if job.two_way else None
            # until this page is recorded
            self.store.unconfirm(job.name, target.name, changes.delivered_before)
            loaded = load(target, target_map, changes.items, self.policy,             # load
                          sleep=self.sleep, base_versions=base, job=job.name, run_id=self.run_id)
            if job.two_way:
                loaded = settle_conflicts(target, target_map, loaded)
            outcomes.append(outcome_of(target.name, loaded))
        key = self.source_map.key_column
        return PageDone(
            read=len(page.records),
            keys=sorted(str(r[key]) for r in page.records if r.get(key) is not None),
            codes=[m.item.item_code for m in mapped.items]
            + [q.item_code for q in mapped.quarantined if q.item_code],
            quarantined=mapped.quarantined, unchanged=unchanged,
            would_deliver=would_deliver, outcomes=outcomes, cursor=page.cursor,
            last_key=page.records[-1].get(key) if page.records else None)
