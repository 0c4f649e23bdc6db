"""Reconcile's channels read side by side: one process per channel.

Reading, mapping and hashing a channel is CPU work in Python, so channels read
one after another leave every core but one idle. Here each channel is read in a
process of its own (forked from syncd's fork server, :mod:`syncd.child_process`:
nothing is inherited from the parent but the arguments) that
sends back, in item_code order, only what the merge needs: the item code, its
digests (:class:`syncd.item_stream.Hashed`) and the raw key. The parent merges
those; an item whose digests disagree is read again by its raw key in the
parent, where its fields are compared. The reader keeps the channel's cache of
unchanged records (:mod:`syncd.seen`) in the state DB, as the parent would.

A reader's log events are sent to the parent and logged there
(:mod:`syncd.child_process`).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from connectors.registry import open_channel
from syncd.child_process import (
    freeze_what_is_loaded,
    helper_context,
    replay_log,
    reporting_to,
    send_logs_to,
)
from syncd.config import ChannelConfig
from syncd.errors import ConfigError, ConnectorError, MappingError, StateError
from syncd.gc_thresholds import fewer_collections
from syncd.item_stream import Hashed, Remote, sorted_items
from syncd.mapping import Mapping, load_mapping
from syncd.retry import RetryPolicy
from syncd.seen import open_seen
from syncd.state.store import StateStore

log = structlog.get_logger(__name__)

BATCH = 1000  # items per message
#: a reader's errors of these kinds are raised as the same kind here (exit codes follow them)
_KINDS = {e.__name__: e for e in (ConfigError, MappingError, StateError)}
#: opens a channel: (connector, mapping); must pickle, as a reader process calls it
OpenChannel = Callable[[], tuple[Any, Mapping]]
_MEMORY_URLS = ("sqlite://", "sqlite:///:memory:")


@dataclass(frozen=True)
class Opener:
    """Opens a configured channel: (connector, mapping). Picklable, so a reader process
    opens its own connection from it."""

    cfg: ChannelConfig
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    def __call__(self) -> tuple[Any, Mapping]:
        mapping = load_mapping(self.cfg.mapping)
        return open_channel(self.cfg, mapping, policy=self.policy), mapping


def readers_can_share(store: StateStore | None) -> bool:
    """Reader processes open the state DB by URL; an in-memory one they cannot share."""
    return store is None or store.url not in _MEMORY_URLS


@dataclass
class Readers:
    """The running readers: one stream of (item_code, value) per channel."""

    streams: dict[str, Iterator[tuple[str, Any]]]
    hits: dict[str, int] = field(default_factory=dict)

    def reused(self) -> dict[str, int]:
        """Records each reader took from the cache (known once its stream is done)."""
        return dict(self.hits)


@contextmanager
def read_apart(openers: dict[str, OpenChannel], store: StateStore | None,
               *, keys: Sequence[str] | None, workdir: Path) -> Iterator[Readers]:
    """Start one reader process per channel; stop them all on the way out."""
    ctx = helper_context([o.cfg for o in openers.values() if isinstance(o, Opener)])
    procs: list[tuple[Any, Connection]] = []
    readers = Readers({})
    try:
        for name, opener in openers.items():
            parent_end, child_end = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_read, name=f"syncd-reader-{name}", daemon=True,
                               args=(child_end, opener, name, store.url if store else None,
                                     list(keys) if keys else None, str(workdir)))
            proc.start()
            child_end.close()
            procs.append((proc, parent_end))
            readers.streams[name] = _received(parent_end, name, proc, readers.hits)
        yield readers
    finally:
        for proc, conn in procs:
            conn.close()
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=10)
            if proc.is_alive():  # still there after SIGTERM: it does not get a choice
                proc.kill()
                proc.join()


def _received(conn: Connection, name: str, proc: Any, hits: dict[str, int]
              ) -> Iterator[tuple[str, Any]]:
    """What the reader of ``name`` sends, as (item_code, Remote | ServiceItem | reason)."""
    while True:
        try:
            message = conn.recv()
        except EOFError:
            proc.join(timeout=10)
            raise ConnectorError(f"the reader process ended without finishing (exit code "
                                 f"{proc.exitcode})", channel=name) from None
        kind = message[0]
        if kind == "items":
            for code, digest, content, raw_key, value in message[1]:
                yield code, (Remote(digest, content, raw_key) if digest is not None
                             else value)
        elif kind == "log":
            replay_log(log, message[1], message[2])
        elif kind == "done":
            hits[name] = message[1]
            return
        else:  # "error": the reader failed; its message names what failed
            _, kind, text = message
            if kind in _KINDS:
                raise _KINDS[kind](f"{text} (reader of channel {name})")
            text = text.removeprefix(f"channel={name} ")
            raise ConnectorError(f"reading failed: {kind}: {text}", channel=name)


def _read(conn: Connection, opener: OpenChannel, name: str,
          state_url: str | None, keys: list[str] | None, workdir: str) -> None:
    """The reader process: stream the channel's items, hashed, in item_code order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    send_logs_to(conn)
    store = None
    with reporting_to(conn), fewer_collections():
        connector, mapping = opener()
        try:
            store = StateStore(state_url) if state_url else None  # migrated by the parent
            seen = (open_seen(store, name, mapping, connector)
                    if store is not None else None)
            freeze_what_is_loaded()
            batch: list[tuple[str, str | None, str | None, Any, Any]] = []
            for code, value in sorted_items(connector, mapping, Path(workdir), keys=keys,
                                            seen=seen, hashed=True):
                if isinstance(value, Hashed):
                    batch.append((code, value.digest, value.content,
                                  value.record.get(mapping.key_column), None))
                else:  # why it cannot be read, or an item that cannot be hashed
                    batch.append((code, None, None, None, value))
                if len(batch) >= BATCH:
                    conn.send(("items", batch))
                    batch = []
            conn.send(("items", batch))
            conn.send(("done", seen.hits if seen is not None else 0))
        finally:
            connector.close()
            if store is not None:
                store.close()
