"""Retry policy: a frozen value from config, turned into tenacity calls.

Only errors marked ``Transient`` are retried in process; a ``retry_after``
the channel was told (HTTP Retry-After) is honoured up to ``max_retry_after``.
What still fails goes to the durable outbox (see ``state/store.py``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay

from syncd.errors import is_transient

T = TypeVar("T")
log = structlog.get_logger("syncd.retry")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one transfer before handing it to the outbox.

    Attributes:
        attempts: tries in process, the first included.
        deadline: seconds after which no new try starts.
        initial/maximum: exponential backoff bounds (seconds), with full jitter.
        max_retry_after: cap on a server's Retry-After.
        outbox_attempts: durable attempts before an item becomes a dead letter.
    """

    attempts: int = 5
    deadline: float = 60.0
    initial: float = 0.2
    maximum: float = 10.0
    max_retry_after: float = 30.0
    outbox_attempts: int = 8

    def wait(self, state: RetryCallState) -> float:
        """Full-jitter exponential backoff, or the server's Retry-After when it said one."""
        exc = state.outcome.exception() if state.outcome else None
        told = getattr(exc, "retry_after", None)
        if told is not None:
            return min(float(told), self.max_retry_after)
        ceiling = min(self.maximum, self.initial * 2 ** (state.attempt_number - 1))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security

    def call(self, fn: Callable[[], T], *, sleep: Callable[[float], Any] = time.sleep,
             what: str = "transfer", **log_fields: Any) -> T:
        """Run ``fn`` with this policy; re-raises the last error when it gives up."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("retrying", what=what, attempt=state.attempt_number,
                        wait_s=round(state.upcoming_sleep, 3), error=str(exc), **log_fields)

        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.deadline),
            wait=self.wait, sleep=sleep, reraise=True, before_sleep=before_sleep)
        return retrying(fn)
