"""Reconciliation: every difference between channels, field by field, in bounded memory.

Each channel is streamed in item_code order (a channel whose listing is not in
key order is first spilled to a temporary SQLite file and read back sorted),
the streams are merged, and each item is compared with the reference channel
on normalised comparison keys, so cosmetic differences (width, whitespace,
dashes, phone formats, order of materials) are not reported.
"""

from __future__ import annotations

import heapq
import sqlite3
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from syncd.errors import ConnectorError, MappingError
from syncd.mapping import Mapping
from syncd.model import (
    CHILDREN,
    ITEM_FIELDS,
    FieldSpec,
    ServiceItem,
    content_hash,
    field_key,
)
from syncd.report.data import Diff
from syncd.seen import ChannelSeen, open_seen
from syncd.state.store import StateStore

log = structlog.get_logger(__name__)

PAGE = 1000
#: fields compared one by one (metadata such as version and update time is not content)
COMPARED = [s for s in ITEM_FIELDS.values() if s.content and s.name != "item_code"]
FIELD_NAMES = [s.name for s in COMPARED] + list(CHILDREN)


@dataclass
class ChannelStats:
    """Counts for one compared channel."""

    items: int = 0            # items in the union of reference and this channel
    consistent: int = 0
    unreadable: int = 0       # records the mapping could not read (reported, not compared)
    compared: int = 0         # items present on both sides: each of their fields was compared
    fields_differing: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.consistent / self.items if self.items else 1.0

    @property
    def fields_compared(self) -> Counter[str]:
        return Counter(dict.fromkeys(FIELD_NAMES, self.compared))

    @property
    def fields_equal(self) -> Counter[str]:
        return Counter({f: self.compared - self.fields_differing[f] for f in FIELD_NAMES})


@dataclass
class ReconcileResult:
    run_id: str
    started_at: datetime
    reference: str
    channels: list[str]
    items: int = 0
    diffs: list[Diff] = field(default_factory=list)
    total_diffs: int = 0      # found, even past max_diffs (only the first max_diffs are kept)
    stats: dict[str, ChannelStats] = field(default_factory=dict)
    unreadable: list[tuple[str, str, str]] = field(default_factory=list)  # (channel, code, reason)
    reused: dict[str, int] = field(default_factory=dict)  # channel → records not mapped again

    def field_rates(self) -> dict[str, float]:
        """Consistency per field, over every compared channel."""
        equal, compared = Counter[str](), Counter[str]()
        for s in self.stats.values():
            equal.update(s.fields_equal)
            compared.update(s.fields_compared)
        return {f: equal[f] / compared[f] for f in compared if compared[f]}


def sorted_items(source: Any, mapping: Mapping, workdir: Path, *,
                 keys: Sequence[str] | None = None, seen: ChannelSeen | None = None
                 ) -> Iterator[tuple[str, ServiceItem | Hashed | str]]:
    """(item_code, item) in item_code order; an unreadable record gives (code, reason).

    With ``seen`` each item comes as a :class:`Hashed`, and records unchanged since
    the last reconcile are not mapped.
    """
    pages = source.scan(PAGE, keys=keys) if keys else source.scan(PAGE)
    if getattr(source, "ordered_scan", True):
        yield from _checked_order(source.name, _mapped(mapping, pages, seen))
        return
    yield from _mapped(mapping, _spilled(mapping, pages, workdir), seen)


@dataclass(slots=True)
class Hashed:
    """An item by its content hash; ``record`` is mapped only when its fields are needed."""

    content_hash: str
    mapping: Mapping
    record: dict[str, Any] | None = None
    item: ServiceItem | None = None

    def resolve(self) -> ServiceItem | str:
        """The item, mapped now if need be (or why it cannot be read)."""
        if self.item is None:
            try:
                self.item = self.mapping.to_item(self.record or {})
            except MappingError as exc:
                return f"{exc.field or ''}: {exc.reason}"
        return self.item


