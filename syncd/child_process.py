"""What syncd's spawned helper processes (reconcile readers, sync workers) share.

A child's log events go to the parent, which logs them through its own
processors, so they pass its redaction and go where its logs go. A child that
does writes must not outlive its parent: :func:`die_with_parent`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from typing import Any

import structlog

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), and exit now if
    it already has. Elsewhere callers also check :func:`parent_gone` before each write."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent_gone(parent_pid):
        os._exit(1)


def parent_gone(parent_pid: int) -> bool:
    """Whether this process's parent is no longer ``parent_pid`` (it died: we were adopted)."""
    return os.getppid() != parent_pid
