"""The connector interface: every channel kind is a small class behind these.

A connector moves *raw records* (plain dicts in the channel's own field names,
children as lists under their own key); the mapping turns them into canonical
items. Connectors never touch syncd's state tables: paging state, hashes,
checkpoints, retries and the outbox belong to the engine.

    Source.read(cursor, page_size)  -> Iterator[Page]       changes after a checkpoint
    Source.scan(page_size, keys)    -> Iterator[Page]       everything (or some keys), key order
    Sink.write(records)             -> list[Receipt]        one receipt per record
    both:  close()

Errors leave a connector only as ``syncd.errors`` types.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

RawRecord = dict[str, Any]


class SharedRow(dict):  # type: ignore[type-arg]
    """A child row a connector hands out as one object to every record that has a row
    with these values (the same 身份证 or 营业执照 material recurs on item after item).

    A mapping reads such a row once and then knows it by identity; building a dict
    and reading it again for each of hundreds of thousands of equal rows costs more
    than fetching them. Being shared, it refuses to be changed.

    ``digest``: what its values digest to, once a reader has computed it (the
    reconcile cache, :func:`syncd.seen.raw_digest`): kept with the row, not in a
    memory of its own that would keep rows alive after their connector let them go."""

    __slots__ = ("digest",)

    def _refuse(self, *_args: Any, **_kwargs: Any) -> Any:
        raise TypeError("a SharedRow is shared by many records and cannot be changed")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        return SharedRow, (dict(self),)  # pickled and copied whole, not key by key


Outcome = Literal["delivered", "unchanged", "retry", "rejected", "conflict"]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of raw records and the cursor to resume *after* it.

    ``cursor`` is opaque to the engine; it is stored as the checkpoint once
    every record of the page has a recorded outcome.
    """

    records: list[RawRecord]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What happened to one written record.

    ``outcome``: delivered (written), unchanged (target already had it),
    retry (transient failure, worth another go), rejected (the target refused
    the content: a dead letter), conflict (the target holds a newer version).
    """

    key: str
    outcome: Outcome
    version: int | None = None
    error: str | None = None
    details: list[dict[str, str]] = field(default_factory=list)
    retry_after: float | None = None


@runtime_checkable
class Source(Protocol):
    """A channel items are read from."""

    name: str

    def read(self, cursor: str | None, page_size: int) -> Iterator[Page]:
        """Yield pages of records changed after ``cursor`` (None = from the beginning).

        Each page carries the cursor to resume after it. A channel that cannot
        tell what changed yields a full scan whose pages carry no cursor.
        """
        ...

    def scan(self, page_size: int, *, keys: Sequence[str] | None = None) -> Iterator[Page]:
        """Yield every record (or just ``keys``) in key order, so vanished rows
        can be found by a streaming comparison with what was delivered."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class Sink(Protocol):
    """A channel items are written to."""

    name: str

    def write(self, records: Sequence[RawRecord]) -> list[Receipt]:
        """Upsert ``records`` by key; one receipt per record, same order.

        A record the channel refuses never fails the others. Raises
        ``TransferError`` only when the batch as a whole could not be sent
        (``TransientTransferError`` when worth retrying).
        """
        ...

    def cancel(self, code: str, reason: str) -> bool:
        """Withdraw one item as a status update (取消), never a delete; idempotent.

        Returns False when the channel has no such item.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...
