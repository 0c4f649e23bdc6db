"""The SQL channel on SQLite, PostgreSQL and MariaDB: keyset reads, idempotent
upserts, child rows replaced, a refused record isolated, client encodings."""

from __future__ import annotations

import dataclasses
import os
import pickle
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa
import structlog
from conftest import DB_KINDS
from helpers import mapping_for, open_sql, seed, write_config
from structlog.testing import capture_logs

from connectors.base import SharedRow
from connectors.sql import SqlChannel
from connectors.sql.channel import SharedRows, _typed, read_committed_logs
from syncd.config import load_config
from syncd.engine import RunRequest, SyncEngine, warn_without_statistics
from syncd.errors import TransferError
from syncd.legacy_schemas import create_legacy_tables
from syncd.model import Material, content_hash
from syncd.sample import generate
from syncd.sqlutil import make_engine
from syncd.state.store import open_store


@pytest.fixture(params=DB_KINDS)
def kind(request):
    return request.param


def _all(channel: SqlChannel, pages) -> list:
    return [channel.mapping.to_item(r) for p in pages for r in p.records]


def test_scan_returns_what_was_written_in_key_order(fresh_db, kind):
    url = fresh_db(kind)
    items = list(generate(250, seed=1))
    seed(url, "hall_db", items)
    ch = open_sql(url, "hall_db")
    got = _all(ch, ch.scan(60))
    assert [i.item_code for i in got] == sorted(i.item_code for i in items)
    assert sorted(got, key=lambda i: i.item_code) == sorted(items, key=lambda i: i.item_code)
    assert ch.engine.pool.checkedout() == 0  # no connection leaked
    ch.close()


def test_cursor_pages_resume_after_the_checkpoint_even_on_equal_timestamps(fresh_db, kind):
    url = fresh_db(kind)
    same = datetime(2026, 5, 1, tzinfo=UTC)
    items = [dataclasses.replace(i, updated_at=same) for i in generate(120, seed=2)]
    seed(url, "portal_db", items)
    ch = open_sql(url, "portal_db")
    pages = list(ch.read(None, 50))
    assert [len(p.records) for p in pages] == [50, 50, 20]
    resumed = list(ch.read(pages[0].cursor, 50))
    codes = [r["item_code"] for p in resumed for r in p.records]
    assert codes == [r["item_code"] for p in pages[1:] for r in p.records]
    assert list(ch.read(pages[-1].cursor, 50)) == []
    ch.close()


def test_a_first_read_is_a_key_ordered_snapshot_then_change_order(fresh_db, kind):
    """No cursor yet: every row in key order (resumable from any page), then, in change
    order, what changed since the snapshot began: a row changed during the snapshot is
    read again before the read ends, and nothing else is."""
    url = fresh_db(kind)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    items = [dataclasses.replace(i, updated_at=start + timedelta(minutes=n % 7))
             for n, i in enumerate(generate(120, seed=4))]
    seed(url, "hall_db", items)
    ch = open_sql(url, "hall_db")
    reading = ch.read(None, 50)
    first = next(reading)
    changed = dataclasses.replace(ch.mapping.to_item(first.records[0]), address="改过的地址",
                                  updated_at=start + timedelta(days=1))
    seed(url, "hall_db", [changed], create=False)  # changed while the snapshot runs
    pages = [first, *reading]
    assert [len(p.records) for p in pages] == [50, 50, 20, 1]
    got = [ch.mapping.to_item(r) for p in pages[:3] for r in p.records]
    assert [i.item_code for i in got] == sorted(i.item_code for i in items)
    assert sorted(got, key=lambda i: i.item_code) == sorted(items, key=lambda i: i.item_code)
    again = ch.mapping.to_item(pages[3].records[0])
    assert (again.item_code, again.address) == (changed.item_code, "改过的地址")
    resumed = [r for p in ch.read(pages[0].cursor, 50) for r in p.records]
    assert resumed == [r for p in pages[1:] for r in p.records]
    assert list(ch.read(pages[-1].cursor, 50)) == []
    ch.close()


