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
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import Pipe
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
        for done in read_range(source, run_page, after, upto):
            yield i, done
        yield i, None


def read_range(source: Any, run_page: PageRunner, after: Any, upto: Any) -> Iterator[PageDone]:
    """One key range ``after < key <= upto`` of ``source``, page by page, in this process."""
    for page in source.scan_range(run_page.job.page_size, after, upto):
        yield run_page(page)


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


#: How many ranges a split read is cut into per worker. A worker that ends its range
#: takes the next one left, so the workers end within a page of each other however
#: the machine shares its CPUs between them (two halves of a 20k sync, one per worker,
#: ended 0.1-0.65 s apart here, with one core idle meanwhile).
RANGES_PER_WORKER = 8


@contextmanager
def sync_apart(config: Config, job: str, store_url: str, split: Split, *,
               run_id: str, force: bool, stop_when: threading.Event,
               here: Callable[[Any, Any], Iterator[PageDone]] | None = None
               ) -> Iterator[Workers]:
    """Read the ranges left of ``split`` in worker processes, as many as the job may
    have and no more than the ranges: each takes the next range left as it ends one.
    They are asked to stop as soon as ``stop_when`` is set. Workers still running on
    the way out after an error are killed: what they were writing was not recorded,
    and is sent again next run.

    ``here(after, upto)``: that range's pages, read in this process. Until the first
    worker has started, this process reads ranges itself, a page at a time, and hands
    back the rest of its range once one has: the first split read of a process waits
    ~0.4 s for the fork server's imports, and a core idled through them."""
    ctx = helper_context(job_channels(config, job))
    stop = ctx.RawValue(ctypes.c_bool, False)
    crew = _Crew(split, stop, log.bind(job=job, run_id=run_id))
    starter = threading.Thread(
        target=crew.start, name="syncd-worker-starter", daemon=True,
        args=(min(workers_for(config.job(job)), len(split.left())),
              lambda k, conn, task: ctx.Process(
                  target=_work, name=f"syncd-worker-{job}-{k}", daemon=True,
                  args=(conn, task, stop, config, job, store_url, run_id, force,
                        os.getpid()))))
    starter.start()
    clean = False
    try:
        yield Workers(crew.pages(here, stop_when), stop)
        clean = True
        crew.log.info("sync_workers_finished", pages_here=crew.pages_here,
                      pages_by_workers=crew.pages_apart)
    finally:
        if not clean:
            stop.value = True  # start no more
        starter.join()
        for proc, conn in crew.procs:
            conn.close()
            proc.join(timeout=10 if clean else 0)  # done: it is closing its connections
            if proc.is_alive():
                proc.kill()
                proc.join()


#: how long a split read waits for its first worker before it reads a range itself
_FIRST_START = 0.05


