"""What syncd's helper processes (reconcile readers, sync workers) share.

They are started from a fork server (:func:`helper_context`): a clean process,
started once, that has imported what a helper needs and forks a new helper in a
few milliseconds. A spawned helper would start a new interpreter and import
SQLAlchemy and syncd again, half a second before its first page, on every run.
Nothing but its arguments is inherited from the engine's process, as with
``spawn``: no connection, lock or thread of the engine.

A child's log events go to the parent, which logs them through its own
processors, so they pass its redaction and go where its logs go. A child that
does writes must not outlive the engine: :func:`die_with_engine`.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import select
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

if TYPE_CHECKING:
    from syncd.config import ChannelConfig

#: what the fork server always imports once, so that a helper forked from it starts ready:
#: the helpers' own modules (the SQL channels' dialects and drivers: :func:`helper_context`)
PRELOAD = ["syncd.workers", "syncd.channel_reader", "connectors.registry", "connectors.sql"]


def helper_context(channels: Iterable[ChannelConfig] = ()) -> BaseContext:
    """How helper processes start: from the fork server where there is one (Linux and
    other POSIX systems), else ``spawn``.

    ``channels``: those the helpers will open. A fork server started after this call
    imports the SQLAlchemy dialects and drivers of the SQL ones too, and no others:
    every helper holds what its fork server holds (psycopg and PyMySQL come to ~10 MB
    each time), and a helper imports any other driver it needs itself. Once the server
    runs, its imports are what they are."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD + drivers_of(channels))
    return ctx


def drivers_of(channels: Iterable[ChannelConfig]) -> list[str]:
    """The modules of each SQL channel's SQLAlchemy dialect and DBAPI driver (imported
    here: the engine opened those channels already). A URL whose dialect or driver
    cannot be loaded is left out: the helper that opens it raises the error, naming
    its channel."""
    modules: list[str] = []
    for channel in channels:
        if channel.kind != "sql":
            continue
        try:
            dialect = make_url(channel.url).get_dialect()
            modules += [dialect.__module__, dialect.import_dbapi().__name__]
        except (ArgumentError, NoSuchModuleError, ImportError):
            continue
    return list(dict.fromkeys(modules))


def start_helpers(channels: Iterable[ChannelConfig] = ()) -> None:
    """Start the fork server now, if it is not running, rather than when the first helper
    is needed: it imports in the background while the run goes on (a run calls this as
    soon as it knows it will use workers, with the channels they will open). It is
    started once per process, when first
    needed, not as the daemon starts: a daemon whose jobs never split a read does not
    keep its ~60 MB for nothing.

    It ends once the engine's process and every helper it forked have ended. Each
    helper watches the engine itself (:func:`die_with_engine`), not the fork server:
    a SIGTERM to every process of the service (systemd) ends the fork server, while
    the engine stops its workers after their current page.
    """
    if helper_context(channels).get_start_method() == "forkserver":
        multiprocessing.forkserver.ensure_running()


def freeze_what_is_loaded() -> None:
    """Exempt what this helper holds so far (the fork server's imports, its channel,
    mapping and code tables) from the cyclic collector.

    They live as long as the helper, yet each full collection would traverse them
    again, and write to the pages it shares with the fork server as it does: in a
    reader hashing 100k records (default thresholds, 1,377 collections) this took
    6.2 s against 5.8 s frozen. Objects made later are collected as before.
    """
    gc.freeze()


def send_logs_to(conn: Connection) -> None:
    """Route this process's log events, structlog's (info and up) and the standard
    library's (warnings and up: SQLAlchemy, httpx), to the parent as ``("log", level,
    event)`` messages; values travel as text, tracebacks formatted."""

    def forward(_logger: Any, level: str, event: dict[str, Any]) -> Any:
        conn.send(("log", level, {k: v if isinstance(v, str | int | float | bool | None)
                                  else str(v) for k, v in event.items()}))
        raise structlog.DropEvent

    structlog.configure(processors=[structlog.processors.format_exc_info, forward],
                        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                        cache_logger_on_first_use=False)

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            event = {"event": record.getMessage(), "logger": record.name}
            if record.exc_info:
                event["exception"] = logging.Formatter().formatException(record.exc_info)
            conn.send(("log", record.levelname.lower(), event))

    root = logging.getLogger()
    root.handlers[:] = [Forward()]
    root.setLevel(logging.WARNING)


@contextmanager
def reporting_to(conn: Connection) -> Iterator[None]:
    """A child's whole body: an exception in it goes to the parent as ``("error", kind,
    text)``, which raises it there; the pipe is closed at the end."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - sent to the parent, which raises it
        # a parent that is gone (OSError) has stopped reading: there is no one to tell
        with suppress(OSError):
            conn.send(("error", type(exc).__name__, str(exc)))
    finally:
        conn.close()


def replay_log(log: Any, level: str, event: dict[str, Any]) -> None:
    """Log a child's ``("log", level, event)`` message here."""
    getattr(log, level, log.info)(event.pop("event", "child_event"), **event)


class Lifeline:
    """Whether the engine that started a helper is still there.

    Watched by its pid, not by the helper's parent: that is the fork server, which
    lives on while any helper it forked does. A pidfd (Linux 5.3 and later) names
    the engine's process itself, so a reused pid cannot pass for it; elsewhere the
    pid is checked.
    """

    def __init__(self, engine_pid: int) -> None:
        self.engine_pid = engine_pid
        self._dead = False
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(engine_pid)
        except ProcessLookupError:
            self._dead = True
        except (AttributeError, OSError):  # no pidfd here: the pid is checked instead
            pass

    def gone(self) -> bool:
        if self._dead:
            return True
        if self._pidfd is not None:
            return bool(select.select([self._pidfd], [], [], 0)[0])
        try:
            os.kill(self.engine_pid, 0)
        except (ProcessLookupError, PermissionError):  # another user's: the pid was reused
            return True
        return False

    def wait(self, poll: float = 0.2) -> None:
        """Return once the engine is gone."""
        if self._pidfd is not None and not self._dead:
            select.select([self._pidfd], [], [])
            return
        while not self.gone():
            time.sleep(poll)


def die_with_engine(engine_pid: int) -> Lifeline:
    """Kill this process as soon as the engine's process ends (a thread waits for it),
    and exit now if it already has. Callers also check the returned :class:`Lifeline`
    before each page, so that a helper does not start a write it will not finish."""
    lifeline = Lifeline(engine_pid)
    if lifeline.gone():
        os._exit(1)

    def watch() -> None:
        lifeline.wait()
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="syncd-engine-watch", daemon=True).start()
    return lifeline
