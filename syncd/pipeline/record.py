"""Record: turn a target's receipts into state (delivered hashes, outbox, dead letters, conflicts)."""

from __future__ import annotations

from collections.abc import Sequence

from syncd.model import to_data
from syncd.pipeline.load import Loaded
from syncd.state.store import Delivered, Failed, PageOutcome


def outcome_of(target: str, loaded: Sequence[Loaded]) -> PageOutcome:
    """The page's outcome for one target, ready for ``StateStore.record_page``."""
    out = PageOutcome(target)
    for entry in loaded:
        item, r = entry.mapped.item, entry.receipt
        if r.outcome in ("delivered", "unchanged"):
            out.delivered.append(Delivered(item.item_code, entry.mapped.hash, r.version))
        elif r.outcome == "conflict":
            out.conflicts.append((item.item_code, r.error or "target holds a newer version"))
        else:
            out.failed.append(Failed(item.item_code, entry.mapped.hash, to_data(item),
                                     r.error or r.outcome,
                                     "pending" if r.outcome == "retry" else "dead",
                                     r.details, r.retry_after))
    return out
