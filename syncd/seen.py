"""What each channel held at its last reconcile, so unchanged records are not mapped again.

A daily reconcile of a million items reads every record of every channel, but
few change from one day to the next. For each record we keep a digest of its
raw form and the exact digest of the item it mapped to
(:func:`syncd.item_stream.exact_digest`). When the raw digest is the same today,
mapping it again would give the same item (mapping is deterministic), so the
stored digest stands in for the item; the record is mapped only if that digest
disagrees with another channel's and the fields must be compared.

Channels that differ only cosmetically (widths, whitespace, the order of
materials) disagree on exact digests every day. For those items reconcile also
keeps the content hash (:func:`syncd.model.content_hash`, normalised), which it
computes only once the fields were compared and found alike: the next
reconcile settles them on equal content hashes without reading them again.
Normalising every text field of every record (what a content hash costs) is
the larger part of mapping one, so it is done for those few items only. Those
hashes live in a table of their own, written only by the process that compares
(a reader writes the other), each valid for the exact digest it was computed
with: neither process can overwrite the other's rows, in whatever order their
writes land.

A row is only valid under what made it, so each row carries a fingerprint of the
mapping text, the code tables, syncd's code that maps and digests, the Unicode and
Python versions (NFKC and ``str`` methods follow them) and the shape the connector
reads (column types). Lookups ask for the current fingerprint only; rows under any
other are dropped when a reconcile starts.

The cache is an optimisation, never a source of truth: a record it cannot key or
digest (no readable code, a value JSON cannot hold) is simply mapped, and if the
state DB fails the run goes on without it.
"""

from __future__ import annotations

import hashlib
import math
import operator
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import structlog

from connectors.base import SharedRow
from syncd.codes import MAPPINGS_DIR
from syncd.errors import MappingError, StateError
from syncd.mapping import Mapping, RawRecord
from syncd.state.store import StateStore

log = structlog.get_logger(__name__)

_PACKAGE = Path(__file__).resolve().parent
#: syncd's own code that decides what a raw record maps to and how it hashes
_MAPPING_CODE = ("steps.py", "mapping.py", "model.py", "normalize.py", "codes.py",
                 "yaml_lines.py", "item_stream.py")  # the last: the exact digest kept
SAVE_EVERY = 5000
#: what was kept for an item_code: (raw digest, exact digest, content hash or None)
Row = tuple[str, str, str | None] | None
MAX_CODE = 64  # reconcile_seen.item_code's length


def fingerprint(mapping: Mapping, shape: str) -> str | None:
    """Digest of everything that decides ``mapping``'s output for records of ``shape``;
    None for a mapping not loaded from a file."""
    if mapping.source_digest is None:
        return None
    h = hashlib.blake2b(digest_size=16)
    for part in (mapping.source_digest, shape, unicodedata.unidata_version,
                 f"{sys.version_info.major}.{sys.version_info.minor}"):
        h.update(part.encode() + b"\x00")
    for path in (MAPPINGS_DIR / "codes.yaml", *(_PACKAGE / name for name in _MAPPING_CODE)):
        h.update(path.read_bytes())
    return h.hexdigest()


def raw_digest(record: RawRecord, floats: FloatColumns | None = None) -> str | None:
    """Digest of a raw record (children included) that keeps apart values the mapping
    reads differently: 1 and "1", bytes, Decimal, a naive and an aware datetime. None
    when a value cannot be serialised (an integer past 64 bits): that record is mapped.

    A datetime is serialised as its ISO text, as orjson writes it: the same as that
    text in a text column. Within one channel the two cannot meet: each column gives
    values of one type, fixed by the schema the connector reads (a SQL channel's
    column types), which is in the fingerprint; a JSON channel's values are never
    datetimes. Tagging each datetime apart (in Python, through ``default``) cost 1.5 µs
    of 5.5 a record.

    JSON writes a NaN or an infinity as ``null``, as it writes NULL, so a float column
    whose value went from NULL to NaN would keep its record's digest, and the change
    would go unreported. Such values are tagged first, in the columns the connector
    names as able to hold them (``floats``: the record's under None, a child
    collection's under its key; :attr:`connectors.sql.channel.SqlChannel.float_columns`):
    looking at every value of every record for them doubled the digest's cost. A JSON
    channel has none (the parser refuses them).

    A connector's :class:`~connectors.base.SharedRow` (a child row many records hold:
    the same materials recur) stands in as its own digest, computed once and kept with
    the row, rather than being serialised and hashed again with every record (5.5 →
    3.7 µs a record with both, the development machine's SQLite channels). Its values
    are looked at for NaN and infinities then, whatever their column.

    SHA-256 cut to 128 bits, as :func:`syncd.item_stream.exact_digest`: CPUs with SHA
    instructions hash it in hardware, where this Python's BLAKE2b is the portable C
    code. A row kept under another digest simply misses once: the record is mapped,
    its row replaced.
    """
    if floats:
        record = _nonfinite_tagged(record, floats)
    try:
        blob = orjson.dumps(record, default=_tagged, option=_RAW_OPTIONS)
    except orjson.JSONEncodeError:
        return None
    return hashlib.sha256(blob).hexdigest()[:32]


