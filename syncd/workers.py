"""A job's whole-table read, split by key range across worker processes.

Mapping, validating and hashing are CPU work in Python: one process keeps one
core busy while the others idle, and a first sync of a big table is all that
work. Here each worker (forked from syncd's fork server: nothing inherited from
the engine but its arguments, :mod:`syncd.child_process`) reads
one key range of the source itself and runs every page through the same
map → compare → load as the engine (:class:`syncd.pipeline.page.PageRunner`),
then sends back only the small :class:`PageDone`. The engine counts and records
those as they arrive. A page is recorded only after its target write, as in one
process, so a crash anywhere still loses nothing.

As a checkpoint, a :class:`Split` says what is left of each range, so a stopped
first read resumes where each worker was.

Workers die with the engine's process (a thread of theirs waits for it to end,
and each checks it before every page): a worker left running could write an
old read of an item over the newer one a rerun delivered.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import orjson
import structlog

from syncd.channel_reader import Opener
from syncd.child_process import (
    die_with_engine,
    freeze_what_is_loaded,
    helper_context,
    replay_log,
    reporting_to,
    send_logs_to,
)
from syncd.config import ChannelConfig, Config, JobConfig
from syncd.errors import (
    ConfigError,
    ConnectorError,
    MappingError,
    StateError,
    SyncdError,
    TransferError,
    TransientTransferError,
)
from syncd.gc_thresholds import fewer_collections
from syncd.pipeline.page import PageDone, PageRunner
from syncd.state.store import StateStore

log = structlog.get_logger(__name__)
#: the engine's to handle: it asks its workers to stop after their current page
_ENGINES_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: a worker's errors of these kinds are raised as the same kind here (exit codes follow them)
_KINDS = {e.__name__: e for e in (ConfigError, MappingError, StateError, TransferError,
                                  TransientTransferError, ConnectorError)}


def workers_for(job: JobConfig) -> int:
    """How many workers ``job`` may have: its ``workers`` setting, or the default."""
    return job.workers or default_workers()


def job_channels(config: Config, job: str) -> list[ChannelConfig]:
    """The job's channels, source first: what its workers open."""
    spec = config.job(job)
    return [config.channels[name] for name in (spec.source, *spec.targets)]


