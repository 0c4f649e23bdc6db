"""Progress on long runs: one line on stderr every few seconds while a run goes on."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def cli_progress(every: float = 2.0, stream=sys.stderr) -> Callable[[str, dict[str, int]], None]:  # noqa: B008
    """A progress callback printing counts at most every ``every`` seconds."""
    last = [time.monotonic()]
    start = last[0]

    def report(job: str, counts: dict[str, int]) -> None:
        now = time.monotonic()
        if now - last[0] < every:
            return
        last[0] = now
        rate = counts["read"] / max(now - start, 1e-9)
        stream.write(f"[{job}] read={counts['read']} delivered={counts['delivered']} "
                     f"unchanged={counts['unchanged']} quarantined={counts['quarantined']} "
                     f"({rate:,.0f} rows/s)\n")
        stream.flush()

    return report