#: the columns that can hold a NaN or an infinity: the record's (None) and each child
#: collection's (its record key)
FloatColumns = dict[str | None, tuple[str, ...]]


def _nonfinite_tagged(record: RawRecord, floats: FloatColumns) -> RawRecord:
    """``record``, or a copy of it where a NaN or an infinity in ``floats`` is tagged."""
    out = record
    for key, columns in floats.items():
        if key is None:
            out = _tagged_row(out, columns)
            continue
        rows = record.get(key)
        if not isinstance(rows, list) or _SHARED.issuperset(map(type, rows)):
            continue  # a shared row's own digest looks at its values
        new = [row if row.__class__ is SharedRow or not isinstance(row, dict)
               else _tagged_row(row, columns) for row in rows]
        if any(map(operator.is_not, new, rows)):
            out = dict(out) if out is record else out
            out[key] = new
    return out


def _tagged_row(row: RawRecord, columns: tuple[str, ...]) -> RawRecord:
    """``row``, or a copy of it where a NaN or an infinity in ``columns`` is tagged. Most
    rows hold none: their values' types are looked at first, in C."""
    if _MAY_BE_ODD.isdisjoint(map(type, map(row.get, columns))):
        return row
    out = row
    for column in columns:
        if (tag := _nonfinite(row.get(column))) is not None:
            out = dict(row) if out is row else out
            out[column] = tag
    return out


_MAY_BE_ODD = frozenset((float, list))  # a NaN or an infinity, or an array of floats
_SHARED = frozenset((SharedRow,))


def _nonfinite(value: Any) -> Any:
    """A NaN or an infinity (or a list holding one) tagged apart from ``null``, else None."""
    if value.__class__ is float:
        return None if math.isfinite(value) else {"\x00float": repr(value)}
    if value.__class__ is list and any(_nonfinite(v) is not None for v in value):
        return [_nonfinite(v) or v for v in value]
    return None


_RAW_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _tagged(value: Any) -> Any:
    """What orjson does not serialise as it is (``default``): a shared child row as its
    digest, anything else as a one-key object naming its type."""
    if value.__class__ is SharedRow:
        try:
            return value.digest
        except AttributeError:
            value.digest = _shared_row(value)
            return value.digest
    if isinstance(value, bytes | bytearray | memoryview):
        return {"\x00bytes": bytes(value).hex()}
    for base in (dict, list, str, int):  # another subclass: its plain value, tagged
        if isinstance(value, base):
            return {"\x00" + type(value).__name__: base(value)}
    return {"\x00" + type(value).__name__: str(value)}


def _shared_row(row: SharedRow) -> orjson.Fragment:
    values = {name: _nonfinite(value) or value for name, value in row.items()}
    digest = hashlib.sha256(orjson.dumps(values, default=_tagged, option=_RAW_OPTIONS))
    # made here, to its size: what orjson.dumps returns holds its whole ~4 KB buffer
    return orjson.Fragment(b'{"\\u0000row":"' + digest.hexdigest()[:32].encode() + b'"}')


