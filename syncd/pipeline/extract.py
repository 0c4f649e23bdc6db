"""Extract: pages of raw records from the source, after the job's checkpoint."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from connectors.base import Page, Source


def extract(source: Source, *, mode: str, checkpoint: str | None, page_size: int,
            keys: Sequence[str] | None = None) -> Iterator[Page]:
    """Pages to process: changes since ``checkpoint`` (incremental), a full scan, or some keys.

    A full scan is in key order (vanished rows are found against it); only
    incremental pages carry a cursor to checkpoint.
    """
    if keys:
        return source.scan(page_size, keys=keys)
    if mode == "full":
        return source.scan(page_size)
    return source.read(checkpoint, page_size)
