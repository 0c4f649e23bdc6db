"""Reconciliation: every difference between channels, field by field, in bounded memory.

Each channel is streamed in item_code order (:mod:`syncd.item_stream`; with
openers, each in a reader process of its own, :mod:`syncd.channel_reader`), the
streams are merged, items whose channels agree on one digest (the exact digest,
or the content hash the reconcile cache kept) are consistent at once, and the
others are compared with the reference channel on normalised comparison keys,
so cosmetic differences (width, whitespace, dashes, phone formats, order of
materials) are not reported. An item found alike only that way gets its content
hash kept in the cache, so the next reconcile settles it at once.
"""

from __future__ import annotations

import heapq
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from syncd.channel_reader import OpenChannel, read_apart, readers_can_share
from syncd.errors import MappingError
from syncd.gc_thresholds import fewer_collections
from syncd.item_stream import (
    COMPARED,
    FIELD_NAMES,
    PAGE,
    Hashed,
    Remote,
    exact_or_none,
    sorted_items,
    unreadable,
)
from syncd.mapping import Mapping
from syncd.model import (
    CHILDREN,
    ITEM_FIELDS,
    ServiceItem,
    children_json,
    children_remembered,
    content_hash,
    field_key,
)
from syncd.report.data import Diff
from syncd.seen import ChannelSeen, open_seen
from syncd.state.store import StateStore

log = structlog.get_logger(__name__)

#: items whose digests disagree are compared field by field this many at a time (those a
#: reader process read are read again here, a page of keys per channel)
RESOLVE_BATCH = 200
#: children remembered per memory while this process only compares items again (a
#: batch's items hold about a thousand child rows per channel)
AGAIN_CHILDREN = 1 << 10
DUPLICATE = "实施编码重复：同一渠道有两条记录映射为同一事项，仅比对第一条"


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


#: what a channel holds for one item in the merge (a str: why its record cannot be read)
Value = ServiceItem | Hashed | Remote | str


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
    compared_again: int = 0   # items whose digests disagreed: read again, field by field

    def field_rates(self) -> dict[str, float]:
        """Consistency per field, over every compared channel."""
        equal, compared = Counter[str](), Counter[str]()
        for s in self.stats.values():
            equal.update(s.fields_equal)
            compared.update(s.fields_compared)
        return {f: equal[f] / compared[f] for f in compared if compared[f]}


def reconcile(channels: dict[str, tuple[Any, Mapping]], reference: str, *,
              keys: Sequence[str] | None = None, workdir: Path | None = None,
              max_diffs: int = 200_000, store: StateStore | None = None,
              openers: dict[str, OpenChannel] | None = None,
              max_readers: int | None = None) -> ReconcileResult:
    """Compare every channel with ``reference`` item by item and field by field.

    Args:
        channels: name → (connector with ``scan``, its mapping); includes the reference.
        keys: only these items.
        max_diffs: keep at most this many differences in memory (the counts and
            ``total_diffs`` stay exact); bounds memory when a channel differs wholesale.
        store: the state store; records unchanged since the last reconcile are then
            not mapped again (see :mod:`syncd.seen`).
        openers: name → how to open that channel again in another process. Given for
            every channel, each channel is read, mapped and hashed in a process of its
            own (:mod:`syncd.channel_reader`), side by side; this process merges the
            digests and reads again only the items whose digests disagree.
        max_readers: at most this many reader processes (default :func:`reader_limit`);
            the channels past it are read in this process.
    """
    names = list(channels)
    result = ReconcileResult(str(uuid.uuid4()), datetime.now(UTC), reference,
                             [n for n in names if n != reference])
    result.stats = {n: ChannelStats() for n in result.channels}
    apart = names[:max_readers or reader_limit()] if (
        openers is not None and set(names) <= set(openers) and readers_can_share(store)) else []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, ExitStack() as stack:
        stack.enter_context(fewer_collections())
        if len(apart) == len(names):  # this process only compares items again
            stack.enter_context(children_remembered(AGAIN_CHILDREN))
        readers = stack.enter_context(read_apart({n: openers[n] for n in apart}, store,  # type: ignore[index]
                                                 keys=keys, workdir=Path(tmp)))
        # channels read here next to readers must come hashed, as the readers' do
        here = _read_here({n: channels[n] for n in names if n not in apart}, store, keys,
                          Path(tmp), hashed=bool(apart))
        savers = _savers(store, {n: channels[n] for n in apart}, here)
        streams = [_tagged(i, readers.streams.get(n) or here.streams[n])
                   for i, n in enumerate(names)]
        group: dict[str, Value] = {}
        pending: list[tuple[str, dict[str, Value]]] = []
        current: str | None = None
        for code, i, value in heapq.merge(*streams, key=lambda t: (t[0], t[1])):
            if code != current and current is not None:
                _settle(current, group, result, pending, channels, max_diffs, savers)
                group = {}
            current = code
            if names[i] in group:  # two records of one channel read as the same item
                result.unreadable.append((names[i], code, DUPLICATE))
                continue
            group[names[i]] = value
        if current is not None:
            _settle(current, group, result, pending, channels, max_diffs, savers)
        _compare_pending(pending, result, channels, max_diffs, savers)
        for saver in savers.values():
            saver.flush()
        result.reused = {**readers.reused(), **here.reused()}
        result.unreadable.sort(key=lambda u: (u[1], u[0]))  # by item, then channel
    log.info("reconcile_done", run_id=result.run_id, items=result.items,
             differences=result.total_diffs, reused=result.reused,
             compared_again=result.compared_again, reader_processes=len(apart))
    return result


