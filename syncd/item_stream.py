"""A channel as a stream of (item_code, item) in item_code order, for reconcile.

Each record is mapped (not validated: a value that breaks a rule is still what
the channel says). A channel whose listing is not in key order is first spilled
to a temporary SQLite file and read back sorted, so memory stays bounded. With a
state store, records unchanged since the last reconcile are not mapped again
(:mod:`syncd.seen`): they stand in as the digests kept for them.

Kept apart from :mod:`syncd.reconcile` so that a reader process
(:mod:`syncd.channel_reader`) imports only what reading a channel needs.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from syncd.errors import ConnectorError, MappingError
from syncd.mapping import Mapping
from syncd.model import (
    CHILDREN,
    ITEM_FIELDS,
    ServiceItem,
    attributes,
    kept_json,
    remembered,
)
from syncd.seen import ChannelSeen

PAGE = 1000


def sorted_items(source: Any, mapping: Mapping, workdir: Path, *,
                 keys: Sequence[str] | None = None, seen: ChannelSeen | None = None,
                 hashed: bool = False) -> Iterator[tuple[str, ServiceItem | Hashed | str]]:
    """(item_code, item) in item_code order; an unreadable record gives (code, reason).

    With ``hashed`` (implied by ``seen``) each item comes as a :class:`Hashed` by its
    exact digest; with ``seen``, records unchanged since the last reconcile are not
    mapped, and come with the content hash kept for them, if any.
    """
    pages = source.scan(PAGE, keys=keys) if keys else source.scan(PAGE)
    if not getattr(source, "ordered_scan", True):
        pages = _spilled(mapping, pages, workdir)
    yield from _checked_order(source.name, _mapped(mapping, pages, seen,
                                                   hashed or seen is not None))


@dataclass(slots=True)
class Hashed:
    """An item by its exact digest; ``record`` is mapped only when its fields are needed.

    ``content`` is the content hash the reconcile cache kept for the item
    (:mod:`syncd.seen`), if any: channels that agree on it are alike even where their
    exact digests differ."""

    digest: str
    content: str | None
    mapping: Mapping
    record: dict[str, Any]
    item: ServiceItem | None = None

    def resolve(self) -> ServiceItem | str:
        """The item, mapped now if need be (or why it cannot be read)."""
        if self.item is None:
            try:
                self.item = self.mapping.to_item(self.record)
            except MappingError as exc:
                return reason_of(exc)
        return self.item


@dataclass(frozen=True, slots=True)
class Remote:
    """An item hashed by a reader process (:mod:`syncd.channel_reader`); when its fields
    are needed it is read again by ``raw_key`` here."""

    digest: str
    content: str | None
    raw_key: Any


def _mapped(mapping: Mapping, pages: Iterable[Any], seen: ChannelSeen | None,
            hashed: bool) -> Iterator[tuple[str, ServiceItem | Hashed | str]]:
    """Map each record; one the mapping cannot read becomes (code, reason).

    Items are not validated here: a value that breaks a rule (a placeholder, a bad
    code) is still what the channel says and is compared like any other; the rules
    are ``syncd report inspect``'s to report."""
    read = mapping.values_reader(FIELD_NAMES) if hashed else None
    for page in pages:
        records = page.records
        marks = seen.marks(records) if seen and seen.on else [(None, None, None)] * len(records)
        for record, (code, raw, last) in zip(records, marks, strict=True):
            if last is not None and raw == last[0]:  # unchanged since the last reconcile
                yield code, Hashed(last[1], last[2], mapping, record)  # type: ignore[misc]
                continue
            try:
                exact = None
                if read is not None:
                    item_code, values = read(record)  # the item is built only if compared
                    item_code = _coded(item_code)
                    exact = _digest_or_none(values)
                if exact is None:  # read whole: what is not compared may fail it too
                    item = mapping.to_item(record)
                    yield _coded(item.item_code), item
                    continue
            except MappingError as exc:
                yield unreadable(mapping, record, exc)
                continue
            # a record changed in what the comparison does not read (an update time)
            # keeps its content hash
            content = last[2] if last is not None and last[1] == exact else None
            if seen is not None and code in (None, item_code):  # None: not looked up
                seen.note(item_code, raw, exact)
            yield item_code, Hashed(exact, content, mapping, record)
    if seen:
        seen.flush()


#: why a record without an item code (blank, or a placeholder) is not compared
NO_CODE = "事项编码为空，无法与其他渠道比对"


def _coded(item_code: str | None) -> str:
    """``item_code``, or MappingError where a record has none: it cannot be merged with
    any other channel's items, so it is reported (under its raw key) as unreadable."""
    if not item_code:
        raise MappingError(NO_CODE, field="item_code")
    return item_code