def test_a_table_without_cursor_values_is_read_whole_every_time(fresh_db, kind):
    """No row has a change time: there is nowhere to resume from, so no page carries a
    cursor (a checkpoint would skip rows next time) and every read is a full one."""
    url = fresh_db(kind)
    items = [dataclasses.replace(i, updated_at=None) for i in generate(120, seed=5)]
    seed(url, "hall_db", items)
    ch = open_sql(url, "hall_db")
    pages = list(ch.read(None, 50))
    assert [(len(p.records), p.cursor) for p in pages] == [(50, None), (50, None), (20, None)]
    assert [r["SXBM"] for p in pages for r in p.records] == sorted(i.item_code for i in items)
    ch.close()


def test_rewriting_is_idempotent_and_replaces_child_rows(fresh_db, kind):
    url = fresh_db(kind)
    items = list(generate(40, seed=3))
    seed(url, "hall_db", items)
    first = items[0]
    fewer = dataclasses.replace(first, materials=first.materials[:1])
    seed(url, "hall_db", [*items[1:], fewer], create=False)
    seed(url, "hall_db", [*items[1:], fewer], create=False)
    ch = open_sql(url, "hall_db")
    got = {i.item_code: i for i in _all(ch, ch.scan(100))}
    assert len(got) == 40
    assert got[first.item_code].materials == fewer.materials
    with ch.engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(ch.children[0][1])).scalar()
    assert n == sum(len(got[c].materials) for c in got)
    ch.close()


def test_equal_child_rows_are_read_as_one_shared_row_that_refuses_changes(fresh_db, kind):
    """The recurring materials of a table of items are one ``SharedRow`` each: equal rows
    of different items are the same object, without the parent key (it is a different
    one on every item), and the object cannot be changed by one of the records."""
    url = fresh_db(kind)
    items = list(generate(200, seed=5))
    seed(url, "hall_db", items)
    ch = open_sql(url, "hall_db")
    rows = [row for p in ch.scan(70) for r in p.records for row in r["materials"]]
    assert len(rows) == sum(len(i.materials) for i in items)
    assert all(type(row) is SharedRow and "SXBM" not in row for row in rows)
    by_values: dict = {}
    for row in rows:
        by_values.setdefault(tuple(row.items()), set()).add(id(row))
    assert all(len(ids) == 1 for ids in by_values.values())
    assert len(by_values) < len(rows)  # some did recur
    with pytest.raises(TypeError, match="shared"):
        rows[0]["CLMC"] = "改名"
    assert pickle.loads(pickle.dumps(rows[0])) == rows[0]
    ch.close()


def test_shared_rows_tell_equal_values_of_other_types_apart():
    shared = SharedRows(["FS", "CLMC"], 2)
    got = list(shared.rows([(1, "身份证", "P1"), (1.0, "身份证", "P2"), (True, "身份证", "P3"),
                            (1, "身份证", "P4"), ([1], "身份证", "P5")]))
    assert [parent for parent, _row in got] == ["P1", "P2", "P3", "P4", "P5"]
    rows = [row for _parent, row in got]
    assert rows[0] is rows[3]
    assert len({id(r) for r in rows[:3]}) == 3
    assert [type(v) for v in (rows[0]["FS"], rows[1]["FS"], rows[2]["FS"])] == [int, float, bool]
    assert type(rows[4]) is dict and rows[4] == {"FS": [1], "CLMC": "身份证"}  # unhashable
    mapped = SharedRows(["SXBM", "CLMC"], 0)  # a field maps the parent key: it stays
    (_p1, a), (_p2, b) = mapped.rows([("P1", "身份证"), ("P2", "身份证")])
    assert a == {"SXBM": "P1", "CLMC": "身份证"} and a is not b


def test_rows_of_typed_columns_are_told_apart_by_their_values_alone():
    typed = SharedRows(["FS", "CLMC"], 2, typed=True)
    got = [row for _parent, row in typed.rows([(1, "身份证", "P1"), (2, "身份证", "P2"),
                                                (1, "身份证", "P3"), (None, "身份证", "P4")])]
    assert got[0] is got[2] and got[0] == {"FS": 1, "CLMC": "身份证"}
    assert len({id(got[0]), id(got[1]), id(got[3])}) == 3