def reader_limit() -> int:
    """How many channels get a reader process: one per CPU (at least two). Each reader
    costs tens of MB; past the CPUs more of them add memory, not speed, so the other
    channels are read in this process."""
    return max(2, os.cpu_count() or 1)


@dataclass
class _Here:
    """Channels read in this process, one stream each."""

    streams: dict[str, Iterator[tuple[str, Any]]]
    seen: dict[str, ChannelSeen | None]

    def reused(self) -> dict[str, int]:
        return {n: s.hits for n, s in self.seen.items() if s is not None}


def _read_here(channels: dict[str, tuple[Any, Mapping]], store: StateStore | None,
               keys: Sequence[str] | None, workdir: Path, *, hashed: bool) -> _Here:
    """Stream ``channels`` in this process: hashed where the reconcile cache is on or
    reader processes read the other channels, else as plain items."""
    seen = {n: open_seen(store, n, m, c) if store is not None
            else None for n, (c, m) in channels.items()}
    return _Here({n: sorted_items(c, m, workdir, keys=keys, seen=seen[n], hashed=hashed)
                  for n, (c, m) in channels.items()}, seen)


def _savers(store: StateStore | None, apart: dict[str, tuple[Any, Mapping]], here: _Here
            ) -> dict[str, ChannelSeen]:
    """Where this process keeps content hashes, per channel: the cache its own channels
    read through, and for each reader's channel one under the reader's fingerprint
    (that reader drops the older rows)."""
    savers = {n: s for n, s in here.seen.items() if s is not None}
    if store is not None:
        for n, (c, m) in apart.items():
            if (s := open_seen(store, n, m, c, forget=False)) is not None:
                savers[n] = s
    return savers


def _tagged(index: int, stream: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, int, Any]]:
    for code, value in stream:
        yield code, index, value


def _settle(code: str, group: dict[str, Value], result: ReconcileResult,
            pending: list[tuple[str, dict[str, Value]]],
            channels: dict[str, tuple[Any, Mapping]], max_diffs: int,
            savers: dict[str, ChannelSeen]) -> None:
    """An item whose channels all hold one digest is consistent at once; the others
    wait in ``pending`` to be compared field by field, a batch at a time."""
    if _all_same_digest(group, len(result.channels) + 1):
        result.items += 1
        for name in result.channels:
            stats = result.stats[name]
            stats.items += 1
            stats.compared += 1
            stats.consistent += 1
        return
    pending.append((code, group))
    if len(pending) >= RESOLVE_BATCH:
        _compare_pending(pending, result, channels, max_diffs, savers)


