"""Bad records are quarantined with field and reason while the rest land."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from conftest import DB_KINDS
from helpers import hashes, seed, write_config
from syncd.codes import MAPPINGS_DIR
from syncd.config import load_config
from syncd.engine import RunRequest, SyncEngine
from syncd.legacy_schemas import create_legacy_tables
from syncd.sample import generate
from syncd.sqlutil import make_engine
from syncd.state.store import open_store


def _bad_rows() -> list[tuple[str, dict, str, str]]:
    """(code suffix, column overrides, expected field, words the reason must contain)."""
    return [
        ("unknown_code", {"SXLX": "ZZ"}, "item_type", "ZZ"),
        ("missing_name", {"SXMC": "无"}, "item_name", "必填项"),
        ("overlong", {"SXMC": "长" * 201}, "item_name", "超过上限"),
        ("nul_byte", {"BLDD": "政务服务中心\x00二楼"}, "address", "NUL"),
        ("bad_limit", {"FDSX": -5}, "legal_time_limit", "负数"),
    ]


def _job(tmp_path: Path, src_url: str, dst_url: str, mapping: str = "hall_db.yaml", **extra):
    cfg = write_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                       channels={"src": ("sql", src_url, mapping),
                                 "dst": ("sql", dst_url, "portal_db.yaml")},
                       jobs={"job": {"source": "src", "targets": ["dst"], **extra}})
    config = load_config(cfg, os.environ)
    return SyncEngine(config, open_store(config.state_db))


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("kind", DB_KINDS)
def test_bad_records_are_quarantined_and_the_rest_land(fresh_db, tmp_path, kind, workers):
    src_url, dst_url = fresh_db(kind), fresh_db("sqlite")
    items = list(generate(300, seed=5))
    seed(src_url, "hall_db", items)
    create_legacy_tables(make_engine(dst_url), "portal_db")
    src = make_engine(src_url)
    table = sa.Table("SP_SXXX", sa.MetaData(), autoload_with=src)
    with src.begin() as conn:
        row = dict(conn.execute(sa.select(table).limit(1)).mappings().first())
    # PostgreSQL text cannot hold NUL at all, so that source never hands one over
    bad = [b for b in _bad_rows() if kind != "postgres" or b[0] != "nul_byte"]
    expected = {}
    with src.begin() as conn:
        for i, (_name, overrides, field, words) in enumerate(bad):
            code = row["SXBM"][:-3] + f"9{i:02d}"
            conn.execute(table.insert().values({**row, "SXBM": code, "JBBM": code[19:],
                                                **overrides}))
            expected[code] = (field, words)
    src.dispose()

    sync = _job(tmp_path, src_url, dst_url, page_size=50, workers=workers)
    with capture_logs() as logs:
        result = sync.run(RunRequest("job"))
    assert [e["workers"] for e in logs if e["event"] == "sync_workers_started"] == (
        [3] if workers > 1 else [])
    assert result.outcome == "partial"
    assert result.counts["delivered"] == 300
    assert result.counts["quarantined"] == len(bad)
    found = {q["item_code"]: q for q in sync.store.quarantine(result.run_id)}
    assert set(found) == set(expected)
    for code, (field, words) in expected.items():
        assert found[code]["field"] == field
        assert words in found[code]["reason"], found[code]
    assert set(hashes(dst_url, "portal_db")) == {i.item_code for i in items}


def test_undecodable_gbk_bytes_are_quarantined(fresh_db, tmp_path):
    """A legacy column holding GBK bytes: good ones decode, broken ones are quarantined."""
    src_url, dst_url = fresh_db("sqlite"), fresh_db("sqlite")
    items = list(generate(20, seed=9))
    seed(src_url, "hall_db", items)
    create_legacy_tables(make_engine(dst_url), "portal_db")
    gbk_mapping = tmp_path / "hall_gbk.yaml"
    gbk_mapping.write_text((MAPPINGS_DIR / "hall_db.yaml").read_text(encoding="utf-8")
                           .replace("channel: hall_db", "channel: hall_gbk\nencoding: gbk"),
                           encoding="utf-8")
    src = make_engine(src_url)
    good, broken = items[0].item_code, items[1].item_code
    with src.begin() as conn:  # as a latin1 column of a GBK system hands them over
        conn.execute(sa.text('update "SP_SXXX" set "SXMC" = :v where "SXBM" = :k'),
                     {"v": "食品经营许可证核发".encode("gbk"), "k": good})
        conn.execute(sa.text('update "SP_SXXX" set "SXMC" = :v where "SXBM" = :k'),
                     {"v": "食品".encode("gbk") + b"\xff\xfe", "k": broken})
    src.dispose()
    sync = _job(tmp_path, src_url, dst_url, mapping=str(gbk_mapping))
    result = sync.run(RunRequest("job"))
    quarantined = sync.store.quarantine(result.run_id)
    assert [(q["item_code"], q["field"]) for q in quarantined] == [(broken, "item_name")]
    assert "undecodable gbk bytes" in quarantined[0]["reason"]
    assert result.counts["delivered"] == 19


def test_error_threshold_stops_the_run_with_a_clear_message(fresh_db, tmp_path):
    src_url, dst_url = fresh_db("sqlite"), fresh_db("sqlite")
    seed(src_url, "hall_db", generate(400, seed=2))
    create_legacy_tables(make_engine(dst_url), "portal_db")
    src = make_engine(src_url)
    with src.begin() as conn:
        conn.execute(sa.text('update "SP_SXXX" set "SXLX" = \'??\' where rowid % 4 = 0'))
    src.dispose()
    sync = _job(tmp_path, src_url, dst_url, max_error_ratio=0.1, page_size=100)
    result = sync.run(RunRequest("job"))
    assert result.outcome == "aborted"
    assert "max_error_ratio" in result.error and "quarantined" in result.error
    assert result.counts["read"] < 400  # it stopped early
