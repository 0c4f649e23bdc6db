"""Load: canonical items → the target's records → one batch write, with in-process retries.

Transient batch failures are retried under the job's ``RetryPolicy``; what is
still failing comes back as ``retry`` receipts for the outbox. An item the
target's mapping cannot express is rejected alone; the rest of the batch goes on.

Two-way jobs send each item's base version (the target's version as of the
last delivery), so the target refuses to overwrite an edit made on its side;
``settle_conflicts`` then tells real conflicts from both sides holding the
same content.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base import Receipt, Sink
from syncd.errors import MappingError, Transient
from syncd.mapping import Mapping
from syncd.model import content_hash
from syncd.pipeline.map import Mapped
from syncd.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class Loaded:
    """One item and what the target said about it."""

    mapped: Mapped
    receipt: Receipt


def load(sink: Sink, mapping: Mapping, items: Sequence[Mapped], policy: RetryPolicy, *,
         sleep: Callable[[float], Any], base_versions: dict[str, int] | None = None,
         **log_fields: Any) -> list[Loaded]:
    """Write ``items`` to ``sink``; one ``Loaded`` per item, in order.

    ``base_versions`` (two-way jobs): item code → the target's version this job
    last saw, sent in the sink's ``base_version_field``.
    """
    out: list[Loaded] = []
    sendable: list[Mapped] = []
    records = []
    base_field = getattr(sink, "base_version_field", None) if base_versions is not None else None
    for m in items:
        try:
            record = mapping.from_item(m.item)
            if base_field and m.item.item_code in base_versions:  # type: ignore[operator]
                record[base_field] = base_versions[m.item.item_code]  # type: ignore[index]
            records.append(record)
            sendable.append(m)
        except MappingError as exc:
            out.append(Loaded(m, Receipt(m.item.item_code, "rejected", error=exc.reason,
                                         details=[{"field": exc.field or "", "message": exc.reason}])))
    if not records:
        return out
    try:
        receipts = policy.call(lambda: sink.write(records), sleep=sleep,
                               what=f"write {sink.name}", target=sink.name, **log_fields)
    except Exception as exc:
        if not isinstance(exc, Transient):
            raise
        receipts = [Receipt(m.item.item_code, "retry", error=str(exc), retry_after=exc.retry_after)
                    for m in sendable]
    return out + [Loaded(m, r) for m, r in zip(sendable, receipts, strict=True)]


def settle_conflicts(sink: Any, mapping: Mapping, loaded: Sequence[Loaded]) -> list[Loaded]:
    """A refused base version is no conflict when the target already holds our content
    (the change came from there through the reverse job, or both sides made the same
    edit): count it delivered at the target's current version. Otherwise it stays a
    conflict for an operator.
    """
    out = []
    for entry in loaded:
        r = entry.receipt
        if r.outcome == "conflict":
            if _holds(sink, mapping, r.key, entry.mapped.hash):
                entry = Loaded(entry.mapped, Receipt(r.key, "delivered", version=r.version))
        out.append(entry)
    return out


def _holds(sink: Any, mapping: Mapping, code: str, wanted: str) -> bool:
    """Whether the target's current item has content hash ``wanted`` (unreadable: no)."""
    current = sink.get(code)
    if current is None:
        return False
    try:
        return content_hash(mapping.to_item(current)) == wanted
    except MappingError:
        return False
