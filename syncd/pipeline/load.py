"""Load: canonical items → the target's records → one batch write, with in-process retries.

Transient batch failures are retried under the job's ``RetryPolicy``; what is
still failing comes back as ``retry`` receipts for the outbox. An item the
target's mapping cannot express is rejected alone; the rest of the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base import Receipt, Sink
from syncd.errors import MappingError, Transient
from syncd.mapping import Mapping
from syncd.pipeline.map import Mapped
from syncd.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class Loaded:
    """One item and what the target said about it."""

    mapped: Mapped
    receipt: Receipt


def load(sink: Sink, mapping: Mapping, items: Sequence[Mapped], policy: RetryPolicy, *,
         sleep: Callable[[float], Any], **log_fields: Any) -> list[Loaded]:
    """Write ``items`` to ``sink``; one ``Loaded`` per item, in order."""
    out: list[Loaded] = []
    sendable: list[Mapped] = []
    records = []
    for m in items:
        try:
            records.append(mapping.from_item(m.item))
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