def _compare_pending(pending: list[tuple[str, dict[str, Value]]], result: ReconcileResult,
                     channels: dict[str, tuple[Any, Mapping]], max_diffs: int,
                     savers: dict[str, ChannelSeen]) -> None:
    """Compare the waiting items in item_code order, then forget them."""
    kept = [{n: getattr(v, "content", None) for n, v in group.items()}
            for _code, group in pending] if savers else []
    _read_again(pending, channels)
    for n, (code, group) in enumerate(pending):
        if not group:  # gone from every channel since it was read
            continue
        result.compared_again += 1
        items = {name: v.resolve() if isinstance(v, Hashed) else v
                 for name, v in group.items()}
        if _compare_group(code, items, result, max_diffs) and savers:
            _keep_content_hash(code, items, kept[n], savers)  # type: ignore[arg-type]
    pending.clear()


def _keep_content_hash(code: str, items: dict[str, ServiceItem], kept: dict[str, str | None],
                       savers: dict[str, ChannelSeen]) -> None:
    """An item every channel holds alike, though not as the same exact digest (it
    differs cosmetically): keep its content hash for each channel (``kept``: the one
    its cache row had), so the next reconcile settles it on those without reading it
    again. Computed here, for these few items, rather than by the readers for all."""
    try:
        hashes = {content_hash(item) for item in items.values()}
    except orjson.JSONEncodeError:
        return  # a value no digest can hold (an integer past 64 bits): compared each time
    if len(hashes) != 1:
        return  # alike as compared, apart as hashed: nothing to settle next time
    content = hashes.pop()
    for name, item in items.items():
        saver = savers.get(name)
        if saver is not None and kept.get(name) != content:
            exact = exact_or_none(item)  # of the item as compared (it may have changed)
            if exact is not None:
                saver.note_alike(code, exact, content)


def _read_again(pending: list[tuple[str, dict[str, Value]]],
                channels: dict[str, tuple[Any, Mapping]]) -> None:
    """Replace each :class:`Remote` by the item it is now, read by its raw key (a page of
    keys per channel). An item deleted since its reader saw it is now absent."""
    wanted: dict[str, list[tuple[str, dict[str, Value]]]] = {}
    for code, group in pending:
        for name, value in group.items():
            if isinstance(value, Remote):
                wanted.setdefault(name, []).append((code, group))
    for name, groups in wanted.items():
        connector, mapping = channels[name]
        keys = [g[name].raw_key for _code, g in groups]  # type: ignore[union-attr]
        now: dict[str, ServiceItem | str] = {}
        for page in connector.scan(PAGE, keys=keys):
            for record in page.records:
                try:
                    item = mapping.to_item(record)
                    now.setdefault(item.item_code, item)
                except MappingError as exc:
                    now.setdefault(*unreadable(mapping, record, exc))
        for code, group in groups:
            if code in now:
                group[name] = now[code]
            else:
                del group[name]


def _compare_group(code: str, group: dict[str, ServiceItem | str],
                   result: ReconcileResult, max_diffs: int) -> bool:
    """Compare one item; whether every channel holds it, readable and alike."""
    result.items += 1
    alike = len(group) == len(result.channels) + 1
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
            alike = False
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
        alike = alike and not found
        result.total_diffs += len(found)
        room = max_diffs - len(result.diffs)
        result.diffs.extend(found[:max(room, 0)])
    return alike


def _all_same_digest(group: dict[str, Value], channels: int) -> bool:
    """Every channel holds the item with one exact digest, or with one content hash
    kept from an earlier reconcile: nothing differs, nothing to map."""
    if len(group) != channels:
        return False
    for attr in ("digest", "content"):
        hashes = {getattr(v, attr, None) for v in group.values()}
        if len(hashes) == 1 and None not in hashes:
            return True
    return False


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
    for attr, (_cls, _specs, label) in CHILDREN.items():
        a, b = getattr(ref, attr), getattr(other, attr)
        if a != b and children_json(attr, a) != children_json(attr, b):
            stats.fields_differing[attr] += 1
            diffs.append(Diff(code, title, attr, label, "differs", channel,
                              _show_children(a), _show_children(b)))
    if diffs and ref.version is not None and other.version is not None \
            and other.version < ref.version:
        diffs.insert(0, Diff(code, title, "version", ITEM_FIELDS["version"].label, "stale",
                             channel, str(ref.version), str(other.version)))
    return diffs


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
