"""SyncEngine: one run of a job, read top to bottom.

    extract → map → compare → load → record (+ checkpoint)

At-least-once with idempotent writes: the checkpoint moves only after a page's
outcomes are recorded, a rerun re-reads from it, and the delivered hashes make
re-sending what already landed a no-op. A crash (even SIGKILL) anywhere loses
nothing and duplicates nothing.
"""

from __future__ import annotations

import os
import socket
import uuid
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from connectors.registry import open_channel
from syncd.config import Config, JobConfig
from syncd.errors import ConfigError, ThresholdExceeded
from syncd.mapping import Mapping, load_mapping
from syncd.pipeline.compare import compare
from syncd.pipeline.extract import extract
from syncd.pipeline.load import load, settle_conflicts
from syncd.pipeline.map import map_page
from syncd.pipeline.record import outcome_of
from syncd.state.store import StateStore

log = structlog.get_logger("syncd.engine")

COUNTS = ("read", "quarantined", "unchanged", "delivered", "retried", "dead", "conflicts",
          "vanished")


@dataclass(frozen=True)
class RunRequest:
    """What to run: a job, and how (full refresh, some items, dry run)."""

    job: str
    trigger: str = "cli"
    full: bool = False
    items: tuple[str, ...] = ()
    dry_run: bool = False


