"""DDL of the two legacy systems syncd ships mappings for (demo, tests, benchmarks).

They differ from the canonical model the way real systems do:

* ``hall_db`` — the service hall's window/approval system: pinyin-initial
  column names (SXBM 事项编码, SXMC 事项名称 …), its own codes ('XK' for
  行政许可, '是'/'否' flags, unit and level as text), local naive timestamps,
  materials and fees in child tables keyed by SXBM.
* ``portal_db`` — the portal website: English snake_case columns, national
  codes, materials and fees in child tables, an ``updated`` cursor column.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Engine

from syncd.errors import ConnectorError
from syncd.model import ServiceItem


def hall_tables(md: MetaData) -> list[Table]:
    """窗口审批系统: SP_SXXX (事项信息), SP_SXCL (申请材料), SP_SXSF (收费)."""
    main = Table(
        "SP_SXXX", md,
        Column("SXBM", String(40), primary_key=True),
        Column("JBBM", String(20)), Column("SXMC", String(400)), Column("SXLX", String(4)),
        Column("SSZT", String(200)), Column("ZTBM", String(20)), Column("QHDM", String(12)),
        Column("XSCJ", String(20)), Column("FWDX", String(200)), Column("BJLX", String(10)),
        Column("FDSX", Integer), Column("FDSXDW", String(10)), Column("FDSXSM", Text),
        Column("CNSX", Integer), Column("CNSXDW", String(10)), Column("CNSXSM", Text),
        Column("DCCS", Integer), Column("DCYY", Text), Column("BLXS", String(100)),
        Column("WBDZ", String(500)), Column("WBSD", String(10)), Column("SFSF", String(4)),
        Column("SLTJ", Text), Column("BLLC", Text), Column("BLDD", String(500)),
        Column("BLSJ", String(500)), Column("ZXDH", String(200)), Column("JDTS", String(200)),
        Column("SDYJ", Text), Column("ZT", String(10)), Column("BBH", Integer),
        Column("GXSJ", DateTime, index=True),
    )
    materials = Table(
        "SP_SXCL", md,
        Column("ID", Integer, primary_key=True, autoincrement=True),
        Column("SXBM", String(40), index=True, nullable=False), Column("XH", Integer),
        Column("CLMC", String(400), nullable=False), Column("CLLX", String(20)),
        Column("CLXS", String(20)), Column("FS", Integer), Column("SFBX", String(10)),
        Column("LY", String(20)), Column("YJ", Text),
    )
    fees = Table(
        "SP_SXSF", md,
        Column("ID", Integer, primary_key=True, autoincrement=True),
        Column("SXBM", String(40), index=True, nullable=False),
        Column("SFMC", String(400), nullable=False), Column("SFBZ", Text), Column("SFYJ", Text),
    )
    return [main, materials, fees]


def portal_tables(md: MetaData) -> list[Table]:
    """门户网站: portal_guide, portal_material, portal_fee."""
    main = Table(
        "portal_guide", md,
        Column("item_code", String(40), primary_key=True),
        Column("catalog_code", String(20)), Column("title", String(400)),
        Column("item_type", String(4)), Column("dept", String(200)),
        Column("dept_code", String(20)), Column("region", String(12)),
        Column("level", String(2)), Column("targets", String(100)),
        Column("handle_type", String(2)),
        Column("legal_days", Integer), Column("legal_unit", String(2)), Column("legal_note", Text),
        Column("promise_days", Integer), Column("promise_unit", String(2)),
        Column("promise_note", Text),
        Column("visits", Integer), Column("visit_reason", Text), Column("modes", String(20)),
        Column("online_url", String(500)), Column("online_depth", String(2)),
        Column("fee", Integer), Column("conditions", Text), Column("flow", Text),
        Column("address", String(500)), Column("hours", String(500)),
        Column("phone", String(200)), Column("complaint_phone", String(200)),
        Column("basis", Text), Column("state", String(2)), Column("version", Integer),
        Column("updated", DateTime(timezone=True), index=True),
    )
    materials = Table(
        "portal_material", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("item_code", String(40), index=True, nullable=False), Column("seq", Integer),
        Column("name", String(400), nullable=False), Column("kind", String(2)),
        Column("form", String(2)), Column("copies", Integer), Column("necessity", String(2)),
        Column("source", String(4)), Column("basis", Text),
    )
    fees = Table(
        "portal_fee", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("item_code", String(40), index=True, nullable=False),
        Column("name", String(400), nullable=False), Column("standard", Text),
        Column("basis", Text),
    )
    return [main, materials, fees]


SCHEMAS = {"hall_db": hall_tables, "portal_db": portal_tables}


def create_legacy_tables(engine: Engine, schema: str, *, drop: bool = False) -> list[Table]:
    """Create (optionally re-create) one legacy schema's tables in ``engine``."""
    md = MetaData()
    tables = SCHEMAS[schema](md)
    if drop:
        md.drop_all(engine)
    md.create_all(engine)
    return tables


def seed_legacy(url: str, schema: str, items: Iterable[ServiceItem], *, create: bool = True,
                batch: int = 500) -> int:
    """Write canonical ``items`` into a legacy schema through its shipped mapping.

    The demo, the tests and the benchmarks fill their department databases with
    this, so the rows are exactly what the legacy system would hold. Creates the
    tables first when asked; raises if any row is refused.
    """
    from connectors.sql import SqlChannel
    from syncd.codes import MAPPINGS_DIR
    from syncd.mapping import load_mapping
    from syncd.sqlutil import make_engine

    engine = make_engine(url)
    if create:
        create_legacy_tables(engine, schema)
    channel = SqlChannel(schema, engine, load_mapping(MAPPINGS_DIR / f"{schema}.yaml"))
    written, buf = 0, []
    try:
        for item in items:
            buf.append(channel.mapping.from_item(item))
            if len(buf) >= batch:
                written += _write_all(channel, buf)
                buf = []
        written += _write_all(channel, buf)
    finally:
        channel.close()
    return written


def _write_all(channel: Any, records: list[dict[str, Any]]) -> int:
    refused = [r for r in channel.write(records) if r.outcome != "delivered"]
    if refused:
        first = refused[0]
        raise ConnectorError(f"{len(refused)} rows refused while seeding; first: {first.key}: "
                             f"{first.error}", channel=channel.name)
    return len(records)