def test_a_server_databases_scalar_columns_are_typed_sqlite_and_json_ones_are_not(fresh_db,
                                                                                    kind):
    url = fresh_db(kind)
    seed(url, "hall_db", list(generate(5, seed=6)))
    ch = open_sql(url, "hall_db")
    assert ch._shared["materials"].typed is (kind != "sqlite")
    ch.close()
    engine = make_engine(url)
    table = sa.Table("rows_with_json", sa.MetaData(), sa.Column("n", sa.Integer),
                     sa.Column("doc", sa.JSON))
    table.create(engine)
    reflected = sa.Table("rows_with_json", sa.MetaData(), autoload_with=engine)
    assert _typed(engine.dialect.name, [reflected.c.n]) is (kind != "sqlite")
    # MariaDB keeps JSON as LONGTEXT, which its driver gives as text
    assert _typed(engine.dialect.name, [reflected.c.n, reflected.c.doc]) is (kind == "mysql")
    engine.dispose()


def test_a_refused_record_is_isolated_and_the_rest_of_the_batch_lands(fresh_db, kind):
    url = fresh_db(kind)
    items = list(generate(30, seed=4))
    create_legacy_tables(make_engine(url), "hall_db")
    ch = open_sql(url, "hall_db")
    records = [ch.mapping.from_item(i) for i in items]
    records[17]["materials"][0]["CLMC"] = None  # NOT NULL in the child table
    receipts = ch.write(records)
    assert [r.outcome for r in receipts].count("delivered") == 29
    assert receipts[17].outcome == "rejected" and receipts[17].error
    assert ch.count() == 29
    ch.close()


def test_gbk_legacy_mysql_through_a_gbk_client_encoding(fresh_db):
    """A GBK database read and written with charset=gbk; a character GBK lacks is refused alone."""
    url = fresh_db("mysql")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER DATABASE CHARACTER SET gbk COLLATE gbk_chinese_ci"))
    create_legacy_tables(engine, "hall_db")
    engine.dispose()
    ch = SqlChannel("hall_gbk", make_engine(url, client_encoding="gbk"), mapping_for("hall_db"))
    with ch.engine.connect() as conn:
        assert conn.execute(sa.text("select @@character_set_client")).scalar() == "gbk"
        assert conn.execute(sa.text(
            "select character_set_name from information_schema.columns "
            "where table_schema = database() and table_name = 'SP_SXXX' and column_name = 'SXMC'"
        )).scalar() == "gbk"
    items = list(generate(20, seed=5))
    rare = dataclasses.replace(items[3], item_name="𠀀字号登记",  # outside GBK
                               materials=(Material("申请书"),))
    receipts = ch.write([ch.mapping.from_item(i) for i in [*items[:3], rare, *items[4:]]])
    assert [r.outcome for r in receipts].count("delivered") == 19
    assert receipts[3].outcome == "rejected"
    got = {i.item_code: i for i in _all(ch, ch.scan(100))}
    assert got[items[0].item_code] == items[0]
    assert items[3].item_code not in got
    ch.close()


