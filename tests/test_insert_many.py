"""``insert_many``: bulk writes on the driver's executemany write what SQLAlchemy's own
``conn.execute`` writes, type processing included, on every database (``upsert_values``
too, from tuples); ``insert_rows``
(PostgreSQL's COPY where it reads values as parameters are read) too; and
``fetch_dicts`` reads back what SQLAlchemy's own rows hold."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from conftest import DB_KINDS

from syncd.sqlutil import (
    IN_CHUNK,
    delete_in,
    fetch_dicts,
    insert_many,
    insert_rows,
    make_engine,
    stream_rows,
    upsert,
    upsert_values,
)


def _table(md: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(name, md, sa.Column("code", sa.String(40), primary_key=True),
                    sa.Column("title", sa.Text), sa.Column("n", sa.Integer),
                    sa.Column("flag", sa.Boolean), sa.Column("at", sa.DateTime),
                    sa.Column("at_tz", sa.DateTime(timezone=True)))


ROWS = [
    {"code": "A1", "title": "行政许可", "n": 3, "flag": True,
     "at": datetime(2026, 5, 1, 8, 30), "at_tz": datetime(2026, 5, 1, 8, 30, tzinfo=UTC)},
    {"code": "A2", "title": None, "n": None, "flag": False,
     "at": datetime(2026, 5, 1, 8, 30, 0, 123456), "at_tz": None},
]


def _children(md: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("code", sa.String(40), nullable=False), sa.Column("name", sa.Text),
                    sa.Column("n", sa.Integer), sa.Column("flag", sa.Boolean),
                    sa.Column("amount", sa.Numeric(10, 2)))


CHILD_ROWS = [
    {"code": "A1", "name": "身份证\t复印件 \\N 反斜杠\n第二行", "n": 2, "flag": True,
     "amount": Decimal("12.50")},
    {"code": "A2", "name": None, "n": None, "flag": None, "amount": None},
    {"code": "A3", "name": "", "n": 0, "flag": False, "amount": 3},
]


def _inserts(engine: sa.Engine) -> list[str]:
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_a: seen.append(statement))
    return seen


@pytest.mark.parametrize("kind", DB_KINDS)
def test_insert_rows_writes_what_sqlalchemy_writes(fresh_db, kind):
    engine = make_engine(fresh_db(kind))
    md = sa.MetaData()
    ours, theirs, timed = _children(md, "ours"), _children(md, "theirs"), _table(md, "timed")
    md.create_all(engine)
    statements = _inserts(engine)
    with engine.begin() as conn:
        insert_rows(conn, ours, CHILD_ROWS)
        copied = not any("ours" in s for s in statements)
        insert_rows(conn, timed, ROWS)  # datetimes: never by COPY
        conn.execute(theirs.insert(), CHILD_ROWS)
    with engine.connect() as conn:
        got = conn.execute(sa.select(ours).order_by(ours.c.id)).all()
        want = conn.execute(sa.select(theirs).order_by(theirs.c.id)).all()
        at = conn.execute(sa.select(timed.c.at_tz).order_by(timed.c.code)).scalars().all()
    engine.dispose()
    assert got == want and len(got) == 3
    assert got[0].name == CHILD_ROWS[0]["name"] and got[0].amount == Decimal("12.50")
    assert copied == (kind == "postgres"), "PostgreSQL takes plain rows by COPY, the rest not"
    assert any("timed" in s for s in statements)
    assert at[0] == datetime(2026, 5, 1, 8, 30, tzinfo=UTC).replace(
        tzinfo=None if kind != "postgres" else at[0].tzinfo)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_value_the_database_refuses_raises_sqlalchemys_error(fresh_db, kind):
    engine = make_engine(fresh_db(kind))
    md = sa.MetaData()
    table = _children(md, "t")
    md.create_all(engine)
    with pytest.raises(sa.exc.StatementError), engine.begin() as conn:
        insert_rows(conn, table, [dict(CHILD_ROWS[0], code="x" * 41)])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
    engine.dispose()


def _written_both_ways(engine: sa.Engine, rows: list[dict]) -> tuple[sa.Table, sa.Table]:
    """Tables ``ours`` (rows by ``insert_many``) and ``theirs`` (by SQLAlchemy)."""
    md = sa.MetaData()
    ours, theirs = _table(md, "ours"), _table(md, "theirs")
    md.create_all(engine)
    with engine.begin() as conn:
        insert_many(conn, ours.insert(), rows)
        conn.execute(theirs.insert(), rows)
    return ours, theirs


@pytest.mark.parametrize("kind", DB_KINDS)
def test_insert_many_writes_what_sqlalchemy_writes(fresh_db, kind):
    engine = make_engine(fresh_db(kind))
    ours, theirs = _written_both_ways(engine, ROWS)
    with engine.begin() as conn:
        upsert(conn, ours, [dict(ROWS[0], title="改后")], ["code"])
        conn.execute(sa.update(theirs).where(theirs.c.code == "A1").values(title="改后"))
    with engine.connect() as conn:
        got = [tuple(r) for r in conn.execute(sa.select(ours).order_by(ours.c.code))]
        want = [tuple(r) for r in conn.execute(sa.select(theirs).order_by(theirs.c.code))]
        # the stored text itself (SQLite keeps datetimes as text): the same
        raw_ours = conn.exec_driver_sql("select * from ours order by code").fetchall()
        raw_theirs = conn.exec_driver_sql("select * from theirs order by code").fetchall()
    engine.dispose()
    assert got == want and raw_ours == raw_theirs
    assert got[0][1] == "改后" and got[0][3] is True and got[1][3] is False
    # MySQL's DATETIME keeps no fraction of a second: both paths lose it alike
    assert got[1][4].replace(microsecond=0) == datetime(2026, 5, 1, 8, 30)


@pytest.mark.parametrize("kind", DB_KINDS)
@pytest.mark.parametrize("typed", [False, True], ids=["text", "typed"])
def test_upsert_values_writes_what_upsert_writes(fresh_db, kind, typed):
    """Rows given as tuples (in an order of columns that is not the table's) insert and
    then update in place exactly as the same rows given as dicts to ``upsert``: text
    columns alone (which SQLite's and MySQL's drivers take as they are) and with typed
    ones (bind processors: they take upsert's way)."""
    engine = make_engine(fresh_db(kind))
    md = sa.MetaData()
    ours, theirs = _table(md, "ours"), _table(md, "theirs")
    md.create_all(engine)
    columns = ["title", "code"] + (["at", "n", "flag", "at_tz"] if typed else [])
    first = [{c: r[c] for c in columns} for r in ROWS]
    second = [dict(first[1], title="改后"), {c: ROWS[0][c] for c in columns} | {"code": "A3"}]
    with engine.begin() as conn:
        for rows in (first, second):
            upsert_values(conn, ours, columns, [tuple(r[c] for c in columns) for r in rows],
                          ["code"])
            upsert(conn, theirs, rows, ["code"])
    with engine.connect() as conn:
        got = [tuple(r) for r in conn.execute(sa.select(ours).order_by(ours.c.code))]
        want = [tuple(r) for r in conn.execute(sa.select(theirs).order_by(theirs.c.code))]
    engine.dispose()
    assert got == want and [r[:2] for r in got] == [("A1", "行政许可"), ("A2", "改后"),
                                                     ("A3", "行政许可")]


@pytest.mark.parametrize("kind", DB_KINDS)
def test_a_value_object_shared_by_rows_is_written_to_each_of_them(fresh_db, kind):
    """A batch of state rows shares one timestamp object, processed once for all of
    them; a row with another object there (equal or not) gets its own."""
    shared, later = datetime(2026, 5, 1, 8, 30), datetime(2026, 6, 2, 9, 45)
    rows = [{"code": code, "title": None, "n": None, "flag": None, "at": at, "at_tz": None}
            for code, at in (("A1", shared), ("A2", shared), ("A3", later),
                             ("A4", datetime(2026, 5, 1, 8, 30)), ("A5", shared))]
    engine = make_engine(fresh_db(kind))
    ours, _theirs = _written_both_ways(engine, rows)
    with engine.connect() as conn:
        raw_ours = conn.exec_driver_sql("select code, at from ours order by code").fetchall()
        raw_theirs = conn.exec_driver_sql("select code, at from theirs order by code").fetchall()
        got = [r.at for r in conn.execute(sa.select(ours.c.at).order_by(ours.c.code))]
    engine.dispose()
    assert raw_ours == raw_theirs
    assert got == [shared, shared, later, shared, shared]


def test_rows_of_different_shapes_get_sqlalchemys_own_error(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    md = sa.MetaData()
    table = _table(md, "t")
    md.create_all(engine)
    with pytest.raises(sa.exc.StatementError, match="bind parameter"), engine.begin() as conn:
        insert_many(conn, table.insert(), [{"code": "A", "n": 1}, {"code": "B"}])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
    engine.dispose()


def test_a_value_its_type_refuses_fails_as_sqlalchemy_fails_it(tmp_path):
    """The SQL channel isolates a refused record by catching StatementError: a value the
    column's type cannot convert must raise that, as conn.execute would."""
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    md = sa.MetaData()
    table = _table(md, "t")
    md.create_all(engine)
    with pytest.raises(sa.exc.StatementError), engine.begin() as conn:
        insert_many(conn, table.insert(), [{"code": "A", "at": datetime(2026, 1, 1)},
                                           {"code": "B", "at": "not a datetime"}])
    engine.dispose()


@pytest.mark.parametrize("kind", DB_KINDS)
def test_fetch_dicts_reads_what_sqlalchemys_rows_hold(fresh_db, kind):
    """Types with a result processor on some dialect (SQLite keeps datetimes and dates
    as text, booleans as 0/1, numerics as floats) come back as SQLAlchemy gives them."""
    engine = make_engine(fresh_db(kind))
    md = sa.MetaData()
    table = _table(md, "t")
    extra = sa.Table("u", md, sa.Column("code", sa.String(40), primary_key=True),
                     sa.Column("day", sa.Date), sa.Column("amount", sa.Numeric(10, 2)))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), ROWS)
        conn.execute(extra.insert(), [{"code": "A1", "day": date(2026, 5, 1),
                                       "amount": Decimal("12.50")},
                                      {"code": "A2", "day": None, "amount": None}])
    with engine.connect() as conn:
        for query in (sa.select(table).order_by(table.c.code),
                      sa.select(table.c.at, table.c.code).where(table.c.code == "A2"),
                      sa.select(extra).order_by(extra.c.code)):
            want = [dict(r._mapping) for r in conn.execute(query)]
            got = fetch_dicts(conn, query)
            assert got == want
            assert [[type(v) for v in r.values()] for r in got] == \
                [[type(v) for v in r.values()] for r in want]
    engine.dispose()
    assert want[0]["amount"] == Decimal("12.50")


def test_stream_rows_reads_in_batches_what_sqlalchemy_reads(fresh_db):
    """PostgreSQL's server-side cursor (whole-table reads): the same rows as SQLAlchemy's
    own, in batches, with range values bound as parameters even where a column's name
    holds a space, CJK characters or a percent sign."""
    engine = make_engine(fresh_db("postgres"))
    md = sa.MetaData()
    table = sa.Table("t", md, sa.Column("事项 编码", sa.String(40), primary_key=True),
                     sa.Column("a%b", sa.Text), sa.Column("at", sa.DateTime),
                     sa.Column("amount", sa.Numeric(10, 2)))
    md.create_all(engine)
    key = table.c["事项 编码"]
    with engine.begin() as conn:
        conn.execute(table.insert(), [
            {"事项 编码": f"K{i}%'", "a%b": f"文本 {i}", "at": datetime(2026, 5, i + 1),
             "amount": Decimal(i) / 4} for i in range(7)])
    query = sa.select(table).where(key > "K1%'", table.c["a%b"] != "文本 5").order_by(key)
    with engine.connect() as conn:
        want = [tuple(r) for r in conn.execute(query)]  # and in the same transaction:
        batches = list(stream_rows(conn, query, 2))
    engine.dispose()
    assert [len(b) for b in batches] == [2, 2]
    assert [row for batch in batches for row in batch] == want and len(want) == 4


@pytest.mark.parametrize("kind", DB_KINDS)
def test_delete_in_deletes_the_rows_of_exactly_those_keys(fresh_db, kind):
    """More keys than one statement takes (three statements on SQLite and MySQL, their
    keys passed to the driver as they are; one array on PostgreSQL), some absent."""
    engine = make_engine(fresh_db(kind))
    md = sa.MetaData()
    table = _children(md, "kids")
    md.create_all(engine)
    codes = [f"C{i:04d}" for i in range(1100)]
    with engine.begin() as conn:
        insert_rows(conn, table, [{"code": c, "name": "材料", "n": i % 3, "flag": None,
                                   "amount": None} for i, c in enumerate(codes + codes[:100])])
    gone = codes[50:1100] + ["absent", "C9999"]
    statements = _inserts(engine)
    with engine.begin() as conn:
        delete_in(conn, table, table.c.code, gone)
        delete_in(conn, table, table.c.code, [])
    with engine.connect() as conn:
        left = conn.execute(sa.select(table.c.code).order_by(table.c.id)).scalars().all()
    engine.dispose()
    assert left == codes[:50] + codes[:50]
    deletes = [s for s in statements if s.lstrip().upper().startswith("DELETE")]
    assert len(deletes) == (1 if kind == "postgres" else -(-len(gone) // IN_CHUNK))
    # compiled once per number of keys (500 and 52), kept with the table
    assert len(table.info.get("syncd.delete_in", {})) == (0 if kind == "postgres" else 2)
