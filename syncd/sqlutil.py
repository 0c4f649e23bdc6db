"""Dialect-native upsert and engine creation, shared by the SQL connector and the state store."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    Numeric,
    Select,
    String,
    Table,
    any_,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError


def make_engine(url: str, *, client_encoding: str | None = None) -> Engine:
    """An engine for ``url`` with settings syncd relies on.

    ``client_encoding`` names the connection character set of a legacy
    database (e.g. GBK): MySQL gets ``charset=``, PostgreSQL ``client_encoding``.
    SQLite files use WAL and a busy timeout so a reader never blocks the writer.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    backend = parsed.get_backend_name()
    if backend == "mysql":
        query = {"charset": client_encoding or parsed.query.get("charset") or "utf8mb4"}
        parsed = parsed.update_query_dict(query)
    elif backend == "postgresql" and client_encoding:
        kwargs["connect_args"] = {"client_encoding": client_encoding}
    elif backend == "sqlite":
        kwargs.pop("pool_pre_ping")
        kwargs["connect_args"] = {"timeout": 30}
    engine = create_engine(parsed, **kwargs)
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def one_of(dialect: str, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN (values)`` as the dialect runs it fastest: PostgreSQL gets one array
    parameter (``= ANY(...)``), about three times faster to delete a page's child rows
    by than two thousand separate parameters."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


#: keys per ``DELETE … IN (…)`` statement: far below any SQLite build's limit on parameters
IN_CHUNK = 500


def delete_in(conn: Connection, table: Table, column: Any, values: Sequence[Any]) -> None:
    """``DELETE FROM table WHERE column IN (values)``, as the dialect runs it fastest.

    PostgreSQL gets one array parameter (:func:`one_of`). Elsewhere the statement is
    compiled once per number of keys, up to :data:`IN_CHUNK` keys a statement, and the
    keys go to the driver as they are: SQLAlchemy would render a bind parameter of
    its own for each key on every run, which for a page of 2,000 keys took three
    times as long as SQLite took to delete their rows. The compiled statements are
    kept in the table's ``info``, so they last as long as the table (a channel's
    reflection) and no longer. A key type with a bind processor takes SQLAlchemy's
    way."""
    if not values:
        return
    dialect = conn.dialect
    if dialect.name == "postgresql" or \
            column.type.dialect_impl(dialect).bind_processor(dialect) is not None:
        conn.execute(table.delete().where(one_of(dialect.name, column, values)))
        return
    compiled: dict[Any, tuple[str, tuple[str, ...]]] = table.info.setdefault(_DELETE_IN, {})
    for i in range(0, len(values), IN_CHUNK):
        chunk = tuple(values[i:i + IN_CHUNK])
        key = (dialect, column.key, len(chunk))
        if (found := compiled.get(key)) is None:
            found = compiled[key] = _delete_in_sql(dialect, table, column.key, len(chunk))
        sql, names = found
        conn.exec_driver_sql(sql, chunk if dialect.positional else dict(zip(names, chunk)))


_DELETE_IN = "syncd.delete_in"  # the key of the compiled statements in a table's info


def _delete_in_sql(dialect: Any, table: Table, column: str, n: int
                   ) -> tuple[str, tuple[str, ...]]:
    """(SQL text, parameter names in the keys' order) of a delete of ``n`` keys."""
    names = tuple(f"k{i}" for i in range(n))
    compiled = table.delete().where(table.c[column].in_([bindparam(k) for k in names])
                                    ).compile(dialect=dialect)
    if dialect.positional and tuple(compiled.positiontup or ()) != names:
        raise AssertionError(f"parameters out of the keys' order in {compiled}")
    return str(compiled), names


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]],
           keys: Sequence[str]) -> None:
    """Insert ``rows`` or update them in place by ``keys``, in one statement per batch.

    Uses the dialect's own form (ON CONFLICT / ON DUPLICATE KEY), so a retried
    write is idempotent.
    """
    if not rows:
        return
    stmt = _upsert_stmt(conn.dialect.name, table, list(rows[0].keys()), keys)
    if stmt is None:
        _portable_upsert(conn, table, rows, keys)
        return
    insert_many(conn, stmt, rows)