class _Crew:
    """The workers of one split read and the ranges nobody has taken yet.

    A thread starts the workers (a worker's start waits for the fork server), while
    the engine's thread reads the stream and hands each worker that ends a range the
    next one. ``lock`` guards ``todo`` and ``reading`` between the two."""

    def __init__(self, split: Split, stop: Any, log: Any) -> None:
        self.split, self.stop, self.log = split, stop, log
        self.todo = deque(i for i, _ in split.left())
        #: a running worker's end of its pipe → (the range it reads, its number, process)
        self.reading: dict[Connection, tuple[int, int, Any]] = {}
        self.procs: list[tuple[Any, Connection]] = []
        self.lock = threading.Lock()
        self.started = threading.Event()  # every worker has, or the starter gave up
        self.one_started = threading.Event()
        self.failed: Exception | None = None
        self.pages_here = self.pages_apart = 0

    def _take(self) -> tuple[int, Any, Any] | None:
        """The next range left as (index, after, upto), unless none is or a stop was asked."""
        with self.lock:
            if not self.todo or self.stop.value:
                return None
            i = self.todo.popleft()
        after, upto = self.split.ranges[i]  # type: ignore[misc]
        return i, after, upto

    def start(self, n: int, process: Callable[[int, Connection, tuple[int, Any, Any]], Any]
              ) -> None:
        """Start up to ``n`` workers (``process(number, its end of the pipe, first range)``),
        each with the next range left as its first."""
        try:
            for k in range(n):
                if (task := self._take()) is None:
                    break
                conn, child_end = Pipe()
                proc = process(k, child_end, task)
                try:
                    proc.start()
                finally:
                    child_end.close()
                with self.lock:
                    self.procs.append((proc, conn))
                    self.reading[conn] = (task[0], k, proc)
                self.one_started.set()
            self.log.info("sync_workers_started", workers=len(self.procs),
                          pids=[p.pid for p, _ in self.procs])
        except Exception as exc:  # noqa: BLE001 - raised in the engine's thread (pages)
            self.failed = exc
        finally:
            self.one_started.set()
            self.started.set()

    def pages(self, here: Callable[[Any, Any], Iterator[PageDone]] | None,
              stop_when: threading.Event) -> Iterator[tuple[int, PageDone | None]]:
        # a fork server that runs starts a worker in milliseconds: this process reads
        # nothing then, else a worker would wait for it to end a page to get its next range
        self.one_started.wait(_FIRST_START)
        while True:
            if stop_when.is_set():  # pass a stop on now, not when the next page comes in
                self.stop.value = True
            if self.failed is not None:
                raise self.failed
            with self.lock:
                running = list(self.reading)
            started = self.started.is_set()
            # this process reads while no worker runs: before the first has started,
            # and after the last has ended if a range is left (a stop was asked for)
            if here is not None and not running and (task := self._take()) is not None:
                yield from self._read_here(here, *task)
                continue
            if not running:
                if started:
                    return
                self.started.wait(0.05)
                continue
            for conn in wait(running, timeout=0.2):
                yield from self._received(conn)  # type: ignore[arg-type]

    def _read_here(self, here: Callable[[Any, Any], Iterator[PageDone]], i: int, after: Any,
                   upto: Any) -> Iterator[tuple[int, PageDone | None]]:
        """Range i in this process, a page at a time; once a worker runs (or a stop is
        asked for), what is left of it goes back for a worker to take."""
        pages = here(after, upto)
        for done in pages:
            self.pages_here += 1
            yield i, done  # the engine records it, and moves range i's start past it
            with self.lock:
                if self.stop.value or self.reading:
                    self.todo.appendleft(i)
                    pages.close()
                    return
        yield i, None

    def _received(self, conn: Connection) -> Iterator[tuple[int, PageDone | None]]:
        i, k, proc = self.reading[conn]
        try:
            message = conn.recv()
        except EOFError:
            proc.join(timeout=10)
            raise SyncdError(f"sync worker {k} ended without finishing (exit code "
                             f"{proc.exitcode})") from None
        if message[0] == "page":  # ("page", PageDone or None, whether range i is read)
            _, done, ended = message
            if ended:  # its next range first: the worker goes on while the engine records
                task = self._take()
                conn.send(task)
                with self.lock:
                    if task is None:  # it ends
                        del self.reading[conn]
                    else:
                        self.reading[conn] = (task[0], k, proc)
            if done is not None:
                self.pages_apart += 1
                yield i, done
            if ended:
                yield i, None
        elif message[0] == "log":
            replay_log(self.log, message[1], message[2])
        elif message[0] == "stopped":
            with self.lock:
                del self.reading[conn]
        else:  # "error": the worker failed; its message names what failed
            _, kind, text = message
            if kind in _KINDS:
                raise _KINDS[kind](f"{text} (sync worker {k})")
            raise SyncdError(f"sync worker {k} failed: {kind}: {text}")


def _work(conn: Connection, task: tuple[int, Any, Any] | None, stop: Any, config: Config,
          job_name: str, store_url: str, run_id: str, force: bool, engine_pid: int) -> None:
    """A worker: every page of the source's key range ``task`` = (index, after, upto),
    ``after < key <= upto``, then of each range the engine sends next, until it sends
    None."""
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
            while task is not None:
                _i, after, upto = task
                pages = source.scan_range(job.page_size, after, upto)
                page = next(pages, None)
                if page is None:
                    conn.send(("page", None, True))
                while page is not None:
                    if lifeline.gone():
                        return
                    if stop.value:
                        conn.send(("stopped",))
                        return
                    done = run_page(page)
                    # read on first: the range's last page goes with its end, so the
                    # engine sends the next range before it records this page
                    page = next(pages, None)
                    conn.send(("page", done, page is None))
                task = conn.recv()
        finally:
            for channel, _mapping in channels:
                channel.close()
            store.close()
