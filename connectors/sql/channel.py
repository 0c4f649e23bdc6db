"""SQL channel (SQLAlchemy 2 Core): a legacy item table and its child tables.

Reads by keyset pages (on the cursor column, or on the key for a full scan),
writes by the dialect's native upsert, child rows replaced per item in the
same transaction. Works with SQLite, PostgreSQL and MySQL/MariaDB, and any
other dialect by URL (portable upsert). SQLAlchemy errors end here.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Generator, Iterator, Sequence
from contextlib import ExitStack, closing
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    Interval,
    MetaData,
    Numeric,
    String,
    Table,
    Time,
    and_,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import NoSuchTableError, OperationalError, SQLAlchemyError, StatementError

from connectors.base import Page, RawRecord, Receipt, SharedRow
from syncd.errors import ConnectorError, TransferError, TransientTransferError
from syncd.mapping import ChildMap, Mapping
from syncd.model import STATUS_CANCELLED, child_memory
from syncd.sqlutil import (
    delete_in,
    fetch_dicts,
    fetch_rows,
    insert_rows,
    one_of,
    stream_rows,
    upsert,
)


class SqlChannel:
    """One channel stored in a relational database, both source and sink.

    Args:
        name: the channel name (for errors and logs).
        engine: an SQLAlchemy engine (tests pass their own; see ``syncd.sqlutil.make_engine``).
        mapping: the channel's compiled mapping (tables, key, cursor, columns).
        lag_seconds: on incremental reads, re-read this many seconds before the
            checkpoint (commit order and clocks are not trusted).
    """

    def __init__(self, name: str, engine: Engine, mapping: Mapping, *,
                 lag_seconds: float = 0.0) -> None:
        self.name, self.engine, self.mapping = name, engine, mapping
        self.lag = timedelta(seconds=lag_seconds)
        if not mapping.table:
            raise ConnectorError(f"mapping {mapping.file} has no 'table' section", channel=name)
        md = MetaData()
        self.table = self._reflect(md, mapping.table, mapping.columns
                                   + ([mapping.cursor] if mapping.cursor else []))
        self.key = self.table.c[mapping.key_column]
        self.cursor_col = self.table.c[mapping.cursor] if mapping.cursor else None
        self.children: list[tuple[ChildMap, Table]] = []
        # child rows are read as the mapping's columns only: a surrogate id that changes
        # whenever the rows are rewritten is not content. The parent key comes last, and
        # is left out of the row (``SharedRow``) unless a field maps it
        self._child_cols: dict[str, list[Any]] = {}
        self._shared: dict[str, SharedRows] = {}
        for child in mapping.children:
            if child.table:
                values = list(dict.fromkeys([f.column for f in child.fields if f.column]
                                            + ([child.order] if child.order else [])))
                parent_key = child.parent_key or ""
                cols = values if parent_key in values else [*values, parent_key]
                table = self._reflect(md, child.table, cols)
                self.children.append((child, table))
                self._child_cols[child.name] = [table.c[c] for c in cols]
                self._shared[child.name] = SharedRows(
                    values, cols.index(parent_key),
                    typed=_typed(engine.dialect.name, [table.c[c] for c in values]))
        self._main_names = frozenset(self.table.c.keys())
        #: read whole-table pages as streams (:meth:`_streamed_pages`): on PostgreSQL,
        #: where every child table's parent key sorts as the key does
        self._streams = bool(self.children) and engine.dialect.name == "postgresql" and all(
            _same_order(self.key, table.c[child.parent_key or ""])
            for child, table in self.children)
        self._read_committed: bool | None = None  # MySQL: see _write_isolation
        self._select_cols = [self.table.c[c] for c in dict.fromkeys(
            mapping.columns + ([mapping.cursor] if mapping.cursor else []))]

    @property
    def record_shape(self) -> str:
        """The columns a record is read from, with their types: part of what decides
        how a record maps (reconcile keys its stored digests by it)."""
        cols = [(c.table.name, c.name, repr(c.type)) for c in self._select_cols]
        for child, _table in self.children:
            cols += [(c.table.name, c.name, repr(c.type)) for c in self._child_cols[child.name]]
        return repr(cols)

    @property
    def float_columns(self) -> dict[str | None, tuple[str, ...]]:
        """The columns whose values can be a NaN or an infinity: the record's (under
        None) and each child collection's (under its record key). JSON writes those as
        it writes NULL, so the reconcile cache looks at them (:func:`syncd.seen.raw_digest`).

        A float column of any database but MySQL, which stores neither; on SQLite any
        column but a text one, since its columns hold any type (an INTEGER column
        keeps an infinity as a REAL; SQLite stores a NaN as NULL)."""
        dialect = self.engine.dialect.name
        out = {None: _floats(dialect, self._select_cols)}
        for child, _table in self.children:
            in_row = self._shared[child.name].names  # the parent key may be left out
            out[child.record_key] = _floats(dialect, [c for c in self._child_cols[child.name]
                                                      if c.name in in_row])
        return {key: cols for key, cols in out.items() if cols}

    def _reflect(self, md: MetaData, name: str, needed: Sequence[str]) -> Table:
        try:
            table = Table(name, md, autoload_with=self.engine)
        except NoSuchTableError:
            raise ConnectorError(f"table {name!r} (from {self.mapping.file}) does not exist",
                                 channel=self.name) from None
        except SQLAlchemyError as exc:
            raise self._translate(exc, "reflect") from exc
        missing = [c for c in needed if c not in table.c]
        if missing:
            raise ConnectorError(f"table {name!r} has no column {missing[0]!r} "
                                 f"(named in {self.mapping.file})", channel=self.name)
        return table

    # --- reading ---------------------------------------------------------------
    def read(self, cursor: str | None, page_size: int) -> Iterator[Page]:
        """Pages in change order after ``cursor``; without a cursor column, a full scan.

        The first read (no cursor) is a snapshot: see :meth:`_snapshot`."""
        if self.cursor_col is None:
            yield from self.scan(page_size)
            return
        state = orjson.loads(cursor) if cursor else None
        if state is None or "snapshot" in state:
            tail = yield from self._snapshot(page_size, state)
            if tail is None:
                return
            state = orjson.loads(tail)  # and on to what changed since it began
        if state.get("dt") and self.lag:  # re-read the lag window before the checkpoint
            after = (datetime.fromisoformat(state["t"]) - self.lag, "")
        elif state.get("dt"):
            after = (datetime.fromisoformat(state["t"]), state["k"])
        else:
            after = (state["t"], state["k"])
        order = (self.cursor_col, self.key)
        while True:
            q = select(*self._select_cols).order_by(*order).limit(page_size).where(
                or_(self.cursor_col > after[0],
                    and_(self.cursor_col == after[0], self.key > after[1])))
            rows = self._fetch(q)
            if not rows:
                return
            last = rows[-1]
            after = (last[self.cursor_col.name], last[self.key.name])
            yield Page(self._with_children(rows), _encode_cursor(*after))
            if len(rows) < page_size:
                return

    def _snapshot(self, page_size: int, state: dict[str, Any] | None
                  ) -> Generator[Page, None, str | None]:
        """A job's first read: every row in key order; returns the change-order cursor
        of where the table stood when it began, from which :meth:`read` goes on.

        Read in change order from the start, each page's child rows would be fetched by
        a list of scattered keys, which PostgreSQL answers by reading the whole child
        table for every page; in key order they are one index range, as in a full scan.
        The end position (the last row in change order) is taken first, so a row that
        changes during the snapshot is read again afterwards; each page's cursor holds
        it and the last key read, so a stopped snapshot resumes where it stopped.
        """
        if state is None:
            tail = self.snapshot_end()
            if tail is None:  # no row has a cursor value: read them all, and again next time
                yield from self.scan(page_size)
                return None
            after = None
        else:
            tail, after = state["snapshot"], state["k"]
        for records, more in self._key_pages(page_size, after):
            last = records[-1][self.key.name]
            yield Page(records, orjson.dumps({"snapshot": tail, "k": last}).decode()
                       if more else tail)
        return tail

    def snapshot_end(self) -> str | None:
        """The change-order cursor of the last row as the table stands now (None when no
        row has a cursor value): where reading in change order goes on after a snapshot."""
        if self.cursor_col is None:
            return None
        end = self._fetch(select(self.cursor_col, self.key).where(self.cursor_col.is_not(None))
                          .order_by(self.cursor_col.desc(), self.key.desc()).limit(1))
        return _encode_cursor(end[0][self.cursor_col.name], end[0][self.key.name]) if end \
            else None

    def split(self, parts: int, *, page: int = 1) -> list[Any]:
        """Keys that cut the table into up to ``parts`` key ranges of about the same
        number of rows, for workers to read side by side (:meth:`scan_range`): each a
        whole number of ``page`` rows, but the last, so that no range ends on a page
        cut short; none when the table fits in one page."""
        with self.engine.connect() as conn:
            try:
                rows = conn.execute(select(func.count()).select_from(self.table)).scalar() or 0
                size = -(-rows // max(1, parts))  # rounded up, as is the page count below
                size = max(1, -(-size // page)) * page
                bounds = [conn.execute(select(self.key).order_by(self.key)
                                       .offset(offset - 1).limit(1)).scalar()
                          for offset in range(size, rows, size)]
            except SQLAlchemyError as exc:
                raise self._translate(exc, "read") from exc
        return [b for b in dict.fromkeys(bounds) if b is not None]  # in the database's order

    def scan_range(self, page_size: int, after: Any, upto: Any) -> Iterator[Page]:
        """Every row with ``after < key <= upto`` (None: unbounded) in key order; pages
        carry no cursor."""
        for records, _more in self._key_pages(page_size, after, upto):
            yield Page(records, None)

    def scan(self, page_size: int, *, keys: Sequence[str] | None = None) -> Iterator[Page]:
        """Every row (or just ``keys``) in key order, by keyset pages; pages carry no cursor."""
        if keys is not None:
            wanted = sorted(set(keys))
            for i in range(0, len(wanted), page_size):
                q = (select(*self._select_cols).where(self.key.in_(wanted[i:i + page_size]))
                     .order_by(self.key))
                yield Page(self._with_children(self._fetch(q)), None)
            return
        yield from self.scan_range(page_size, None, None)

    def _key_pages(self, page_size: int, after: Any, upto: Any = None
                   ) -> Iterator[tuple[list[RawRecord], bool]]:
        """(records, whether more follow) in key order, ``after < key <= upto``; one row
        more is asked for than a page holds, to know whether this page is the last."""
        if self._streams:
            yield from self._streamed_pages(page_size, after, upto)
            return
        while True:
            rows = self._fetch(select(*self._select_cols).where(*_in_range(self.key, after, upto))
                               .order_by(self.key).limit(page_size + 1))
            more = len(rows) > page_size
            rows = rows[:page_size]
            if not rows:
                return
            first, after = rows[0][self.key.name], rows[-1][self.key.name]
            yield self._with_children(rows, key_range=(first, after)), more
            if not more:
                return

    def _streamed_pages(self, page_size: int, after: Any, upto: Any
                        ) -> Iterator[tuple[list[RawRecord], bool]]:
        """:meth:`_key_pages` read as one stream per table (PostgreSQL), all in one
        REPEATABLE READ transaction, so that every stream sees the same snapshot.

        Asked for a page's child rows by key range, PostgreSQL reads every heap block
        that holds one of them; where child rows are not stored in item order (as in a
        legacy table filled over the years) a few thousand rows are spread over about a
        thousand blocks, most of which the next page reads again. A stream reads each
        row once: at 1M items one side took 9.1 s of the server's CPU instead of 11.1.

        Each child stream is in the order of its parent key, as the main stream is in
        the order of the key (same type and collation: see ``_streams``), so the rows
        merge page by page; a child row whose item does not exist is left out, as a
        read by key range leaves it out (:class:`ChildStream`)."""
        names = [c.name for c in self._select_cols]
        key = self.key.name
        key_at = names.index(key)
        try:
            with self.engine.connect() as conn, ExitStack() as streams:
                conn.execution_options(isolation_level="REPEATABLE READ")
                conn.begin()  # ended by the connection's close: a rollback, nothing written
                main = streams.enter_context(closing(stream_rows(
                    conn, select(*self._select_cols).where(*_in_range(self.key, after, upto))
                    .order_by(self.key), max(1, page_size // 4))))

                def sorts_before(parent_key: Any, last: Any) -> bool:
                    """Whether ``parent_key`` sorts before ``last`` (a key of this table), as
                    the table's own order has it."""
                    return conn.execute(select(self.key).where(
                        self.key == last, self.key > parent_key)).first() is not None

                children = []
                for child, table in self.children:
                    fk = table.c[child.parent_key or ""]
                    query = (select(*self._child_cols[child.name])
                             .where(fk.is_not(None), *_in_range(fk, after, upto))
                             .order_by(fk, *_within_item(child, table)))
                    children.append((child.record_key, ChildStream(
                        streams.enter_context(closing(stream_rows(conn, query, page_size))),
                        self._shared[child.name], sorts_before)))

                def page(fetched: list[tuple[Any, ...]], later: list[tuple[Any, ...]]
                         ) -> list[RawRecord]:
                    rows = [dict(zip(names, row)) for row in fetched]
                    later_keys = {row[key_at] for row in later}
                    for record_key, stream in children:
                        stream.attach(rows, key, record_key, later_keys)
                    return rows

                pending: list[tuple[Any, ...]] = []
                for batch in main:  # a quarter page at a time: whether more follow is known
                    pending += batch  # before a page goes, holding little more than the page
                    while len(pending) > page_size:
                        yield page(pending[:page_size], pending[page_size:]), True
                        del pending[:page_size]
                if pending:
                    yield page(pending, []), False
        except SQLAlchemyError as exc:
            raise self._translate(exc, "read") from exc

    def _fetch(self, query: Any) -> list[dict[str, Any]]:
        return self._fetched(fetch_dicts, query)

    def _fetched(self, fetch: Callable[[Connection, Any], Any], query: Any) -> Any:
        try:
            with self.engine.connect() as conn:
                return fetch(conn, query)
        except SQLAlchemyError as exc:
            raise self._translate(exc, "read") from exc

    def _with_children(self, rows: list[dict[str, Any]], *,
                       key_range: tuple[Any, Any] | None = None) -> list[RawRecord]:
        """Attach child rows. ``key_range``: the page holds every key in it (a full scan
        page), so children are read as one index range instead of a list of keys."""
        if not self.children or not rows:
            return rows
        key = self.key.name
        for child, table in self.children:
            lists = _child_lists(rows, key, child.record_key)
            fk = table.c[child.parent_key or ""]
            q = select(*self._child_cols[child.name]).where(
                fk.between(*key_range) if key_range
                else one_of(self.engine.dialect.name, fk, list(lists))).order_by(
                fk, *_within_item(child, table))
            _names, found = self._fetched(fetch_rows, q)
            for parent_key, row in self._shared[child.name].rows(found):
                parent_rows = lists.get(parent_key)
                if parent_rows is not None:
                    parent_rows.append(row)
        return rows

    # --- writing ---------------------------------------------------------------
    def write(self, records: Sequence[RawRecord]) -> list[Receipt]:
        """Upsert ``records``; a record the DB refuses is isolated by splitting the batch."""
        if not records:
            return []
        try:
            self._write_batch(records)
            return [Receipt(r[self.key.name], "delivered") for r in records]
        except (OperationalError, TransientTransferError):
            raise
        except (StatementError, UnicodeEncodeError) as exc:  # this content, not the connection
            if len(records) == 1:
                orig = getattr(exc, "orig", None) or exc
                return [Receipt(records[0][self.key.name], "rejected",
                                error=f"{type(orig).__name__}: {orig}"[:500])]
            mid = len(records) // 2
            return self.write(records[:mid]) + self.write(records[mid:])

    def _write_batch(self, records: Sequence[RawRecord]) -> None:
        key, names = self.key.name, self._main_names
        main_rows, child_rows = [], {c.name: [] for c, _ in self.children}
        child_keys = [child.record_key for child, _table in self.children]
        for rec in records:
            main = rec.copy()  # a record is its columns and its children: drop those
            for child_key in child_keys:
                main.pop(child_key, None)
            if not main.keys() <= names:
                main = {k: v for k, v in main.items() if k in names}
            main_rows.append(main)
            for child, _table in self.children:
                child_rows[child.name].extend(rec.get(child.record_key) or [])
        codes = [r[key] for r in main_rows]
        try:
            with self.engine.connect() as conn, self._write_isolation(conn).begin():
                upsert(conn, self.table, main_rows, [key])
                for child, table in self.children:
                    fk = table.c[child.parent_key or ""]
                    delete_in(conn, table, fk, codes)
                    if child_rows[child.name]:
                        insert_rows(conn, table, child_rows[child.name])
        except OperationalError as exc:
            raise self._translate(exc, "write") from exc

    def _write_isolation(self, conn: Connection) -> Connection:
        """MySQL writes in READ COMMITTED where its binary log allows it: at its default
        level, deleting child rows by a list of keys locks the gaps around them, and
        writers of neighbouring key ranges (sync workers) deadlock on those gaps (the
        retry gets through, but costs a round)."""
        if self._read_committed is None:
            self._read_committed = False
            if conn.dialect.name in ("mysql", "mariadb"):
                with self.engine.connect() as probe:
                    log_bin, binlog_format = probe.exec_driver_sql(
                        "SELECT @@log_bin, @@binlog_format").one()
                self._read_committed = read_committed_logs(log_bin, binlog_format)
        if self._read_committed:
            conn.execution_options(isolation_level="READ COMMITTED")
        return conn

    def _translate(self, exc: SQLAlchemyError, what: str) -> ConnectorError:
        orig = getattr(exc, "orig", None) or exc
        msg = f"{what} failed: {type(orig).__name__}: {orig}"[:500]
        if isinstance(exc, OperationalError) or getattr(exc, "connection_invalidated", False):
            return TransientTransferError(msg, channel=self.name)
        return TransferError(msg, channel=self.name)

    def cancel(self, code: str, reason: str) -> bool:
        """Set the item's status column to 取消 through the mapping; False if no such row.

        ``reason`` goes to the log only: legacy tables have no place for it.
        """
        status = next((f for f in self.mapping.fields if f.name == "status" and f.column), None)
        if status is None:
            raise ConnectorError(f"the mapping {self.mapping.file} maps no status column, so "
                                 "items cannot be cancelled here", channel=self.name)
        value = status.writer(STATUS_CANCELLED)
        try:
            with self.engine.begin() as conn:
                done = conn.execute(update(self.table).where(self.key == code)
                                    .values({status.column: value}))
        except SQLAlchemyError as exc:
            raise self._translate(exc, "cancel") from exc
        return bool(done.rowcount)

    def tables_without_statistics(self) -> list[str]:
        """This channel's PostgreSQL tables that have no planner statistics and will not
        get them: never analyzed (PostgreSQL 14 and later tell), with autovacuum off for
        the server or the table.

        Without statistics PostgreSQL takes each key of a list to hold 0.5 % of a table,
        and reads a whole child table to find (or delete) the child rows of a page of
        keys: 0.25 s instead of 2 ms for 200 keys at 3.5M rows, on every page of an
        incremental read or a write. Nothing fails; it is only slow, so the engine warns."""
        if self.engine.dialect.name != "postgresql":
            return []
        names = [self.table.name] + [table.name for _child, table in self.children]
        query = text(
            "SELECT c.relname FROM unnest(CAST(:names AS text[])) AS n(name) "
            "JOIN pg_class c ON c.oid = to_regclass(quote_ident(n.name)) "
            "WHERE c.reltuples < 0 AND (current_setting('autovacuum') = 'off' "
            "OR coalesce(c.reloptions @> ARRAY['autovacuum_enabled=false'], false))")
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(query, {"names": names}).scalars())
        except SQLAlchemyError as exc:
            raise self._translate(exc, "read") from exc

    def count(self) -> int:
        """Rows in the main table (reports and tests)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(self.table)).scalar() or 0)

    def close(self) -> None:
        self.engine.dispose()


class SharedRows:
    """A child table's rows as :class:`SharedRow` objects: one object for every row with
    the same values (and value types: ``1`` and ``1.0`` are told apart), so that the
    recurring materials of a table of items cost one dict each, not one per row.

    Args:
        names: the row's columns, in the order the query selects them.
        parent_at: where the parent key stands in a fetched row; when it is past
            ``names`` it is left out of the row (it differs on every item).
        typed: each column gives values of one Python type (or None), as a typed
            column of a server database does (:func:`_typed`): equal values are then
            of equal types, and rows are told apart by their values alone.
    """

    def __init__(self, names: Sequence[str], parent_at: int, *, typed: bool = False) -> None:
        self.names, self.parent_at, self.typed = list(names), parent_at, typed
        #: the row of one fetched row: a :class:`SharedRow`, or a plain dict of its own
        #: when it holds an unhashable value (an array column). A closure over what it
        #: needs, as it is called for every child row read
        self.row = self._sharer()

    def rows(self, fetched: Sequence[tuple[Any, ...]]) -> Iterator[tuple[Any, RawRecord]]:
        """(parent key, row) of each fetched row (:attr:`row`)."""
        at, row = self.parent_at, self.row
        for values in fetched:
            yield values[at], row(values)

    def _sharer(self) -> Callable[[tuple[Any, ...]], RawRecord]:
        names, at, typed = self.names, self.parent_at, self.typed
        parent_left_out = at >= len(names)
        memory: dict[tuple[Any, ...], SharedRow] = {}

        def row(fetched: tuple[Any, ...]) -> RawRecord:
            values = fetched[:at] if parent_left_out else fetched
            key = values if typed else (values, tuple(map(type, values)))
            try:
                shared = memory.get(key)
            except TypeError:
                return dict(zip(names, values))
            if shared is None:
                if len(memory) >= child_memory():
                    memory.clear()
                shared = memory[key] = SharedRow(zip(names, values))
            return shared

        return row


class ChildStream:
    """A child table's rows in the order of their items, handed out page by page to the
    records of a key-ordered main stream (:meth:`SqlChannel._streamed_pages`).

    Args:
        batches: the fetched rows (parent key last, or among the values).
        shared: makes each fetched row a :class:`SharedRow`.
        sorts_before: whether a parent key sorts before a key of the main table, in the
            database's order (asked only of a row whose item is not in the page).
    """

    def __init__(self, batches: Iterator[list[tuple[Any, ...]]], shared: SharedRows,
                 sorts_before: Callable[[Any, Any], bool]) -> None:
        self._batches, self._shared, self._sorts_before = batches, shared, sorts_before
        self._batch: Sequence[tuple[Any, ...]] = ()
        self._next = 0  # the first row of ``_batch`` not yet handed out

    def attach(self, records: list[RawRecord], key: str, record_key: str,
               later: Container[Any]) -> None:
        """Give each of ``records`` (a page, in key order) its rows, in the stream's order.
        A row of an item that is not in the page is a later page's (certainly so when
        its item is among the keys read past the page, ``later``), unless its parent
        key sorts before the page's last key: then it has no item (the main stream has
        passed where it would be), and is left out.

        One loop over the fetched rows, with no call per row but the one that makes
        it a :class:`SharedRow`: a page of 1,000 items takes some 3,500 rows."""
        lists = _child_lists(records, key, record_key)
        last, orphan = records[-1][key], _NO_KEY
        at, share = self._shared.parent_at, self._shared.row
        while True:
            batch = self._batch
            for i in range(self._next, len(batch)):
                fetched = batch[i]
                parent_key = fetched[at]
                rows = lists.get(parent_key)
                if rows is not None:
                    rows.append(share(fetched))
                elif parent_key in later:
                    self._next = i
                    return  # the first row of the next page's items
                elif parent_key != orphan:
                    if not self._sorts_before(parent_key, last):
                        self._next = i
                        return  # the first row of a later page
                    orphan = parent_key
            self._batch, self._next = next(self._batches, None) or (), 0
            if not self._batch:
                return


_NO_KEY = object()


def _within_item(child: ChildMap, table: Table) -> tuple[Any, ...]:
    """How a child table's rows of one item are ordered, read by page or streamed: by
    primary key, so a record reads the same every time it is read, unless the mapping
    orders them by a column of its own (``order``), which it sorts them by as it reads
    them.

    With an order column the rows come as the index on the parent key has them. The
    primary key would add a sort of each item's rows (PostgreSQL's incremental sort):
    streamed, at 3.5M material rows, 4.0 s of the server's time instead of 2.7 s. Only rows
    with equal order values can then come in another order another time, and nothing
    that is compared depends on it: the content hash sorts an item's children, and
    reconcile compares materials whatever their order."""
    return () if child.order else tuple(table.primary_key.columns)


def _child_lists(records: list[RawRecord], key: str, record_key: str
                 ) -> dict[Any, list[RawRecord]]:
    """Give each record an empty list of child rows under ``record_key``; the lists by
    the records' keys, to fill."""
    lists: dict[Any, list[RawRecord]] = {}
    for rec in records:
        rec[record_key] = lists[rec[key]] = []
    return lists