def test_child_rows_find_their_items_and_rows_without_an_item_are_left_out(fresh_db, kind):
    """Child rows whose item does not exist (before the first key, between two keys of
    a page, at the end of a page and at the start of the next, after the last key) are
    left out, and every item gets exactly its own rows, in a whole read and in a range.
    PostgreSQL reads each child table as one stream merged with the pages, sending no
    child query per page; a read given up halfway gives its connection back."""
    url = fresh_db(kind)
    items = sorted(generate(60, seed=3), key=lambda i: i.item_code)
    codes = [i.item_code for i in items]
    seed(url, "hall_db", items)
    engine = make_engine(url)
    materials = sa.Table("SP_SXCL", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        row = dict(conn.execute(sa.select(materials).limit(1)).mappings().one())
        del row["ID"]
        no_item = ["0" * 31, codes[3] + "A", codes[9] + "A", codes[10] + "A",
                   codes[-1] + "A", "Z" * 31]
        conn.execute(materials.insert(), [{**row, "SXBM": code, "CLMC": "无主材料"}
                                          for code in no_item for _ in range(2)])
    engine.dispose()
    ch = open_sql(url, "hall_db")
    statements: list[str] = []
    sa.event.listen(ch.engine, "before_cursor_execute",
                    lambda _conn, _cur, statement, *_a: statements.append(statement))
    assert _all(ch, ch.scan(10)) == items  # pages of 10: codes[9] ends one, codes[10] starts one
    assert _all(ch, ch.scan_range(7, codes[4], codes[40])) == items[5:41]
    # 60 items in pages of 10: the last full page is known to be the last
    snapshot = list(ch.read(None, 10))
    assert len(snapshot) == 6 and "snapshot" not in orjson.loads(snapshot[-1].cursor)
    if kind == "postgres":
        assert not [s for s in statements if "SP_SXCL" in s]
    pages = ch.scan(10)
    next(pages)
    pages.close()
    assert ch.engine.pool.checkedout() == 0
    ch.close()


def test_a_range_of_keys_holding_quotes_percent_signs_and_backslashes(fresh_db, kind):
    """Range bounds go to the database as parameters (a streamed read's too): the range
    is the one the database itself selects, and each row keeps its own child rows."""
    url = fresh_db(kind)
    seed(url, "hall_db", generate(1, seed=1))
    keys = ["a%b", "a%%b", "a'c", "a\\d", "a_e", "b"]
    engine = make_engine(url)
    md = sa.MetaData()
    main = sa.Table("SP_SXXX", md, autoload_with=engine)
    materials = sa.Table("SP_SXCL", md, autoload_with=engine)
    with engine.begin() as conn:
        row = dict(conn.execute(sa.select(main)).mappings().one())
        material = dict(conn.execute(sa.select(materials).limit(1)).mappings().one())
        del material["ID"]
        conn.execute(materials.delete())
        conn.execute(main.delete())
        conn.execute(main.insert(), [{**row, "SXBM": key} for key in keys])
        conn.execute(materials.insert(), [{**material, "SXBM": key, "CLMC": f"材料 {key}"}
                                          for key in keys])
        want = list(conn.execute(sa.select(main.c.SXBM).where(
            main.c.SXBM > "a%b", main.c.SXBM <= "b").order_by(main.c.SXBM)).scalars())
    engine.dispose()
    ch = open_sql(url, "hall_db")
    read = [r for p in ch.scan_range(2, "a%b", "b") for r in p.records]
    assert [r["SXBM"] for r in read] == want and "a%b" not in want and len(want) >= 4
    assert all([m["CLMC"] for m in r["materials"]] == [f"材料 {r['SXBM']}"] for r in read)
    ch.close()


def test_split_ranges_cover_every_row_once_in_the_databases_own_order(fresh_db, kind):
    """Keys whose order depends on the collation (MySQL's is case-insensitive): the
    ranges follow the database's order, so together they read every row exactly once."""
    url = fresh_db(kind)
    seed(url, "hall_db", generate(1, seed=1))
    engine = make_engine(url)
    table = sa.Table("SP_SXXX", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        row = dict(conn.execute(sa.select(table)).mappings().one())
        conn.execute(table.delete())
        conn.execute(table.insert(), [{**row, "SXBM": f"{prefix}{i:03d}"}
                                      for prefix in ("a", "B", "c") for i in range(100)])
    engine.dispose()
    ch = open_sql(url, "hall_db")
    bounds = ch.split(3, page=50)
    assert len(bounds) == 2
    ranges = zip([None, *bounds], [*bounds, None], strict=True)
    read = [[r["SXBM"] for p in ch.scan_range(40, after, upto) for r in p.records]
            for after, upto in ranges]
    assert all(len(keys) == 100 for keys in read)  # three ranges of about the same size
    assert sorted(k for keys in read for k in keys) == sorted(
        f"{prefix}{i:03d}" for prefix in ("a", "B", "c") for i in range(100))
    # ranges of whole pages: 300 rows in up to 3 ranges of 80-row pages are 160 + 140
    assert len(ch.split(3, page=80)) == 1
    assert ch.split(3, page=300) == []  # it fits in one page
    ch.close()


def test_mysql_writes_read_committed_only_where_its_binary_log_allows():
    assert read_committed_logs(0, "STATEMENT")  # no binary log
    assert read_committed_logs(1, "ROW") and read_committed_logs(1, "MIXED")
    assert not read_committed_logs(1, "STATEMENT")  # error 1665 otherwise


def test_postgresql_tables_that_will_not_get_statistics_are_named_and_warned_of(
        fresh_db, tmp_path):
    url = fresh_db("postgres")
    seed(url, "hall_db", list(generate(20, seed=3)))
    engine = make_engine(url)
    with engine.begin() as conn:
        if conn.dialect.server_version_info < (14,):
            pytest.skip("PostgreSQL 13 and older do not tell a never-analyzed table")
        for table in ("SP_SXXX", "SP_SXCL", "SP_SXSF"):  # whatever the server's setting
            conn.exec_driver_sql(f'ALTER TABLE "{table}" SET (autovacuum_enabled = false)')
    ch = open_sql(url, "hall_db")
    assert sorted(ch.tables_without_statistics()) == ["SP_SXCL", "SP_SXSF", "SP_SXXX"]
    with engine.begin() as conn:
        conn.exec_driver_sql('ANALYZE "SP_SXCL"')
    assert sorted(ch.tables_without_statistics()) == ["SP_SXSF", "SP_SXXX"]
    ch.close()

    dst = fresh_db("sqlite")
    create_legacy_tables(make_engine(dst), "portal_db")
    cfg = write_config(tmp_path / "job.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                       channels={"src": ("sql", url, "hall_db.yaml"),
                                 "dst": ("sql", dst, "portal_db.yaml")},
                       jobs={"job": {"source": "src", "targets": ["dst"], "workers": 1}})
    config = load_config(cfg, os.environ)
    with capture_logs() as logs:
        assert SyncEngine(config, open_store(config.state_db)).run(
            RunRequest("job")).outcome == "ok"
    warned = [e for e in logs if e["event"] == "tables_without_statistics"]
    assert [(e["channel"], sorted(e["tables"])) for e in warned] == [
        ("src", ["SP_SXSF", "SP_SXXX"])]
    engine.dispose()


def test_other_databases_have_no_tables_without_statistics(fresh_db):
    for kind in ("sqlite", "mysql"):
        url = fresh_db(kind)
        seed(url, "hall_db", list(generate(5, seed=3)))
        ch = open_sql(url, "hall_db")
        assert ch.tables_without_statistics() == []
        ch.close()


def test_a_server_that_cannot_tell_its_statistics_is_logged_as_not_checked():
    class LookAlike:  # a PostgreSQL look-alike without pg_class.reloptions
        def tables_without_statistics(self):
            raise TransferError("read failed: UndefinedColumn: reloptions", channel="src")

    class Unanalyzed:
        def tables_without_statistics(self):
            return ["SP_SXCL"]

    log = structlog.get_logger("test")
    with capture_logs() as logs:
        warn_without_statistics([("src", LookAlike()), ("dst", Unanalyzed()),
                                 ("platform", object())], log)
    assert [(e["event"], e["channel"]) for e in logs] == [
        ("statistics_not_checked", "src"), ("tables_without_statistics", "dst")]


def test_child_rows_with_equal_order_values_are_all_read_and_hash_alike(fresh_db, kind):
    """A streamed child table the mapping orders by XH is read without the primary key's
    tie-break: rows with equal XH may come in any order, and nothing compared changes."""
    url = fresh_db(kind)
    items = [i for i in generate(40, seed=8) if len(i.materials) >= 3]
    seed(url, "hall_db", items)
    engine = make_engine(url)
    materials = sa.Table("SP_SXCL", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(sa.update(materials).values(XH=1))
    engine.dispose()
    ch = open_sql(url, "hall_db")
    got = {i.item_code: i for i in _all(ch, ch.scan(7))}
    ch.close()
    assert sorted(got) == sorted(i.item_code for i in items)
    for item in items:
        tied = dataclasses.replace(item, materials=tuple(
            dataclasses.replace(m, order=1) for m in item.materials))
        read = got[item.item_code]
        assert sorted(read.materials, key=repr) == sorted(tied.materials, key=repr)
        assert content_hash(read) == content_hash(tied)


@pytest.mark.parametrize("kind", DB_KINDS)
def test_float_columns_are_those_that_can_hold_nan_or_infinity(fresh_db, kind):
    """What the reconcile cache looks at for NaN and ±inf: a float column (none on
    MySQL, which stores neither); on SQLite, any column but a text one."""
    url = fresh_db(kind)
    seed(url, "portal_db", [])
    engine = sa.create_engine(url)
    if kind != "sqlite":
        alter = ("alter table portal_guide alter column legal_days type double precision"
                 if kind == "postgres" else "alter table portal_guide modify legal_days double")
        with engine.begin() as conn:
            conn.execute(sa.text(alter))
    engine.dispose()
    channel = open_sql(url, "portal_db")
    try:
        floats = channel.float_columns
    finally:
        channel.close()
    if kind == "postgres":
        assert floats == {None: ("legal_days",)}
    elif kind == "mysql":
        assert floats == {}
    else:
        # the integer and time columns read; a child table read as text only has none
        assert floats == {None: ("legal_days", "promise_days", "visits", "fee", "version",
                                 "updated"),
                          "materials": ("copies", "seq")}
