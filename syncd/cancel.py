"""Cancelling items in a job's targets: what an operator does about vanished items.

A full run reports items that were delivered but are gone from the source; it
never removes them downstream on its own. Once someone has confirmed an item
is really withdrawn, ``syncd cancel JOB CODE…`` sets it to 取消 in every target
(a status update, never a delete) and settles the state: the item leaves the
vanished list and loses its delivered hash, so it is sent again should it ever
come back to the source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from connectors.registry import open_channel
from syncd.config import Config
from syncd.mapping import load_mapping
from syncd.state.store import StateStore

log = structlog.get_logger("syncd.cancel")


def cancel_items(config: Config, open_store: Callable[[], StateStore], job_name: str,
                 codes: Sequence[str], reason: str) -> list[tuple[str, str, bool]]:
    """Cancel ``codes`` in each target of the job: (target, code, found) per pair."""
    job = config.job(job_name)
    results: list[tuple[str, str, bool]] = []
    for target in job.targets:
        channel = open_channel(config.channels[target], load_mapping(
            config.channels[target].mapping), policy=config.retry)
        try:
            for code in codes:
                found = channel.cancel(code, reason)
                log.info("cancelled" if found else "cancel_not_found", job=job.name,
                         target=target, item_code=code, reason=reason)
                results.append((target, code, found))
        finally:
            channel.close()
    store = open_store()
    try:
        store.settle_cancelled(job.name, [c for c in codes
                                          if any(f for _, code, f in results if code == c)])
    finally:
        store.close()
    return results