def _in_range(column: Any, after: Any, upto: Any) -> list[Any]:
    """``after < column <= upto`` (None: unbounded), as WHERE clauses."""
    return [c for c in (None if after is None else column > after,
                        None if upto is None else column <= upto) if c is not None]


#: column types whose values a server database's driver gives as one Python type (or None)
_ONE_TYPE = (String, Integer, Numeric, Float, Boolean, Date, DateTime, Time, Interval)


def _typed(dialect: str, columns: Sequence[Any]) -> bool:
    """Whether every one of ``columns`` gives values of one Python type (or None): a
    PostgreSQL or MySQL column of a scalar type does. A SQLite column may hold any
    type in any row, and a JSON column any JSON value (``1`` and ``true`` among them)."""
    return dialect in ("postgresql", "mysql", "mariadb") and all(
        isinstance(c.type, _ONE_TYPE) and not isinstance(c.type, JSON) for c in columns)


def _floats(dialect: str, columns: Sequence[Any]) -> tuple[str, ...]:
    """The names of ``columns`` that can give a NaN or an infinity (a float, or an array
    of floats; :attr:`SqlChannel.float_columns`)."""
    if dialect in ("mysql", "mariadb"):
        return ()
    return tuple(c.name for c in columns
                 if isinstance(c.type, Float) or isinstance(getattr(c.type, "item_type", None),
                                                             Float)
                 or (dialect == "sqlite" and not isinstance(c.type, String)))


def _same_order(key: Any, parent_key: Any) -> bool:
    """Whether two columns hold the same kind of value and sort it alike: then rows read
    in the order of one merge by equality with rows read in the order of the other."""
    try:
        same_type = key.type.python_type is parent_key.type.python_type
    except NotImplementedError:
        return False
    return same_type and getattr(key.type, "collation", None) == getattr(
        parent_key.type, "collation", None)


def read_committed_logs(log_bin: Any, binlog_format: Any) -> bool:
    """Whether a MySQL server can log READ COMMITTED writes: not with statement-based
    binary logging (error 1665), which MySQL 5.6 has by default."""
    return not int(log_bin or 0) or str(binlog_format).upper() != "STATEMENT"


def _encode_cursor(value: Any, key: str) -> str:
    """The checkpoint after a page: the last (cursor value, key) seen."""
    if isinstance(value, datetime):
        return orjson.dumps({"t": value.isoformat(), "k": key, "dt": True}).decode()
    return orjson.dumps({"t": value, "k": key}).decode()
