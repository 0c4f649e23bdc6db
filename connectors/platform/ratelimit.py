"""Client-side rate limit shared by every job that talks to the same platform app key.

A token bucket: the platform allows N requests/s per app key, whatever number
of jobs and threads use it, so the bucket lives in a process-wide registry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Token bucket: ``rate`` tokens per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.rate, self.capacity = rate, burst if burst is not None else max(1.0, rate)
        self.clock, self.sleep = clock, sleep
        self.tokens, self.stamp = self.capacity, clock()
        self.lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is free; returns the seconds waited."""
        if self.rate <= 0:
            return 0.0
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait:
            self.sleep(wait)
        return wait


_shared: dict[tuple[str, str], RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(base_url: str, app_key: str, rate: float) -> RateLimiter:
    """The one limiter of (platform, app key) in this process."""
    with _shared_lock:
        key = (base_url.rstrip("/"), app_key)
        if key not in _shared:
            _shared[key] = RateLimiter(rate)
        return _shared[key]