def _mapped(mapping: Mapping, pages: Iterable[Any], seen: ChannelSeen | None
            ) -> Iterator[tuple[str, ServiceItem | Hashed | str]]:
    """Map each record; one the mapping cannot read becomes (code, reason).

    Items are not validated here: a value that breaks a rule (a placeholder, a bad
    code) is still what the channel says and is compared like any other; the rules
    are ``syncd report inspect``'s to report."""
    for page in pages:
        records = page.records
        marks = seen.marks(records) if seen and seen.on else [(None, None, None)] * len(records)
        for record, (code, digest, last_hash) in zip(records, marks, strict=True):
            if last_hash is not None:
                yield code, Hashed(last_hash, mapping, record=record)  # type: ignore[misc]
                continue
            try:
                item = mapping.to_item(record)
            except MappingError as exc:
                yield exc.item_code or str(record.get(mapping.key_column, "")), \
                    f"{exc.field or ''}: {exc.reason}"
                continue
            h = _hash_of(item) if seen is not None else None
            if h is None:
                yield item.item_code, item
                continue
            if code == item.item_code:
                seen.note(code, digest, h)  # type: ignore[union-attr]
            yield item.item_code, Hashed(h, mapping, item=item)
    if seen:
        seen.flush()


def _hash_of(item: ServiceItem) -> str | None:
    """The item's content hash, or None when a value cannot be hashed (an integer past
    64 bits): such an item is compared field by field and not remembered."""
    try:
        return content_hash(item)
    except orjson.JSONEncodeError:
        return None


def _checked_order(channel: str, stream: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    last = ""
    for code, value in stream:
        if code < last:
            raise ConnectorError(f"listing not in item_code order ({code!r} after {last!r}); "
                                 "its collation differs from code point order", channel=channel)
        last = code
        yield code, value


def _spilled(mapping: Mapping, pages: Iterable[Any], workdir: Path) -> Iterator[_SpillPage]:
    """Sort a listing by key through a temporary SQLite file (bounded memory)."""
    path = workdir / f"spill-{uuid.uuid4().hex}.db"
    db = sqlite3.connect(path)
    try:
        db.execute("create table r (code text primary key, raw blob)")
        for page in pages:
            db.executemany("insert or replace into r values (?, ?)",
                           [(str(r.get(mapping.key_column)), orjson.dumps(r)) for r in page.records])
        db.commit()
        cursor = db.execute("select raw from r order by code")
        while rows := cursor.fetchmany(PAGE):
            yield _SpillPage([orjson.loads(raw) for (raw,) in rows])
    finally:
        db.close()
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _SpillPage:
    records: list[dict[str, Any]]


def reconcile(channels: dict[str, tuple[Any, Mapping]], reference: str, *,
              keys: Sequence[str] | None = None, workdir: Path | None = None,
              max_diffs: int = 200_000, store: StateStore | None = None) -> ReconcileResult:
    """Compare every channel with ``reference`` item by item and field by field.

    Args:
        channels: name → (connector with ``scan``, its mapping); includes the reference.
        keys: only these items.
        max_diffs: keep at most this many differences in memory (the counts and
            ``total_diffs`` stay exact); bounds memory when a channel differs wholesale.
        store: the state store; records unchanged since the last reconcile are then
            not mapped again (see :mod:`syncd.seen`).
    """
    names = list(channels)
    result = ReconcileResult(str(uuid.uuid4()), datetime.now(UTC), reference,
                             [n for n in names if n != reference])
    result.stats = {n: ChannelStats() for n in result.channels}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        seen = {n: open_seen(store, n, channels[n][1],
                             getattr(channels[n][0], "record_shape", ""))
                if store is not None else None for n in names}
        streams = [_tagged(i, sorted_items(channels[n][0], channels[n][1], Path(tmp), keys=keys,
                                           seen=seen[n]))
                   for i, n in enumerate(names)]
        group: dict[str, ServiceItem | Hashed | str] = {}
        current: str | None = None
        for code, i, value in heapq.merge(*streams, key=lambda t: (t[0], t[1])):
            if code != current and current is not None:
                _compare_group(current, group, result, max_diffs)
                group = {}
            current = code
            if names[i] in group:  # two records of one channel read as the same item
                result.unreadable.append((names[i], code, "实施编码重复：同一渠道有两条记录映射为同一事项，"
                                                          "仅比对第一条"))
                continue
            group[names[i]] = value
        if current is not None:
            _compare_group(current, group, result, max_diffs)
    result.reused = {n: s.hits for n, s in seen.items() if s is not None}
    log.info("reconcile_done", run_id=result.run_id, items=result.items,
             differences=result.total_diffs, reused=result.reused)
    return result


def _tagged(index: int, stream: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, int, Any]]:
    for code, value in stream:
        yield code, index, value


