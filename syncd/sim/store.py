"""The simulator's data: items in update order, the delivery ledger, idempotent replies.

Everything is held in memory and, when a SQLite file is given, written
through to it (and loaded back at start) so a demo platform survives a
restart. Not thread-safe by itself: the simulator serialises access.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from syncd.sim.items import content_hash, format_time

_TICK = timedelta(microseconds=1)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS item (code TEXT PRIMARY KEY, content BLOB NOT NULL, "
    "version INTEGER NOT NULL, stamp TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger (code TEXT, hash TEXT, count INTEGER NOT NULL, "
    "PRIMARY KEY (code, hash))",
    "CREATE TABLE IF NOT EXISTS reply (app TEXT, key TEXT, body_sha TEXT, created_ms INTEGER, "
    "answer BLOB NOT NULL, PRIMARY KEY (app, key, body_sha))",
)

ReplyKey = tuple[str, str, str]  # (app key, Idempotency-Key, sha256 of the raw body)


@dataclass(frozen=True, slots=True)
class Stored:
    """One item as the platform holds it: content plus the platform's metadata."""

    content: dict[str, Any]
    version: int
    stamp: datetime  # UTC; emitted as UPDATE_TIME in Beijing time
    hash: str

    def record(self) -> dict[str, Any]:
        """The ITEM as the platform answers it."""
        return {**self.content, "TASK_VERSION": self.version, "UPDATE_TIME": format_time(self.stamp)}


class ItemStore:
    """Items keyed by TASK_CODE, indexed by ``(UPDATE_TIME, TASK_CODE)`` for listing.

    Args:
        db_path: a SQLite file to persist to, or None for memory only.
        clock: the platform's clock (aware datetimes).
    """

    def __init__(self, db_path: str | None, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._items: dict[str, Stored] = {}
        self._order: list[tuple[datetime, str]] = []
        self._last_stamp = datetime.min.replace(tzinfo=timezone.utc)
        self.ledger: Counter[tuple[str, str]] = Counter()
        self._replies: dict[ReplyKey, tuple[int, bytes]] = {}
        self._db = sqlite3.connect(db_path, check_same_thread=False) if db_path else None
        if self._db is not None:
            self._load(self._db)

    def _load(self, db: sqlite3.Connection) -> None:
        with db:
            for statement in _SCHEMA:
                db.execute(statement)
        for code, content, version, stamp in db.execute("SELECT code, content, version, stamp "
                                                        "FROM item"):
            data = orjson.loads(content)
            self._index(Stored(data, version, datetime.fromisoformat(stamp), content_hash(data)),
                        code)
        for code, hash_, count in db.execute("SELECT code, hash, count FROM ledger"):
            self.ledger[(code, hash_)] = count
        for app, key, body_sha, created_ms, answer in db.execute(
                "SELECT app, key, body_sha, created_ms, answer FROM reply ORDER BY created_ms"):
            self._replies[(app, key, body_sha)] = (created_ms, answer)

    def close(self) -> None:
        """Close the SQLite file, if any."""
        if self._db is not None:
            self._db.close()

    # --- items ----------------------------------------------------------------
    def get(self, code: str) -> Stored | None:
        return self._items.get(code)

    def all(self) -> list[Stored]:
        """Every item in ``(UPDATE_TIME, TASK_CODE)`` order."""
        return [self._items[code] for _stamp, code in self._order]

    def write(self, code: str, content: dict[str, Any], *, delivered: bool) -> Stored:
        """Store new content as the next version, stamped now.

        ``delivered`` counts the write in the ledger (a push through the API,
        as opposed to an edit made on the platform's side).
        """
        old = self._items.get(code)
        stored = Stored(content, (old.version if old else 0) + 1, self._next_stamp(),
                        content_hash(content))
        if old is not None:
            del self._order[bisect.bisect_left(self._order, (old.stamp, code))]
        self._index(stored, code)
        if delivered:
            self.ledger[(code, stored.hash)] += 1
        if self._db is not None:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO item VALUES (?, ?, ?, ?)",
                                 (code, orjson.dumps(content), stored.version,
                                  stored.stamp.isoformat()))
                if delivered:
                    self._db.execute("INSERT OR REPLACE INTO ledger VALUES (?, ?, ?)",
                                     (code, stored.hash, self.ledger[(code, stored.hash)]))
        return stored

    def _index(self, stored: Stored, code: str) -> None:
        self._items[code] = stored
        bisect.insort(self._order, (stored.stamp, code))
        self._last_stamp = max(self._last_stamp, stored.stamp)

    def _next_stamp(self) -> datetime:
        """Now, but strictly after every earlier stamp.

        A listing cursor sits at the last ``(UPDATE_TIME, TASK_CODE)`` seen; an
        item changed while a client pages must land after it, even when the
        clock has not moved (or moved back), or the client would miss it.
        """
        now = self._clock().astimezone(timezone.utc)
        self._last_stamp = max(now, self._last_stamp + _TICK)
        return self._last_stamp

    def scan(self, *, after: tuple[datetime, str] | None, since: datetime | None,
             region: str | None, status: str | None) -> Iterator[Stored]:
        """Items past ``after`` (exclusive) and ``since`` (inclusive) matching the filters."""
        start = 0
        if since is not None:
            start = bisect.bisect_left(self._order, (since.astimezone(timezone.utc), ""))
        if after is not None:
            start = max(start, bisect.bisect_right(self._order, after))
        for _stamp, code in self._order[start:]:
            stored = self._items[code]
            if region is not None and stored.content.get("REGION_CODE") != region:
                continue
            if status is not None and stored.content.get("TASK_STATE") != status:
                continue
            yield stored

    # --- idempotent replies ----------------------------------------------------
    def reply(self, key: ReplyKey, now_ms: int, ttl_ms: int) -> bytes | None:
        """The answer first given to this key and body, if younger than ``ttl_ms``."""
        self._expire(now_ms - ttl_ms)
        entry = self._replies.get(key)
        return entry[1] if entry else None

    def remember(self, key: ReplyKey, now_ms: int, answer: bytes) -> None:
        self._replies[key] = (now_ms, answer)
        if self._db is not None:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO reply VALUES (?, ?, ?, ?, ?)",
                                 (*key, now_ms, answer))

    def _expire(self, cutoff_ms: int) -> None:
        """Forget replies older than the cutoff (oldest first: dicts keep insertion order)."""
        stale = []
        for key, (created, _answer) in self._replies.items():
            if created >= cutoff_ms:
                break
            stale.append(key)
        for key in stale:
            del self._replies[key]
        if stale and self._db is not None:
            with self._db:
                self._db.execute("DELETE FROM reply WHERE created_ms < ?", (cutoff_ms,))
