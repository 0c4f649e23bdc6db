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
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog

from connectors.registry import open_channel
from syncd.channel_reader import readers_can_share
from syncd.child_process import start_helpers
from syncd.config import Config, JobConfig
from syncd.errors import ConfigError, ThresholdExceeded, TransferError
from syncd.gc_thresholds import fewer_collections
from syncd.mapping import Mapping, load_mapping
from syncd.pipeline.extract import extract
from syncd.pipeline.page import PageDone, PageRunner
from syncd.state.store import StateStore
from syncd.workers import (
    RANGES_PER_WORKER,
    Split,
    job_channels,
    read_here,
    read_range,
    sync_apart,
    workers_for,
)

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


def warn_without_statistics(channels: Sequence[tuple[str, Any]], log: Any) -> None:
    """Warn of each channel's tables that have no planner statistics and will not get
    them (``tables_without_statistics``: PostgreSQL with autovacuum off): every page
    read or written by a list of keys then reads their whole child tables.

    Only a warning: a server that cannot answer the question (a PostgreSQL look-alike
    without ``pg_class.reloptions``, say) is logged as not checked, and the run goes on."""
    for name, channel in channels:
        try:
            tables = getattr(channel, "tables_without_statistics", list)()
        except TransferError as exc:
            log.info("statistics_not_checked", channel=name, error=str(exc))
            continue
        if tables:
            log.warning("tables_without_statistics", channel=name, tables=tables,
                        hint="run ANALYZE on them (autovacuum is off): without statistics "
                             "PostgreSQL reads a whole child table for each page of keys")


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
            with fewer_collections():
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
        run_page = PageRunner(job, source_map, targets, self.store, self.config.retry,
                              self.sleep, result.run_id, force=req.full or bool(req.items),
                              dry_run=req.dry_run)
        warn_without_statistics([(job.source, source), *zip(job.targets,
                                                             (t for t, _ in targets))], log)
        checkpoint = self.store.checkpoint(job.name, job.source)
        # vanished rows are found against a key-ordered scan
        scan = mode == "full" and not req.dry_run and getattr(source, "ordered_scan", True)
        wanted = set(req.items)
        try:
            if job.two_way:
                self._check_base_versions(job, [target for target, _ in targets])
            split = self._split(job, req, mode, checkpoint, source,
                                [target for target, _ in targets])
            if split is not None:
                if not self._read_split(job, req, mode, split, source, run_page, scan, result,
                                        log):
                    return
                if split.end is None:  # a full scan, or no row has a cursor value: all is read
                    return
                checkpoint = split.end  # and on to what changed since the split read began
            seen_last: str | None = None
            for page in extract(source, mode=mode if mode != "items" else "full",        # extract
                                checkpoint=checkpoint, page_size=job.page_size, keys=req.items):
                done = run_page(page)                                   # map → compare → load
                wanted -= set(done.codes)
                self._record(job, req, done, result, log,                                # record
                             checkpoint=done.cursor if mode == "incremental" else None)
                if scan and done.keys:
                    self._vanished(job, done.keys, seen_last, done.keys[-1], result, log)
                    seen_last = done.keys[-1]
                if not self._go_on(job, result, log):
                    return
            if scan:
                self._vanished(job, [], seen_last, None, result, log)
            result.missing_items = sorted(wanted)
        finally:
            source.close()
            for target, _ in targets:
                target.close()

    def _split(self, job: JobConfig, req: RunRequest, mode: str, checkpoint: str | None,
               source: Any, targets: Sequence[Any]) -> Split | None:
        """The key ranges to read the source in (:mod:`syncd.workers`), or None to read it
        as a whole. A stopped split read goes on as one; a new one is only for a
        whole-table read (a full run, or a job's first) of a source that can be split,
        when workers may run, the table is more than a page, and no target's quota is
        kept per process. It has :data:`RANGES_PER_WORKER` ranges per worker, or one a
        page when fewer."""
        if mode == "incremental" and (resumed := Split.parse(checkpoint)) is not None:
            return resumed
        if (not self._workers_allowed(job, req) or req.items or job.two_way
                or not (mode == "full" or checkpoint is None) or not hasattr(source, "split")
                or any(getattr(target, "quota_per_process", False) for target in targets)):
            return None
        start_helpers(job_channels(self.config, job.name))  # ready while the split is found
        bounds = source.split(workers_for(job) * RANGES_PER_WORKER, page=job.page_size)
        if not bounds:
            return None
        return Split.at(bounds, source.snapshot_end() if mode == "incremental" else None)

    def _workers_allowed(self, job: JobConfig, req: RunRequest) -> bool:
        """Workers open the channels and the state DB themselves, from the config: not for
        a dry run, an in-memory state DB, or connectors a test injected."""
        return (workers_for(job) >= 2 and not req.dry_run
                and readers_can_share(self.store) and self._open_channel is open_channel)

    def _read_split(self, job: JobConfig, req: RunRequest, mode: str, split: Split,
                    source: Any, run_page: PageRunner, scan: bool, result: RunResult,
                    log: Any) -> bool:
        """Read the split's ranges left, one worker each when more than one is left
        (and no more than the job may have), recording pages as they come and (reading
        changes) what is left as the checkpoint; False when the run was asked to stop."""
        checkpoints = mode == "incremental" and split.end is not None and not req.dry_run
        seen_last = [None if r is None or r[0] is None else str(r[0]) for r in split.ranges]
        apart = len(split.left()) > 1 and self._workers_allowed(job, req)
        with (sync_apart(self.config, job.name, self.store.url, split, run_id=result.run_id,
                         force=run_page.force, stop_when=self.stop,
                         here=partial(read_range, source, run_page)) if apart
              else nullcontext(None)) as workers:
            stopping = False
            for i, done in workers.pages if workers else read_here(source, split, run_page):
                if done is None:  # range i is read to its end
                    upto = split.ranges[i][1]  # type: ignore[index]
                    if scan:
                        self._vanished(job, [], seen_last[i], None if upto is None else str(upto),
                                       result, log)
                    split.ranges[i] = None
                    if checkpoints:
                        self.store.record_page(job.name, result.run_id, outcomes=[],
                                               source=job.source, advance=True,
                                               cursor=split.cursor() if split.left() else split.end)
                    continue
                split.ranges[i][0] = done.last_key  # type: ignore[index]
                self._record(job, req, done, result, log,
                             checkpoint=split.cursor() if checkpoints else None)
                if scan and done.keys:
                    self._vanished(job, done.keys, seen_last[i], done.keys[-1], result, log)
                    seen_last[i] = done.keys[-1]
                if not stopping and not self._go_on(job, result, log):
                    if workers is None:
                        return False
                    workers.stop()  # and record what they finish
                    stopping = True
        if split.left():  # the workers stopped before the end: a stop was asked for
            if not stopping:
                self._stopping(result, log)
            return False
        return True

    def _record(self, job: JobConfig, req: RunRequest, done: PageDone, result: RunResult,
                log: Any, *, checkpoint: str | None) -> None:
        """Count a page and record its outcomes and, when given, the checkpoint after it."""
        counts = result.counts
        counts["read"] += done.read
        counts["quarantined"] += len(done.quarantined)
        for q in done.quarantined:
            log.warning("quarantined", item_code=q.item_code, field=q.field, reason=q.reason)
        counts["unchanged"] += done.unchanged
        counts["delivered"] += done.would_deliver
        for outcome in done.outcomes:
            self._count(outcome, counts, log)
        if not req.dry_run:
            self.store.record_page(job.name, result.run_id, outcomes=done.outcomes,
                                   quarantined=done.quarantined, source=job.source,
                                   cursor=checkpoint, advance=checkpoint is not None)

    def _go_on(self, job: JobConfig, result: RunResult, log: Any) -> bool:
        """After a page: the error threshold, progress, and whether to stop here."""
        self._check_threshold(job, result.counts)
        if self.progress:
            self.progress(job.name, dict(result.counts))
        if self.stop.is_set():
            self._stopping(result, log)
            return False
        return True

    @staticmethod
    def _stopping(result: RunResult, log: Any) -> None:
        log.info("run_stopping", reason="stop requested")
        result.error = "stopped before the end (stop requested); resumes from the checkpoint"

    def _check_base_versions(self, job: JobConfig, targets: Sequence[Any]) -> None:
        for target in targets:
            if not getattr(target, "base_version_field", None):
                raise ConfigError(f"two_way needs targets that take a base version; "
                                  f"{target.name} does not", file=self.config.file,
                                  key=f"jobs.{job.name}.two_way")

    def _vanished(self, job: JobConfig, keys: Sequence[str], after: str | None,
                  upto: str | None, result: RunResult, log: Any) -> None:
        """Report items delivered before but absent from the key range ``after < key <=
        upto`` (None: unbounded) of a full scan, in which ``keys`` were read."""
        known = self.store.delivered_codes_between(job.name, job.targets[0], after, upto)
        gone = sorted(set(known) - set(keys))
        if gone:
            self.store.record_vanished(job.name, job.source, result.run_id, gone)
            result.counts["vanished"] += len(gone)
            for code in gone:
                log.warning("vanished_from_source", item_code=code, channel=job.source)

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