def default_workers() -> int:
    """One worker per CPU this process may use, at most four: past that the databases
    are the bottleneck."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))


_PREFIX = "split:"


@dataclass
class Split:
    """A whole-table read cut into key ranges ``after < key <= upto`` (None: unbounded).

    ``end``: reading changes, the source's change-order cursor as the table stood
    when the read began, to go on from once every range is read (None: a full
    scan). ``ranges[i]`` is what is left of range i; None once it is read.
    """

    end: str | None
    ranges: list[list[Any] | None]

    @classmethod
    def at(cls, bounds: list[Any], end: str | None) -> Split:
        return cls(end, [list(r) for r in zip([None, *bounds], [*bounds, None], strict=True)])

    @classmethod
    def parse(cls, checkpoint: str | None) -> Split | None:
        """The split a checkpoint holds, if it holds one."""
        if not checkpoint or not checkpoint.startswith(_PREFIX):
            return None
        state = orjson.loads(checkpoint[len(_PREFIX):])
        return cls(state["end"], state["ranges"])

    def cursor(self) -> str:
        """This split as a checkpoint."""
        return _PREFIX + orjson.dumps({"end": self.end, "ranges": self.ranges}).decode()

    def left(self) -> list[tuple[int, list[Any]]]:
        """(index, [after, upto]) of the ranges not yet read."""
        return [(i, r) for i, r in enumerate(self.ranges) if r is not None]


def read_here(source: Any, split: Split, run_page: PageRunner
              ) -> Iterator[tuple[int, PageDone | None]]:
    """The same stream as :func:`sync_apart`, read in this process, range after range."""
    for i, (after, upto) in split.left():
        for page in source.scan_range(run_page.job.page_size, after, upto):
            yield i, run_page(page)
        yield i, None


@dataclass
class Workers:
    """Running workers: ``pages`` is their stream of (range index, PageDone), with
    (range index, None) when a range is read to its end."""

    pages: Iterator[tuple[int, PageDone | None]]
    _stop: Any  # a lock-free shared flag: a worker killed mid-check cannot hold it

    def stop(self) -> None:
        """Ask every worker to stop after its current page; the stream ends once the
        pages they finished have come in."""
        self._stop.value = True


@contextmanager
def sync_apart(config: Config, job: str, store_url: str, split: Split, *,
               run_id: str, force: bool, stop_when: threading.Event) -> Iterator[Workers]:
    """Start one worker per range left of ``split``; they are asked to stop as soon as
    ``stop_when`` is set. Workers still running on the way out after an error are
    killed: what they were writing was not recorded, and is sent again next run."""
    ctx = helper_context(job_channels(config, job))
    stop = ctx.RawValue(ctypes.c_bool, False)
    procs: list[tuple[int, Any, Connection]] = []
    clean = False
    try:
        for i, (after, upto) in split.left():
            parent_end, child_end = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_work, name=f"syncd-worker-{job}-{i}", daemon=True,
                               args=(child_end, stop, config, job, store_url, after, upto,
                                     run_id, force, os.getpid()))
            proc.start()
            child_end.close()
            procs.append((i, proc, parent_end))
        log.info("sync_workers_started", job=job, run_id=run_id, workers=len(procs),
                 pids=[p.pid for _, p, _ in procs])
        workers = Workers(_received(procs, stop, stop_when), stop)
        yield workers
        clean = True
    finally:
        for _, proc, conn in procs:
            conn.close()
            proc.join(timeout=10 if clean else 0)  # done: it is closing its connections
            if proc.is_alive():
                proc.kill()
                proc.join()


def _received(procs: list[tuple[int, Any, Connection]], stop: Any, stop_when: threading.Event
              ) -> Iterator[tuple[int, PageDone | None]]:
    running = {conn: (i, proc) for i, proc, conn in procs}
    while running:
        ready = wait(list(running), timeout=0.2)
        if stop_when.is_set():  # pass a stop on now, not when the next page comes in
            stop.value = True
        for conn in ready:
            i, proc = running[conn]  # type: ignore[index]
            try:
                message = conn.recv()  # type: ignore[union-attr]
            except EOFError:
                proc.join(timeout=10)
                raise SyncdError(f"sync worker {i} ended without finishing (exit code "
                                 f"{proc.exitcode})") from None
            if message[0] == "page":
                yield i, message[1]
            elif message[0] == "log":
                replay_log(log, message[1], message[2])
            elif message[0] == "end":
                del running[conn]  # type: ignore[arg-type]
                yield i, None
            elif message[0] == "stopped":
                del running[conn]  # type: ignore[arg-type]
            else:  # "error": the worker failed; its message names what failed
                _, kind, text = message
                if kind in _KINDS:
                    raise _KINDS[kind](f"{text} (sync worker {i})")
                raise SyncdError(f"sync worker {i} failed: {kind}: {text}")


def _work(conn: Connection, stop: Any, config: Config, job_name: str, store_url: str,
          after: Any, upto: Any, run_id: str, force: bool, engine_pid: int) -> None:
    """A worker: every page of the source's key range ``after < key <= upto``."""
    # Ctrl-C (sent to the terminal's whole process group) and SIGTERM are the engine's
    # to handle: it asks its workers to stop after their current page
    for signum in _ENGINES_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    send_logs_to(conn)
    with reporting_to(conn), fewer_collections():
        lifeline = die_with_engine(engine_pid)
        job = config.job(job_name)
        store = StateStore(store_url)  # migrated by the parent
        channels = []
        try:
            for cfg in job_channels(config, job_name):
                channels.append(Opener(cfg, config.retry)())
            (source, source_map), targets = channels[0], channels[1:]
            run_page = PageRunner(job, source_map, targets, store, config.retry, time.sleep,
                                  run_id, force=force, dry_run=False)
            freeze_what_is_loaded()
            for page in source.scan_range(job.page_size, after, upto):
                if lifeline.gone():
                    return
                if stop.value:
                    conn.send(("stopped",))
                    return
                conn.send(("page", run_page(page)))
            conn.send(("end",))
        finally:
            for channel, _mapping in channels:
                channel.close()
            store.close()