def upsert_values(conn: Connection, table: Table, columns: Sequence[str],
                  values: Sequence[tuple[Any, ...]], keys: Sequence[str]) -> None:
    """:func:`upsert` of rows given as tuples of ``columns``' values.

    Where the driver takes positional parameters and no column has a bind processor
    (SQLite's driver, for text columns: reconcile's digests), they go to its
    ``executemany`` as they are (or reordered to the statement's order): no dict is made
    for each row and taken apart again, a fifth of the cost of saving those digests.
    Anywhere else they take :func:`upsert`'s way."""
    if not values:
        return
    stmt = _upsert_stmt(conn.dialect.name, table, columns, keys)
    planned = _bind_plan(conn, stmt, columns) if stmt is not None else None
    if planned is not None:
        compiled, plan = planned
        if (compiled.positional and sorted(key for _name, key, _proc in plan) == sorted(columns)
                and all(proc is None for _name, _key, proc in plan)):
            order = [list(columns).index(key) for _name, key, _proc in plan]
            params: Any = values
            if order != sorted(order):  # the statement's order, in one C call a row
                getter = itemgetter(*order)
                params = [(getter(v),) for v in values] if len(order) == 1 else \
                    [getter(v) for v in values]
            conn.exec_driver_sql(str(compiled), list(params))
            return
    upsert(conn, table, [dict(zip(columns, row, strict=True)) for row in values], keys)


def _upsert_stmt(dialect: str, table: Table, columns: Sequence[str], keys: Sequence[str]
                 ) -> Any:
    """The dialect's native upsert of ``columns`` by ``keys``; None where it has none."""
    updates = [c for c in columns if c not in keys]
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(table)
        return (stmt.on_conflict_do_update(index_elements=list(keys),
                                           set_={c: stmt.excluded[c] for c in updates})
                if updates else stmt.on_conflict_do_nothing(index_elements=list(keys)))
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert
        stmt = insert(table)
        first = keys[0]
        return stmt.on_duplicate_key_update(
            {c: stmt.inserted[c] for c in updates} if updates else {first: stmt.inserted[first]})
    return None


