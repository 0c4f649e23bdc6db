"""Test helpers: seed a legacy channel with canonical items, read one back as hashes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from connectors.sql import SqlChannel
from syncd.codes import MAPPINGS_DIR
from syncd.legacy_schemas import create_legacy_tables
from syncd.mapping import Mapping, load_mapping
from syncd.model import ServiceItem, content_hash, validate
from syncd.sqlutil import make_engine


def mapping_for(schema: str) -> Mapping:
    return load_mapping(MAPPINGS_DIR / f"{schema}.yaml")


def open_sql(url: str, schema: str) -> SqlChannel:
    return SqlChannel(schema, make_engine(url), mapping_for(schema))


def seed(url: str, schema: str, items: Iterable[ServiceItem], *, create: bool = True,
         batch: int = 500) -> int:
    """Create the legacy tables (if asked) and write ``items`` through the mapping."""
    if create:
        engine = make_engine(url)
        create_legacy_tables(engine, schema)
        engine.dispose()
    channel = open_sql(url, schema)
    n, buf = 0, []
    try:
        for item in items:
            buf.append(channel.mapping.from_item(item))
            if len(buf) >= batch:
                n += _write(channel, buf)
                buf = []
        n += _write(channel, buf)
    finally:
        channel.close()
    return n


def _write(channel: SqlChannel, records: list[dict]) -> int:
    receipts = channel.write(records)
    bad = [r for r in receipts if r.outcome != "delivered"]
    assert not bad, bad[:3]
    return len(receipts)


def hashes(url: str, schema: str) -> dict[str, str]:
    """Every item of a channel, mapped back to canonical, as {item_code: content_hash}."""
    channel = open_sql(url, schema)
    out: dict[str, str] = {}
    try:
        for page in channel.scan(1000):
            for record in page.records:
                item = channel.mapping.to_item(record)
                validate(item)
                out[item.item_code] = content_hash(item)
    finally:
        channel.close()
    return out


def write_config(path: Path, *, state_db: str, channels: dict[str, tuple[str, str, str]],
                 jobs: dict[str, dict], extra: str = "") -> Path:
    """A config file: channels {name: (kind, url, mapping)}, jobs {name: settings}."""
    lines = [f'state_db = "{state_db}"', f'mappings_dir = "{MAPPINGS_DIR}"', extra]
    for name, (kind, url, mapping) in channels.items():
        lines += [f"[channels.{name}]", f'kind = "{kind}"', f'url = "{url}"',
                  f'mapping = "{mapping}"']
    for name, settings in jobs.items():
        lines.append(f"[jobs.{name}]")
        for key, value in settings.items():
            rendered = (f'"{value}"' if isinstance(value, str) else
                        "[" + ", ".join(f'"{v}"' for v in value) + "]" if isinstance(value, list)
                        else str(value).lower() if isinstance(value, bool) else str(value))
            lines.append(f"{key} = {rendered}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
