"""What each channel held at its last reconcile, so unchanged records are not mapped again.

A daily reconcile of a million items reads every record of every channel, but
few change from one day to the next. For each record we keep a digest of its
raw form and the content hash it mapped to. When the digest is the same today,
mapping it again would give the same hash (mapping is deterministic), so the
stored hash stands in for the item; the record is mapped only if that hash
disagrees with another channel's and the fields must be shown.

The rows are only valid for the mapping that made them: a fingerprint of the
mapping file, the code tables and syncd's own mapping code is stored per
channel, and a changed fingerprint drops that channel's rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import structlog

from syncd.codes import MAPPINGS_DIR
from syncd.errors import MappingError
from syncd.mapping import Mapping, RawRecord
from syncd.state.store import StateStore

log = structlog.get_logger(__name__)

_PACKAGE = Path(__file__).resolve().parent
#: syncd's own code that decides what a raw record maps to and how it hashes
_MAPPING_CODE = ("steps.py", "mapping.py", "model.py", "normalize.py", "codes.py")
SAVE_EVERY = 5000


def fingerprint(mapping: Mapping) -> str | None:
    """Digest of everything that decides ``mapping``'s output; None when its file is gone."""
    h = hashlib.blake2b(digest_size=16)
    try:
        for path in (Path(mapping.file), MAPPINGS_DIR / "codes.yaml",
                     *(_PACKAGE / name for name in _MAPPING_CODE)):
            h.update(path.read_bytes())
    except OSError as exc:
        log.warning("reconcile_cache_off", channel=mapping.channel, reason=str(exc))
        return None
    return h.hexdigest()


def raw_digest(record: RawRecord) -> str:
    """Digest of a raw record (children included) that tells apart every value the
    mapping could read differently: types are kept (1, "1", b"1", Decimal("1") differ)."""
    blob = orjson.dumps(record, default=_tagged, option=orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _tagged(value: Any) -> dict[str, str]:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"\x00bytes": bytes(value).hex()}
    return {"\x00" + type(value).__name__: str(value)}


class ChannelSeen:
    """One channel's rows: looked up a page at a time, new ones saved in batches."""

    def __init__(self, store: StateStore, channel: str, mapping: Mapping) -> None:
        self.store, self.channel, self.mapping = store, channel, mapping
        self.pending: list[tuple[str, str, str]] = []
        self.hits = self.misses = 0

    def marks(self, records: Sequence[RawRecord]) -> list[tuple[str | None, str, str | None]]:
        """Per record: (item_code, raw digest, the content hash it had last time if the
        raw record is unchanged, else None)."""
        codes, digests = [], []
        for record in records:
            try:
                codes.append(self.mapping.item_code_of(record))
            except MappingError:  # the full mapping reports it as unreadable
                codes.append(None)
            digests.append(raw_digest(record))
        known = self.store.seen(self.channel, [c for c in codes if c is not None])
        out: list[tuple[str | None, str, str | None]] = []
        for code, digest in zip(codes, digests, strict=True):
            last = known.get(code) if code is not None else None
            same = last[1] if last is not None and last[0] == digest else None
            self.hits += same is not None
            out.append((code, digest, same))
        return out

    def note(self, code: str, digest: str, content_hash: str) -> None:
        self.misses += 1
        self.pending.append((code, digest, content_hash))
        if len(self.pending) >= SAVE_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.store.save_seen(self.channel, self.pending)
            self.pending = []


def open_seen(store: StateStore, channel: str, mapping: Mapping) -> ChannelSeen | None:
    """The channel's seen rows under its current mapping (dropped if the mapping changed)."""
    current = fingerprint(mapping)
    if current is None:
        return None
    if store.seen_fingerprint(channel) != current:
        store.reset_seen(channel, current)
    return ChannelSeen(store, channel, mapping)
