"""Compare: keep the items whose content hash differs from what the target last got."""

from __future__ import annotations

from collections.abc import Sequence

from syncd.pipeline.map import Mapped
from syncd.state.store import StateStore


def compare(store: StateStore, job: str, target: str, items: Sequence[Mapped], *,
            force: bool = False) -> list[Mapped]:
    """The items ``target`` needs; all of them when ``force`` (a full refresh or manual resync).

    Duplicates within a page (the same item read twice in a lag window) are
    collapsed to the last one.
    """
    latest = list({m.item.item_code: m for m in items}.values())
    if force:
        return latest
    delivered = store.delivered_hashes(job, target, [m.item.item_code for m in latest])
    return [m for m in latest if delivered.get(m.item.item_code) != m.hash]
