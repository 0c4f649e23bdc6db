"""Map: raw records → validated canonical items with their content hash.

A record that cannot be mapped or validated is quarantined with its field and
reason; the page goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from connectors.base import RawRecord
from syncd.errors import MappingError
from syncd.mapping import Mapping
from syncd.model import ServiceItem, content_hash, validate
from syncd.state.store import Quarantined


@dataclass(frozen=True, slots=True)
class Mapped:
    """One canonical item ready to compare and load."""

    item: ServiceItem
    hash: str


@dataclass(frozen=True, slots=True)
class MapResult:
    items: list[Mapped] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)


def map_page(mapping: Mapping, records: Sequence[RawRecord]) -> MapResult:
    """Map and validate every record of a page."""
    result = MapResult()
    for record in records:
        try:
            item = mapping.to_item(record)
            validate(item)
        except MappingError as exc:
            result.quarantined.append(Quarantined(exc.item_code or _raw_key(mapping, record),
                                                  exc.field, exc.reason))
            continue
        result.items.append(Mapped(item, content_hash(item)))
    return result


def _raw_key(mapping: Mapping, record: RawRecord) -> str | None:
    value = record.get(mapping.key_column)
    if isinstance(value, bytes):
        return value.decode(mapping.encoding, errors="replace")
    return None if value is None else str(value)
