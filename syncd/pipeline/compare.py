"""Compare: keep the items whose content hash differs from what the target last got."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from syncd.pipeline.map import Mapped
from syncd.state.store import StateStore


@dataclass(frozen=True, slots=True)
class Changes:
    """The items a target needs, and which of them it was delivered before: only
    those have a delivered hash to unconfirm before they are sent again."""

    items: list[Mapped]
    delivered_before: list[str]


def compare(store: StateStore, job: str, target: str, items: Sequence[Mapped], *,
            force: bool = False) -> Changes:
    """The items ``target`` needs (all of them when ``force``: a full refresh or manual
    resync), and which of those it holds a delivered hash for.

    Duplicates within a page (the same item read twice in a lag window) are
    collapsed to the last one.
    """
    latest = list({m.item.item_code: m for m in items}.values())
    delivered = store.delivered_hashes(job, target, [m.item.item_code for m in latest])
    changed = latest if force else [m for m in latest if delivered.get(m.item.item_code) != m.hash]
    # an item whose hash is unconfirmed already (""), or that has none, is sent again
    # after a crash anyway
    return Changes(changed, [m.item.item_code for m in changed if delivered.get(m.item.item_code)])