def reason_of(exc: MappingError) -> str:
    """Why a record cannot be read, as the report lists it."""
    return f"{exc.field or ''}: {exc.reason}"


def unreadable(mapping: Mapping, record: dict[str, Any], exc: MappingError) -> tuple[str, str]:
    """(item_code, reason) of a record the mapping cannot read: the code as far as it
    was read, else the raw key."""
    return exc.item_code or str(record.get(mapping.key_column, "")), reason_of(exc)


def exact_or_none(item: ServiceItem) -> str | None:
    """The item's exact digest, or None when a value cannot be hashed (an integer past
    64 bits): such an item is compared field by field and not remembered."""
    return _digest_or_none(list(_compared_values(item)))


def _digest_or_none(values: list[Any]) -> str | None:
    """:func:`_digest`, or None where a value cannot be hashed."""
    try:
        return _digest(values)
    except orjson.JSONEncodeError:
        return None


#: fields compared one by one (metadata such as version and update time is not content)
COMPARED = [s for s in ITEM_FIELDS.values() if s.content and s.name != "item_code"]
#: what reconcile compares: those fields and the child collections
FIELD_NAMES = [s.name for s in COMPARED] + list(CHILDREN)


def exact_digest(item: ServiceItem) -> str:
    """Digest of the compared fields exactly as mapped, not normalised.

    Equal digests mean equal values, so the item is consistent at once; unequal ones
    only mean the item is compared field by field (where cosmetic differences are
    normalised away). Far cheaper than :func:`syncd.model.content_hash`, so it is what
    reconcile merges on.

    SHA-256 cut to 128 bits: CPUs have SHA-256 instructions (x86 SHA-NI, ARMv8), 1.0 µs
    for an item's 1.4 KB here, against 1.6 µs for BLAKE2b. The reconcile cache keeps
    it (:mod:`syncd.seen`), so this module is part of the cache's fingerprint: rows
    kept under another formula are dropped, not compared with new digests."""
    return _digest(list(_compared_values(item)))


def _digest(values: list[Any]) -> str:
    """:func:`exact_digest` of the values of ``FIELD_NAMES``, as a list (changed here)."""
    for i, json_of in _CHILD_AT:  # each child serialised once (the same ones recur)
        values[i] = [json_of(child) for child in values[i]]
    return hashlib.sha256(orjson.dumps(values)).hexdigest()[:32]


_compared_values = attributes(FIELD_NAMES)
#: (position in FIELD_NAMES, a child's JSON remembered) of each child collection
_CHILD_AT = tuple((FIELD_NAMES.index(attr),
                   remembered(lambda child: orjson.Fragment(kept_json(child))))
                  for attr in CHILDREN)


def _checked_order(channel: str, stream: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    last = ""
    for code, value in stream:
        if code < last:
            raise ConnectorError(f"listing not in item_code order ({code!r} after {last!r}); "
                                 "its collation differs from code point order", channel=channel)
        last = code
        yield code, value


def _spilled(mapping: Mapping, pages: Iterable[Any], workdir: Path) -> Iterator[_SpillPage]:
    """Sort a listing by item_code through a temporary SQLite file (bounded memory);
    a record whose code cannot be read sorts by its raw key (and is reported).

    One record is kept per raw key, the last listed: a listing by update time (the
    platform's) can list an item twice when it changes while being listed. Records
    with different keys are all kept, even where their codes read alike (two blank
    ones, say): they come out next to each other, and are reported as an ordered
    channel's are."""
    path = workdir / f"spill-{uuid.uuid4().hex}.db"
    db = sqlite3.connect(path)
    try:
        db.execute("create table r (code text, raw_key text, raw blob, "
                   "primary key (code, raw_key))")
        for page in pages:
            db.executemany("insert or replace into r values (?, ?, ?)",
                           [(*_spill_key(mapping, r), orjson.dumps(r)) for r in page.records])
        db.commit()
        cursor = db.execute("select raw from r order by code, raw_key")
        while rows := cursor.fetchmany(PAGE):
            yield _SpillPage([orjson.loads(raw) for (raw,) in rows])
    finally:
        db.close()
        path.unlink(missing_ok=True)


def _spill_key(mapping: Mapping, record: dict[str, Any]) -> tuple[str, str]:
    """(what the record sorts by: its item_code, else its raw key; its raw key)."""
    raw_key = str(record.get(mapping.key_column))
    try:
        code = mapping.item_code_of(record)
    except MappingError:
        code = None
    return code if code is not None else raw_key, raw_key


@dataclass(frozen=True)
class _SpillPage:
    records: list[dict[str, Any]]