def insert_many(conn: Connection, stmt: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Run an INSERT (or upsert) ``stmt`` once per row, in one driver ``executemany``.

    SQLAlchemy compiles the statement once and supplies each column's bind processor
    (a datetime to SQLite's text form, say); the rows then go to the driver as plain
    tuples, skipping SQLAlchemy's per-row parameter handling, which costs as much as
    the write itself. Rows whose keys differ from the first row's, or names the
    driver's paramstyle would have to escape, take the ordinary ``conn.execute`` path.
    """
    if not rows:
        return
    first = rows[0].keys()
    planned = _bind_plan(conn, stmt, list(first))
    if planned is None or any(map(first.__ne__, map(dict.keys, rows))):
        conn.execute(stmt, list(rows))
        return
    compiled, plan = planned
    if any(key not in rows[0] for _name, key, _proc in plan):
        conn.execute(stmt, list(rows))  # a bind the rows do not fill: SQLAlchemy explains it
        return
    try:
        if compiled.positional:
            params: list[Any] = _tuples(rows, [key for _name, key, _proc in plan],
                                        [proc for _name, _key, proc in plan])
        else:
            params = [{name: r[key] if proc is None else proc(r[key])
                       for name, key, proc in plan} for r in rows]
    except Exception:  # noqa: BLE001 - a value its type refuses: SQLAlchemy says which
        conn.execute(stmt, list(rows))  # raises StatementError, as the caller expects
        return
    conn.exec_driver_sql(str(compiled), params)


def _bind_plan(conn: Connection, stmt: Any, columns: Sequence[str]
               ) -> tuple[Any, list[tuple[str, str, Callable[[Any], Any] | None]]] | None:
    """``stmt`` compiled for an ``executemany`` of ``columns``, with its parameters in
    the statement's order as (parameter name, column, bind processor); None where the
    driver's paramstyle would have to escape a name (SQLAlchemy's own path does)."""
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(columns),
                            for_executemany=True)
    if compiled.escaped_bind_names:
        return None
    binds, dialect = compiled.binds, conn.dialect
    return compiled, [(name, binds[name].key,
                       binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                      for name in (compiled.positiontup or list(binds))]


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``table`` (a plain INSERT: no conflict is expected).

    PostgreSQL (psycopg) takes them by ``COPY``, about five times faster than one
    INSERT per row, when every value is one COPY reads exactly as a parameter: text
    into a text column, an integer into an integer column, and so on (a datetime is
    not: COPY drops the offset of one written to a column without a time zone).
    Any other rows, and other databases, go through :func:`insert_many`.
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg" \
            and _copyable(conn, table, rows):
        _copy(conn, table, rows)
    else:
        insert_many(conn, table.insert(), rows)


#: per column type, the Python values COPY's text form carries as a parameter would
_COPY_VALUES: tuple[tuple[type, frozenset[type]], ...] = (
    (Boolean, frozenset({bool, type(None)})),
    (Integer, frozenset({int, type(None)})),
    (Numeric, frozenset({int, Decimal, type(None)})),
    (String, frozenset({str, type(None)})),
)


def _copyable(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> bool:
    keys = rows[0].keys()
    if any(r.keys() != keys for r in rows):
        return False
    for name in keys:
        column = table.c.get(name)
        if column is None:
            return False
        allowed = next((values for kind, values in _COPY_VALUES
                        if isinstance(column.type, kind)), None)
        if allowed is None or not {type(r[name]) for r in rows} <= allowed:
            return False
        # a type that rewrites values on their way in is left to SQLAlchemy (Boolean's
        # only checks that the value is a bool, as the line above does)
        if not isinstance(column.type, Boolean) and column.type.dialect_impl(
                conn.dialect).bind_processor(conn.dialect) is not None:
            return False
    return True


def _copy(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """``COPY table (columns) FROM STDIN`` in the connection's transaction; a driver
    error is raised as SQLAlchemy's (``DataError`` …), as ``conn.execute`` would."""
    columns = list(rows[0])
    quote = conn.dialect.identifier_preparer
    sql = (f"COPY {quote.format_table(table)} ({', '.join(quote.quote(c) for c in columns)})"
           " FROM STDIN")
    values = itemgetter(*columns) if len(columns) > 1 else (lambda r: (r[columns[0]],))
    dbapi = conn.dialect.loaded_dbapi
    try:
        with conn.connection.driver_connection.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(values(row))
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi.Error, dialect=conn.dialect) from exc


def _tuples(rows: Sequence[dict[str, Any]], keys: list[str],
            procs: list[Callable[[Any], Any] | None]) -> list[tuple[Any, ...]]:
    """Each row's values in ``keys`` order, through their bind processors: ``itemgetter``
    takes them out in one C call, and only the columns that have a processor are touched
    again (most have none)."""
    getter = itemgetter(*keys)
    if len(keys) == 1:
        values = [(getter(r),) for r in rows]
    else:
        values = [getter(r) for r in rows]
    return _processed(values, [(i, proc) for i, proc in enumerate(procs) if proc is not None])


def _processed(rows: list[tuple[Any, ...]], touched: list[tuple[int, Callable[[Any], Any]]]
               ) -> list[tuple[Any, ...]]:
    """``rows`` with the value at each touched position passed through its processor
    (the rows themselves when no position is touched). A value that is the very object
    the row before had there is not processed again: a batch of state rows shares one
    timestamp, which SQLite's processor would format once per row."""
    if not touched:
        return rows
    out = []
    last = [(_NOTHING, None)] * len(touched)
    for row in rows:
        cells = list(row)
        for n, (i, proc) in enumerate(touched):
            value = cells[i]
            seen, done = last[n]
            if value is not seen:
                done = proc(value)
                last[n] = (value, done)
            cells[i] = done
        out.append(tuple(cells))
    return out