@dataclass
class RunResult:
    """What a run did; the CLI, the admin API and the reports read this."""

    run_id: str
    job: str
    outcome: str = "running"
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    error: str | None = None
    missing_items: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def owner_id() -> str:
    """Who holds a job lock: host and pid, so a dead owner's lock can be broken."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    """False only when ``owner`` is a process on this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another host's process: only it (or an operator) may free the lock
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SyncEngine:
    """Runs jobs from a config against a state store.

    Args:
        config: the loaded config.
        store: the state DB.
        open_channel: builds a connector from a channel config (tests inject fakes).
        sleep: how retries wait (tests pass a no-op).
        stop: set it to stop after the current page (SIGTERM).
        progress: called with the counts after every page.
    """

    def __init__(self, config: Config, store: StateStore, *,
                 open_channel: Callable[..., Any] = open_channel,
                 sleep: Callable[[float], Any] = time.sleep,
                 stop: threading.Event | None = None,
                 progress: Callable[[str, dict[str, int]], None] | None = None) -> None:
        self.config, self.store = config, store
        self._open_channel, self.sleep = open_channel, sleep
        self.stop = stop or threading.Event()
        self.progress = progress
        self._mappings: dict[str, Mapping] = {}

    def mapping(self, channel: str) -> Mapping:
        if channel not in self._mappings:
            self._mappings[channel] = load_mapping(self.config.channels[channel].mapping)
        return self._mappings[channel]

    def run(self, req: RunRequest) -> RunResult:
        """Run ``req`` once, holding the job's lock for the whole run."""
        job = self.config.job(req.job)
        mode = "items" if req.items else ("full" if req.full or job.mode == "full"
                                          else "incremental")
        run_id = str(uuid.uuid4())
        result = RunResult(run_id, job.name)
        bound = log.bind(job=job.name, run_id=run_id, trigger=req.trigger)
        # lock first, then the run row: a kill in between leaves nothing "running"
        if self.store.break_lock_if_dead(job.name, owner_alive):
            bound.warning("stale_lock_broken", reason="previous owner process is gone")
        self.store.acquire_lock(job.name, owner_id(), run_id)
        try:
            self.store.begin_run(run_id, job.name, trigger=req.trigger, mode=mode,
                                 dry_run=req.dry_run)
            bound.info("run_started", mode=mode, dry_run=req.dry_run, items=len(req.items))
            self._run_pages(job, req, mode, result, bound)
            result.outcome = self._outcome(result)
        except ThresholdExceeded as exc:
            result.outcome, result.error = "aborted", str(exc)
        except Exception as exc:
            result.outcome, result.error = "failed", str(exc)
            bound.error("run_failed", error=str(exc), error_type=type(exc).__name__)
            raise
        finally:
            self.store.finish_run(run_id, outcome=result.outcome, counts=result.counts,
                                  error=result.error)
            self.store.release_lock(job.name, run_id)
            bound.info("run_finished", outcome=result.outcome, error=result.error,
                       **result.counts)
        return result

    def _run_pages(self, job: JobConfig, req: RunRequest, mode: str, result: RunResult,
                   log: Any) -> None:
        source_map = self.mapping(job.source)
        runtime = {"policy": self.config.retry, "sleep": self.sleep}
        source = self._open_channel(self.config.channels[job.source], source_map,
                                    lag_seconds=job.lag_seconds, **runtime)
        targets = [(self._open_channel(self.config.channels[t], self.mapping(t), **runtime),
                    self.mapping(t)) for t in job.targets]
        counts, force = result.counts, req.full or bool(req.items)
        checkpoint = self.store.checkpoint(job.name, job.source)
        seen_last: str | None = None
        ordered = getattr(source, "ordered_scan", True)  # vanished rows need a key-ordered scan
        wanted = set(req.items)
        try:
            if job.two_way:
                self._check_base_versions(job, [target for target, _ in targets])
            for page in extract(source, mode=mode if mode != "items" else "full",
                                checkpoint=checkpoint, page_size=job.page_size, keys=req.items):
                mapped = map_page(source_map, page.records)                         # map
                counts["read"] += len(page.records)
                counts["quarantined"] += len(mapped.quarantined)
                for q in mapped.quarantined:
                    log.warning("quarantined", item_code=q.item_code, field=q.field,
                                reason=q.reason)
                wanted -= {m.item.item_code for m in mapped.items}
                wanted -= {q.item_code for q in mapped.quarantined}
                outcomes = []
                for target, target_map in targets:
                    changes = compare(self.store, job.name, target.name, mapped.items,  # compare
                                      force=force)
                    counts["unchanged"] += len(mapped.items) - len(changes)
                    if req.dry_run:
                        counts["delivered"] += len(changes)
                        continue
                    base = (self.store.delivered_versions(
                        job.name, target.name, [m.item.item_code for m in changes])
                        if job.two_way else None)
                    loaded = load(target, target_map, changes, self.config.retry,          # load
                                  sleep=self.sleep, base_versions=base, job=job.name,
                                  run_id=result.run_id)
                    if job.two_way:
                        loaded = settle_conflicts(target, target_map, loaded)
                    outcome = outcome_of(target.name, loaded)
                    self._count(outcome, counts, log)
                    outcomes.append(outcome)
                if not req.dry_run:                                                       # record
                    self.store.record_page(job.name, result.run_id, outcomes=outcomes,
                                           quarantined=mapped.quarantined, source=job.source,
                                           cursor=page.cursor,
                                           advance=page.cursor is not None and mode == "incremental")
                if mode == "full" and not req.dry_run and ordered:
                    seen_last = self._vanished(job, page.records, source_map, seen_last,
                                               result, log)
                self._check_threshold(job, counts)
                if self.progress:
                    self.progress(job.name, dict(counts))
                if self.stop.is_set():
                    log.info("run_stopping", reason="stop requested")
                    result.error = "stopped before the end (stop requested); resumes from the checkpoint"
                    return
            if mode == "full" and not req.dry_run and ordered:
                self._vanished(job, [], source_map, seen_last, result, log, final=True)
            result.missing_items = sorted(wanted)
        finally:
            source.close()
            for target, _ in targets:
                target.close()

    def _check_base_versions(self, job: JobConfig, targets: Sequence[Any]) -> None:
        for target in targets:
            if not getattr(target, "base_version_field", None):
                raise ConfigError(f"two_way needs targets that take a base version; "
                                  f"{target.name} does not", file=self.config.file,
                                  key=f"jobs.{job.name}.two_way")

    def _vanished(self, job: JobConfig, records: Sequence[dict[str, Any]], source_map: Mapping,
                  after: str | None, result: RunResult, log: Any, *, final: bool = False) -> str | None:
        """Report items delivered before but absent from this key range of a full scan."""
        keys = sorted(str(r[source_map.key_column]) for r in records
                      if r.get(source_map.key_column) is not None)
        if not keys and not final:
            return after
        upper = None if final else keys[-1]
        known = self.store.delivered_codes_between(job.name, job.targets[0], after, upper)
        gone = sorted(set(known) - set(keys))
        if gone:
            self.store.record_vanished(job.name, job.source, result.run_id, gone)
            result.counts["vanished"] += len(gone)
            for code in gone:
                log.warning("vanished_from_source", item_code=code, channel=job.source)
        return upper

    def replay(self, *, job: str | None = None, items: Sequence[str] | None = None,
               include_dead: bool = False, trigger: str = "replay") -> list[RunResult]:
        """Re-send outbox items: a resync of just those items from their source.

        The item's *latest* source content is sent, never the stored payload, so
        a retry can never land a stale version over a newer one. Without
        ``items`` only rows that are due are taken; dead letters only with
        ``include_dead`` (after someone fixed the source).
        """
        rows = self.store.outbox(job=job, items=items,
                                 due_before=None if items or include_dead else self.store.clock())
        if not include_dead and not items:
            rows = [r for r in rows if r["status"] == "pending"]
        by_job: dict[str, set[str]] = {}
        for row in rows:
            by_job.setdefault(row["job"], set()).add(row["item_code"])
        results = []
        for name, codes in sorted(by_job.items()):
            result = self.run(RunRequest(name, trigger=trigger, items=tuple(sorted(codes))))
            self.store.mark_dead(name, result.missing_items, "item no longer in the source")
            results.append(result)
        return results

    @staticmethod
    def _count(outcome: Any, counts: dict[str, int], log: Any) -> None:
        counts["delivered"] += len(outcome.delivered)
        counts["conflicts"] += len(outcome.conflicts)
        for f in outcome.failed:
            counts["retried" if f.status == "pending" else "dead"] += 1
            log.warning("transfer_failed", item_code=f.item_code, target=outcome.target,
                        status=f.status, error=f.error)

    @staticmethod
    def _check_threshold(job: JobConfig, counts: dict[str, int]) -> None:
        bad, read = counts["quarantined"], counts["read"]
        if job.max_errors is not None and bad > job.max_errors:
            raise ThresholdExceeded(f"job {job.name}: {bad} records quarantined, more than "
                                    f"max_errors={job.max_errors}; stopped after {read} records")
        if job.max_error_ratio is not None and read >= 100 and bad / read > job.max_error_ratio:
            raise ThresholdExceeded(f"job {job.name}: {bad}/{read} records quarantined "
                                    f"({bad / read:.1%}), more than max_error_ratio="
                                    f"{job.max_error_ratio:.1%}")

    @staticmethod
    def _outcome(result: RunResult) -> str:
        c = result.counts
        if result.error:
            return "stopped"
        return "partial" if c["quarantined"] or c["retried"] or c["dead"] or c["conflicts"] \
            or result.missing_items else "ok"