def _compare_group(code: str, group: dict[str, ServiceItem | Hashed | str],
                   result: ReconcileResult, max_diffs: int) -> None:
    result.items += 1
    if _all_same_hash(group, len(result.channels) + 1):
        for name in result.channels:
            stats = result.stats[name]
            stats.items += 1
            stats.compared += 1
            stats.consistent += 1
        return
    group = {n: v.resolve() if isinstance(v, Hashed) else v for n, v in group.items()}
    ref = group.get(result.reference)
    for name, value in group.items():
        if isinstance(value, str):
            result.unreadable.append((name, code, value))
    ref_item = ref if isinstance(ref, ServiceItem) else None
    title = ref_item.item_name if ref_item else None
    for name in result.channels:
        stats = result.stats[name]
        other = group.get(name)
        if isinstance(other, str) or (ref is not None and ref_item is None):
            stats.unreadable += 1
            stats.items += 1
            continue
        if ref_item is None and other is None:
            continue
        stats.items += 1
        found: list[Diff] = []
        if other is None:
            found.append(Diff(code, title, None, None, "missing", name))
        elif ref_item is None:
            found.append(Diff(code, other.item_name, None, None, "extra", name))
        else:
            found = _field_diffs(code, title, ref_item, other, name, stats)
        if not found:
            stats.consistent += 1
        result.total_diffs += len(found)
        room = max_diffs - len(result.diffs)
        result.diffs.extend(found[:max(room, 0)])


def _all_same_hash(group: dict[str, ServiceItem | Hashed | str], channels: int) -> bool:
    """Every channel holds the item with one content hash: nothing differs, nothing to map."""
    if len(group) != channels:
        return False
    hashes = {v.content_hash if isinstance(v, Hashed) else None for v in group.values()}
    return len(hashes) == 1 and None not in hashes


def _field_diffs(code: str, title: str | None, ref: ServiceItem, other: ServiceItem,
                 channel: str, stats: ChannelStats) -> list[Diff]:
    """Field by field: equal values are equal at once; only values that differ are
    normalised before deciding (most fields of most items agree, so this is cheap)."""
    stats.compared += 1
    diffs = []
    for spec in COMPARED:
        a, b = getattr(ref, spec.name), getattr(other, spec.name)
        if a != b and field_key(spec, a) != field_key(spec, b):
            stats.fields_differing[spec.name] += 1
            diffs.append(Diff(code, title, spec.name, spec.label, "differs", channel,
                              _show(a), _show(b)))
    for attr, (_cls, specs, label) in CHILDREN.items():
        a, b = getattr(ref, attr), getattr(other, attr)
        if a != b and _children_view(a, specs) != _children_view(b, specs):
            stats.fields_differing[attr] += 1
            diffs.append(Diff(code, title, attr, label, "differs", channel,
                              _show_children(a), _show_children(b)))
    if diffs and ref.version is not None and other.version is not None \
            and other.version < ref.version:
        diffs.insert(0, Diff(code, title, "version", ITEM_FIELDS["version"].label, "stale",
                             channel, str(ref.version), str(other.version)))
    return diffs


def _children_view(rows: Sequence[Any], specs: dict[str, FieldSpec]) -> list[bytes]:
    """Child rows as compared: normalised content fields, in a stable order."""
    return sorted(orjson.dumps({s.name: field_key(s, getattr(r, s.name))
                                for s in specs.values() if s.content},
                               option=orjson.OPT_SORT_KEYS) for r in rows)


def _show(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value)


def _show_children(rows: Sequence[Any]) -> str:
    return "；".join(sorted(getattr(r, "name", "") for r in rows))