_NOTHING = object()  # no value before the first row


def fetch_dicts(conn: Connection, query: Select[Any]) -> list[dict[str, Any]]:
    """Every row of ``query`` as a dict keyed by column name (:func:`fetch_rows`)."""
    keys, rows = fetch_rows(conn, query)
    return [dict(zip(keys, row)) for row in rows]


def fetch_rows(conn: Connection, query: Select[Any], params: dict[str, Any] | None = None
               ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, every row of ``query`` (with ``params``) as a tuple), taken from
    the driver's cursor in one ``fetchall``.

    The read-side twin of :func:`insert_many`: only the columns whose type has a
    result processor (a datetime stored as text in SQLite, say) are touched again,
    through the processor SQLAlchemy would apply; SQLAlchemy's ``Row`` objects are
    skipped.
    """
    result = conn.execute(query, params)
    try:
        keys = list(result.keys())
        touched = _result_processors(conn, query, result.cursor.description)
        rows = result.cursor.fetchall()
    finally:
        result.close()
    return keys, _processed(rows, touched)


def stream_rows(conn: Connection, query: Select[Any], size: int
                ) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``query`` as :func:`fetch_rows` gives them, in batches of ``size``,
    from a PostgreSQL server-side cursor in ``conn``'s transaction, which must stay open
    while they are read; closing the iterator closes the cursor.

    The driver's own named cursor, as :func:`fetch_rows` takes the driver's rows: a
    streamed SQLAlchemy result would first take a row from that cursor into a buffer of
    its own. The query's values go as parameters, through their bind processors."""
    dialect = conn.dialect
    compiled = query.compile(dialect=dialect)
    sql = str(compiled)
    escaped = compiled.escaped_bind_names  # names the SQL text spells otherwise
    params = {escaped.get(name, name): value if (
                  proc := compiled.binds[name].type.dialect_impl(dialect).bind_processor(
                      dialect)) is None else proc(value)
              for name, value in compiled.params.items()}
    dbapi_error = dialect.loaded_dbapi.Error
    cursor = conn.connection.driver_connection.cursor(name=f"syncd_{next(_CURSOR_NAMES)}")
    try:
        cursor.itersize = size
        try:  # the driver's errors become SQLAlchemy's, as on any other read
            cursor.execute(sql, params)
            touched = _result_processors(conn, query, cursor.description)
            while batch := cursor.fetchmany(size):
                yield _processed(batch, touched)
        except dbapi_error as exc:
            raise DBAPIError.instance(sql, None, exc, dbapi_error, dialect=dialect) from exc
    finally:
        cursor.close()


_CURSOR_NAMES = itertools.count(1)


def _result_processors(conn: Connection, query: Select[Any], description: Any
                       ) -> list[tuple[int, Callable[[Any], Any]]]:
    """(position, processor) of each column of ``query`` whose type has a result
    processor for this driver."""
    dialect = conn.dialect
    return [(i, proc) for i, col in enumerate(query.selected_columns)
            if (proc := col.type.dialect_impl(dialect).result_processor(
                dialect, description[i][1])) is not None]


def _portable_upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]],
                     keys: Sequence[str]) -> None:
    """For dialects without a native upsert: delete by key, then insert, in the caller's
    transaction."""
    from sqlalchemy import and_, bindparam

    cond = and_(*(table.c[k] == bindparam(f"k_{k}") for k in keys))
    conn.execute(table.delete().where(cond), [{f"k_{k}": r[k] for k in keys} for r in rows])
    conn.execute(table.insert(), list(rows))
