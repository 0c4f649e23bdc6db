"""Fault switches of the platform simulator and the dice that apply them.

Every fault a real gateway produces is here so that syncd's retries, outbox
and idempotency can be exercised on demand: transient errors in their four
shapes, 429 bursts, slowness, dropped connections, and the nasty one — a
write that is applied but whose answer is lost.

The verdict for a request is drawn *before* it is processed, so a faulted
request changes nothing, except ``drop_after_apply`` which by definition
applies the write first.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Fault = Literal["none", "429", "503", "502", "5030", "5000", "drop", "drop_after_apply"]

#: The shapes a transient failure takes; ``error_ratio`` picks one at random.
TRANSIENT: tuple[Fault, ...] = ("503", "502", "5030", "5000")


@dataclass
class Faults:
    """Runtime-mutable fault switches (ratios are fractions of signed item requests).

    Attributes:
        error_ratio: answered with a transient failure (503 + Retry-After,
            502 empty, 200 with code 5030, 200 with code 5000).
        burst_429: the next N requests get HTTP 429, code 4290 and Retry-After.
        retry_after: the Retry-After seconds sent with 429 and 503 (HTTP wants an integer).
        slow_ratio / slow_seconds: that fraction waits that long before answering.
        drop_ratio: the connection is closed with no answer and nothing applied.
        fault_after_apply_ratio: writes are applied, then the connection is
            closed: what ``Idempotency-Key`` protects against.
        reject_items: TASK_CODEs always rejected with 2001 and a field error.
        reject_text: items whose TASK_NAME contains this text are rejected with
            2001 on TASK_NAME: a provincial rule syncd does not know, which an
            operator fixes at the source (empty = off).
        seed: seeds the dice, for repeatable runs (None = unpredictable).
    """

    error_ratio: float = 0.0
    burst_429: int = 0
    retry_after: int = 1
    slow_ratio: float = 0.0
    slow_seconds: float = 0.0
    drop_ratio: float = 0.0
    fault_after_apply_ratio: float = 0.0
    reject_items: set[str] = field(default_factory=set)
    reject_text: str = ""
    seed: int | None = None

    def update(self, changes: dict[str, Any]) -> None:
        """Apply switch changes given as JSON values, all or none.

        Raises:
            ValueError: naming the first unknown switch or bad value.
        """
        staged = dataclasses.replace(self, reject_items=set(self.reject_items))
        for name, value in changes.items():
            setattr(staged, name, _checked(name, value))
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(staged, f.name))

    def to_json(self) -> dict[str, Any]:
        """The switches as JSON-ready data (``reject_items`` sorted)."""
        data = dataclasses.asdict(self)
        data["reject_items"] = sorted(self.reject_items)
        return data


_RATIOS = ("error_ratio", "slow_ratio", "drop_ratio", "fault_after_apply_ratio")
_COUNTS = ("burst_429", "retry_after")


def _checked(name: str, value: Any) -> Any:
    """``value`` converted for switch ``name``, or ValueError saying what is wrong."""
    if name in _RATIOS:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number between 0 and 1, not {value!r}")
        return float(value)
    if name in _COUNTS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        return value
    if name == "slow_seconds":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"slow_seconds must be a non-negative number, not {value!r}")
        return float(value)
    if name == "reject_items":
        if not isinstance(value, list | set | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError("reject_items must be a list of TASK_CODE strings")
        return set(value)
    if name == "reject_text":
        if not isinstance(value, str):
            raise ValueError(f"reject_text must be a string, not {value!r}")
        return value
    if name == "seed":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"seed must be an integer or null, not {value!r}")
        return value
    raise ValueError(f"unknown fault switch {name!r} (known: "
                     f"{', '.join(f.name for f in dataclasses.fields(Faults))})")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happens to one request: a fault (or none) and a delay before answering."""

    fault: Fault
    delay: float = 0.0


class Dice:
    """Draws verdicts from :class:`Faults`; reseeds itself when the seed switch changes.

    Not thread-safe by itself: the simulator calls it under its lock, which
    also makes ``burst_429`` count down exactly once per request.
    """

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.served: Counter[str] = Counter()  # faults injected so far, by kind (demo summary)
        self.reseed()

    def reseed(self) -> None:
        """Restart the dice from the seed switch: the same seed replays the same faults."""
        self._seed = self.faults.seed
        self._rng = random.Random(self._seed)

    def roll(self, *, write: bool) -> Verdict:
        """The verdict for the next signed item request (``write``: it would change data)."""
        verdict = self._draw(write)
        if verdict.fault != "none":
            self.served[verdict.fault] += 1
        return verdict

    def _draw(self, write: bool) -> Verdict:
        f = self.faults
        if f.seed != self._seed:
            self.reseed()
        rng = self._rng
        delay = f.slow_seconds if f.slow_ratio and rng.random() < f.slow_ratio else 0.0
        if f.burst_429 > 0:
            f.burst_429 -= 1
            return Verdict("429", delay)
        if f.drop_ratio and rng.random() < f.drop_ratio:
            return Verdict("drop", delay)
        if f.error_ratio and rng.random() < f.error_ratio:
            return Verdict(rng.choice(TRANSIENT), delay)
        if write and f.fault_after_apply_ratio and rng.random() < f.fault_after_apply_ratio:
            return Verdict("drop_after_apply", delay)
        return Verdict("none", delay)