def _storable(code: str) -> bool:
    """A key the state table can hold (PostgreSQL refuses NUL; the column has a length;
    a lone surrogate has no UTF-8, and drivers raise on it, not the database)."""
    return len(code) <= MAX_CODE and "\x00" not in code and (code.isascii() or _utf8(code))


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class ChannelSeen:
    """One channel's rows: looked up a page at a time, new ones saved in batches."""

    def __init__(self, store: StateStore, channel: str, mapping: Mapping, fp: str,
                 floats: FloatColumns | None = None) -> None:
        self.store, self.channel, self.mapping, self.fp = store, channel, mapping, fp
        self.floats = floats  # the connector's columns that can hold NaN
        #: item_code → (raw digest, exact digest) and → (exact digest, content hash): a
        #: later note of one code replaces an earlier one not yet saved
        self.pending: dict[str, tuple[str, str]] = {}
        self.alike: dict[str, tuple[str, str]] = {}
        self.hits = 0
        self.on = True
        #: whether the channel has rows under ``fp`` to look up: on its first reconcile
        #: (or after what decides its mapping changed) there are none, and a run reads
        #: each record once, so every page's lookup would come back empty
        self.any = True

    def marks(self, records: Sequence[RawRecord]) -> list[tuple[str | None, str | None, Row]]:
        """Per record: (item_code, raw digest, what was kept for its code last time:
        (raw digest, exact digest, content hash) or None). The record is unchanged when
        its raw digest is the one kept.

        With no rows to look up (:attr:`any` false) the codes are not read (None): the
        mapping reads each record's code anyway, and :meth:`note` keeps it under that."""
        floats = self.floats
        digests = [raw_digest(r, floats) for r in records]
        if not self.any:
            return [(None, digest, None) for digest in digests]
        codes: list[str | None] = []
        for record in records:
            try:
                codes.append(self.mapping.item_code_of(record))
            except MappingError:  # the full mapping reports it as unreadable
                codes.append(None)
        known = self._call(self.store.seen, self.fp,
                           [c for c in codes if c is not None and _storable(c)]) or {}
        out: list[tuple[str | None, str | None, Row]] = []
        for code, digest in zip(codes, digests, strict=True):
            last = known.get(code) if code is not None else None
            self.hits += last is not None and digest is not None and last[0] == digest
            out.append((code, digest, last))
        return out

    def note(self, code: str, raw: str | None, exact: str) -> None:
        """Remember a mapped record's digests (saved in batches of ``SAVE_EVERY``)."""
        if raw is None or not isinstance(code, str) or not _storable(code):
            return  # mapped again next time
        self.pending[code] = (raw, exact)
        if len(self.pending) >= SAVE_EVERY:
            self.flush()

    def note_alike(self, code: str, exact: str, content: str) -> None:
        """Remember the content hash of an item found alike with the other channels,
        for as long as its exact digest stays ``exact``."""
        if not _storable(code):
            return
        self.alike[code] = (exact, content)
        if len(self.alike) >= SAVE_EVERY:
            self.flush()

    def flush(self) -> None:
        """Save what was noted since the last flush."""
        for rows, save in ((self.pending, self.store.save_seen),
                           (self.alike, self.store.save_alike)):
            if rows:
                self._call(save, self.fp, [(code, *row) for code, row in rows.items()])
                rows.clear()

    def forget_others(self) -> None:
        """Drop the channel's rows made under any other fingerprint, and note whether any
        are left to look up."""
        self._call(lambda channel: self.store.forget_seen(channel, keep=self.fp))
        self.any = self._call(self.store.has_seen, self.fp) is not False

    def _call(self, method: Any, *args: Any) -> Any:
        """A state DB call; on failure the cache is off for the rest of the run."""
        if not self.on:
            return None
        try:
            return method(self.channel, *args)
        except StateError as exc:
            self.on = False
            log.warning("reconcile_cache_off", channel=self.channel, reason=str(exc))
            return None


def open_seen(store: StateStore, channel: str, mapping: Mapping, connector: Any, *,
              forget: bool = True) -> ChannelSeen | None:
    """The channel's seen rows under what decides its mapping today, for the records
    ``connector`` reads (its ``record_shape`` and ``float_columns``, where it has them);
    unless ``forget`` is false (the channel's reader process drops them), older ones are
    dropped."""
    fp = fingerprint(mapping, getattr(connector, "record_shape", ""))
    if fp is None:
        return None
    seen = ChannelSeen(store, channel, mapping, fp, getattr(connector, "float_columns", None))
    if forget:
        seen.forget_others()
    return seen
