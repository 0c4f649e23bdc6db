"""Reconcile reuses what it saw last time: unchanged records are not mapped again,
and the result is the same as a reconcile that maps everything."""

from __future__ import annotations

import dataclasses
import math
import shutil
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import APART, DB_KINDS
from helpers import ListChannel, mapping_for, open_sql, run_reconcile, seed

from connectors.base import SharedRow
from syncd.channel_reader import Opener
from syncd.codes import MAPPINGS_DIR
from syncd.config import ChannelConfig
from syncd.mapping import load_mapping
from syncd.reconcile import reconcile
from syncd.sample import generate
from syncd.seen import fingerprint, raw_digest
from syncd.sqlutil import make_engine
from syncd.state.store import StateStore, open_store
from syncd.state.tables import metadata


def _diffs(result):
    return [(d.item_code, d.kind, d.field, d.reference_value, d.channel_value)
            for d in result.diffs]


def _channels(items, portal_items):
    hall, portal = mapping_for("hall_db"), mapping_for("portal_db")
    return {"hall": (ListChannel("hall", [hall.from_item(i) for i in items]), hall),
            "portal": (ListChannel("portal", [portal.from_item(i) for i in portal_items
                                              if i is not None]), portal)}


@pytest.mark.parametrize("kind", DB_KINDS)
@APART
def test_second_reconcile_maps_only_what_changed_and_finds_the_same(fresh_db, tmp_path, kind,
                                                                    apart):
    store = open_store(fresh_db(kind))
    items = sorted(generate(60, seed=7), key=lambda i: i.item_code)
    portal_items = list(items)
    portal_items[3] = dataclasses.replace(items[3], address="别处某路1号")      # differs
    portal_items[9] = dataclasses.replace(items[9], version=(items[9].version or 1) - 1,
                                          consult_phone="0771-0000000")       # differs, stale
    portal_items[20] = None                                                   # missing
    def run(**kwargs):
        return run_reconcile(_channels(items, portal_items), "hall", workdir=tmp_path,
                             apart=apart, **kwargs)

    plain = run()
    assert len(plain.diffs) == 4

    first = run(store=store)
    assert _diffs(first) == _diffs(plain) and first.reused == {"hall": 0, "portal": 0}

    again = run(store=store)
    assert _diffs(again) == _diffs(plain)  # values of reused records are mapped for the report
    assert again.reused == {"hall": 60, "portal": 59}
    assert again.stats["portal"].consistent == plain.stats["portal"].consistent == 57

    # a real change, a cosmetic one and a fixed one since the last reconcile
    portal_items[30] = dataclasses.replace(items[30], address="另一条路2号")
    portal_items[40] = dataclasses.replace(items[40], address=f"  {items[40].address} ")
    portal_items[3] = items[3]
    later = run(store=store)
    assert later.reused == {"hall": 60, "portal": 56}
    expected = sorted(
        [(items[9].item_code, "stale", "version"), (items[9].item_code, "differs", "consult_phone"),
         (items[20].item_code, "missing", None), (items[30].item_code, "differs", "address")],
        key=lambda d: (d[0], d[1] != "stale"))
    assert [(c, k, f) for c, k, f, _a, _b in _diffs(later)] == expected
    assert later.compared_again == 4  # 9, 20, 30 and the cosmetic 40 (exact digests differ)

    # 40 was found alike, so its content hash was kept: it is settled on that now, also
    # after an edit the comparison does not read (the version), which keeps the hash
    settled = run(store=store)
    assert settled.compared_again == 3 and settled.reused == {"hall": 60, "portal": 59}
    portal_items[40] = dataclasses.replace(portal_items[40], version=(items[40].version or 1) + 5)
    touched = run(store=store)
    assert touched.compared_again == 3 and touched.reused == {"hall": 60, "portal": 58}
    assert [(c, k, f) for c, k, f, _a, _b in _diffs(touched)] == expected
    store.close()


@pytest.mark.parametrize("kind", DB_KINDS)
def test_rewritten_child_rows_with_new_ids_still_count_as_unchanged(fresh_db, tmp_path, kind):
    """A sync rewrites an item's materials (delete + insert, so new surrogate ids): the
    records read the same, so the next reconcile maps nothing again."""
    items = sorted(generate(20, seed=5), key=lambda i: i.item_code)
    hall_url, portal_url = fresh_db(kind), fresh_db(kind)
    seed(hall_url, "hall_db", items)
    seed(portal_url, "portal_db", items)
    store = open_store(f"sqlite:///{tmp_path}/state.db")

    def run():
        channels = {"hall": open_sql(hall_url, "hall_db"), "portal": open_sql(portal_url,
                                                                               "portal_db")}
        try:
            return reconcile({n: (c, c.mapping) for n, c in channels.items()}, "hall",
                             workdir=tmp_path, store=store)
        finally:
            for c in channels.values():
                c.close()

    assert run().reused == {"hall": 0, "portal": 0}
    seed(hall_url, "hall_db", items[:10], create=False)  # same content, new material ids
    again = run()
    assert again.reused == {"hall": 20, "portal": 20} and again.diffs == []
    store.close()


@APART
def test_a_changed_mapping_drops_what_was_seen(tmp_path, apart):
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    path = tmp_path / "hall_db.yaml"
    shutil.copy(MAPPINGS_DIR / "hall_db.yaml", path)
    items = sorted(generate(10, seed=8), key=lambda i: i.item_code)

    def run():
        hall = load_mapping(path)
        records = [hall.from_item(i) for i in items]
        return run_reconcile({"hall": (ListChannel("hall", records), hall),
                              "copy": (ListChannel("copy", records), hall)},
                             "hall", workdir=tmp_path, apart=apart, store=store)

    assert run().reused == {"hall": 0, "copy": 0}
    assert run().reused == {"hall": 10, "copy": 10}
    path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert run().reused == {"hall": 0, "copy": 0}
    store.close()


@APART
def test_unreadable_records_are_read_again_every_time(tmp_path, apart):
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    items = sorted(generate(5, seed=9), key=lambda i: i.item_code)
    channels = _channels(items, items)
    channels["portal"][0].records[2]["visits"] = "两次"  # not a number
    for _ in range(2):
        result = run_reconcile(channels, "hall", workdir=tmp_path, apart=apart, store=store)
        assert [(c, code) for c, code, _why in result.unreadable] == [
            ("portal", items[2].item_code)]
    assert result.reused == {"hall": 5, "portal": 4}
    store.close()


def test_raw_digest_keeps_apart_what_maps_differently():
    when = datetime(2024, 1, 2, 3, 4, 5)
    values = [1, "1", b"1", Decimal(1), True, 1.0, None, ["1"], {"1": 1}, when,
              when.replace(tzinfo=UTC), when.date(), SharedRow(a=1), _Text("1")]
    digests = {raw_digest({"c": v}) for v in values}
    assert len(digests) == len(values)
    assert raw_digest({"c": "x", "kids": [{"a": 1}]}) == raw_digest({"c": "x", "kids": [{"a": 1}]})
    assert raw_digest({"c": 1 << 70}) is None  # cannot be digested: mapped every time
    # a datetime digests as its ISO text: a column gives one of the two, never both (the
    # shape read, with the column types, is in the fingerprint; see the next test)
    assert raw_digest({"c": when}) == raw_digest({"c": when.isoformat()})


def test_raw_digest_keeps_nan_and_infinities_apart_from_null_where_floats_can_be():
    """JSON writes NaN and ±inf as null: in the columns a connector names (the record's
    and a child collection's) and in a shared child row's values, they digest apart."""
    floats = {None: ("f",), "kids": ("g",)}
    values = [None, math.nan, math.inf, -math.inf, 1.5]
    assert len({raw_digest({"f": v, "kids": []}, floats) for v in values}) == len(values)
    assert len({raw_digest({"f": [1.0, v]}, floats) for v in values}) == len(values)
    assert len({raw_digest({"kids": [{"g": 1}, {"g": v}]}, floats)
                for v in values}) == len(values)
    assert len({raw_digest({"kids": [SharedRow(g=v)]}) for v in values}) == len(values)
    # the record read is left as it was
    record = {"f": math.nan, "kids": [{"g": math.inf}], "other": "x"}
    assert raw_digest(record, floats) != raw_digest({"f": None, "kids": [{"g": None}],
                                                     "other": "x"}, floats)
    assert math.isnan(record["f"]) and record["kids"] == [{"g": math.inf}]
    # the same record digests the same each time
    assert raw_digest(record, floats) == raw_digest(dict(record), floats)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])  # MySQL stores neither NaN nor ±inf
@APART
def test_a_float_column_going_from_null_to_nan_or_infinity_is_read_again(fresh_db, tmp_path,
                                                                         kind, apart):
    """A limit goes from NULL to NaN or ±inf between two reconciles (a PostgreSQL
    double precision column; SQLite keeps an infinity even in an INTEGER column, and a
    NaN as NULL): the record is read again and listed as unreadable, where its digest
    once stayed that of the NULL, so the next reconcile reused it and said nothing."""
    items = sorted(generate(6, seed=21), key=lambda i: i.item_code)
    for n in (2, 4):
        items[n] = dataclasses.replace(items[n], legal_time_limit=None, legal_limit_unit=None)
    hall_url, portal_url = fresh_db(kind), fresh_db(kind)
    seed(hall_url, "hall_db", items)
    seed(portal_url, "portal_db", items)
    portal_db = make_engine(portal_url)
    if kind == "postgres":
        with portal_db.begin() as conn:
            conn.execute(sa.text("alter table portal_guide alter column legal_days "
                                 "type double precision"))
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    urls = {"hall": (hall_url, "hall_db"), "portal": (portal_url, "portal_db")}

    def run():
        channels = {n: open_sql(url, schema) for n, (url, schema) in urls.items()}
        openers = {n: Opener(ChannelConfig(n, "sql", url, MAPPINGS_DIR / f"{schema}.yaml"))
                   for n, (url, schema) in urls.items()} if apart else None
        try:
            return reconcile({n: (c, c.mapping) for n, c in channels.items()}, "hall",
                             workdir=tmp_path, store=store, openers=openers)
        finally:
            for c in channels.values():
                c.close()

    assert run().reused == {"hall": 0, "portal": 0}
    again = run()
    assert again.reused == {"hall": 6, "portal": 6} and again.unreadable == []
    odd = ["'NaN'", "'Infinity'"] if kind == "postgres" else ["9e999", "-9e999"]
    with portal_db.begin() as conn:
        for n, value in zip((2, 4), odd, strict=True):
            conn.execute(sa.text(f"update portal_guide set legal_days = {value} "
                                 "where item_code = :code"), {"code": items[n].item_code})
    later = run()
    assert sorted((c, code, reason.split(":")[0]) for c, code, reason in later.unreadable) == [
        ("portal", items[n].item_code, "legal_time_limit") for n in (2, 4)]
    assert later.reused == {"hall": 6, "portal": 4} and later.diffs == []
    store.close()
    portal_db.dispose()


class _Text(str):
    """A str subclass a driver might hand out: digested apart from a plain str."""


def test_shared_child_rows_digest_by_their_values():
    """A shared row stands in as its digest, computed once and kept on the row: equal
    rows that are other objects digest alike, any change to a row changes the record's
    digest."""
    def record(**row):
        return {"c": "x", "kids": [SharedRow(a=1, b="身份证", **row)]}

    first = raw_digest(record())
    assert raw_digest(record()) == first
    assert len({first, raw_digest(record(d=None)), raw_digest(record(d=b"1")),
                raw_digest({"c": "x", "kids": [SharedRow(a=1, b="户口簿")]}),
                raw_digest({"c": "x", "kids": [SharedRow(a="1", b="身份证")]})}) == 5
    assert raw_digest(record(d=1 << 70)) is None


@pytest.mark.parametrize("kind", DB_KINDS)
def test_a_column_of_another_type_makes_another_fingerprint(kind, fresh_db):
    """What lets a datetime digest as its text: the channel's columns and their types
    are part of the fingerprint its rows are kept under."""
    url = fresh_db(kind)
    seed(url, "hall_db", generate(3, seed=5))
    engine = sa.create_engine(url)
    q = "`" if engine.dialect.name == "mysql" else '"'

    def fingerprint_with(column_type):  # the column re-added last (SQLite cannot alter it)
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {q}SP_SXXX{q} DROP COLUMN {q}FDSX{q}"))
            conn.execute(sa.text(f"ALTER TABLE {q}SP_SXXX{q} ADD COLUMN {q}FDSX{q} "
                                 f"{column_type}"))
        channel = open_sql(url, "hall_db")
        try:
            return fingerprint(channel.mapping, channel.record_shape)
        finally:
            channel.close()

    as_int = fingerprint_with("INTEGER")
    assert fingerprint_with("VARCHAR(40)") not in (as_int, None)
    assert fingerprint_with("INTEGER") == as_int
    engine.dispose()


def test_the_fingerprint_covers_the_code_that_makes_what_is_kept():
    """A row keeps a raw digest and the exact digest of what the record mapped to: the
    code of both is in the fingerprint, else rows kept under an older formula would
    be compared with new digests (and miss every day)."""
    from pathlib import Path

    from syncd import item_stream, mapping, model, seen, steps

    made_by = {Path(f.__code__.co_filename).name for f in (
        item_stream.exact_digest, item_stream._digest, mapping.Mapping.values_reader,
        mapping.Mapping.to_item, model.kept_json, steps.compose)}
    assert made_by <= set(seen._MAPPING_CODE)


def test_rows_made_under_another_fingerprint_are_never_used(tmp_path):
    """A reconcile still running with yesterday's mapping saves rows after today's began:
    they are kept apart by fingerprint."""
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    store.save_seen("hall", "old", [("A", "d1", "e1"), ("B", "d2", "e2")])
    store.save_alike("hall", "old", [("B", "e2", "h2")])
    assert store.seen("hall", "new", ["A"]) == {}
    assert store.seen("hall", "old", ["A", "B"]) == {"A": ("d1", "e1", None),
                                                     "B": ("d2", "e2", "h2")}
    assert (store.has_seen("hall", "old"), store.has_seen("hall", "new")) == (True, False)
    assert not store.has_seen("portal", "old")
    store.forget_seen("hall", keep="new")
    assert store.seen("hall", "old", ["A"]) == {}
    assert not store.has_seen("hall", "old")
    with store.engine.connect() as conn:  # the content hashes went with them
        assert conn.execute(sa.text("select count(*) from reconcile_alike")).scalar() == 0
    store.close()


def test_a_content_hash_holds_only_for_the_exact_digest_it_was_kept_for(tmp_path):
    """The comparing process keeps content hashes apart from what readers save, so the
    two never overwrite each other, whichever lands last; a hash is looked up only
    while the item's exact digest is the one it was computed with."""
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    store.save_alike("hall", "fp", [("A", "e1", "h1")])   # before the reader's row lands
    store.save_seen("hall", "fp", [("A", "d1", "e1")])
    assert store.seen("hall", "fp", ["A"]) == {"A": ("d1", "e1", "h1")}
    store.save_seen("hall", "fp", [("A", "d2", "e1")])    # raw edit, same exact digest
    assert store.seen("hall", "fp", ["A"]) == {"A": ("d2", "e1", "h1")}
    store.save_seen("hall", "fp", [("A", "d3", "e3")])    # a change the comparison reads
    assert store.seen("hall", "fp", ["A"]) == {"A": ("d3", "e3", None)}
    store.close()


def test_a_first_reconcile_looks_nothing_up(tmp_path):
    """With no row under its fingerprint a channel's pages are not looked up (each would
    come back empty); once rows are saved, the next run looks them up and reuses them."""
    open_store(f"sqlite:///{tmp_path}/state.db").close()  # migrated

    class Counting(StateStore):
        lookups = 0

        def seen(self, channel, fingerprint, codes):
            Counting.lookups += 1
            return super().seen(channel, fingerprint, codes)

    store = Counting(f"sqlite:///{tmp_path}/state.db")
    items = sorted(generate(30, seed=12), key=lambda i: i.item_code)
    first = run_reconcile(_channels(items, items), "hall", workdir=tmp_path, store=store)
    assert (Counting.lookups, first.reused) == (0, {"hall": 0, "portal": 0})
    again = run_reconcile(_channels(items, items), "hall", workdir=tmp_path, store=store)
    assert Counting.lookups > 0 and again.reused == {"hall": 30, "portal": 30}
    assert _diffs(again) == _diffs(first) == []
    store.close()


@APART
def test_reconcile_goes_on_without_the_cache_when_the_state_db_fails(tmp_path, apart):
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    with store.engine.begin() as conn:
        conn.execute(sa.text("drop table reconcile_seen"))
    items = sorted(generate(5, seed=10), key=lambda i: i.item_code)
    changed = [dataclasses.replace(i, address="别处") if n == 2 else i
               for n, i in enumerate(items)]
    result = run_reconcile(_channels(items, changed), "hall", workdir=tmp_path, apart=apart,
                           store=store)
    assert [(d.item_code, d.field) for d in result.diffs] == [(items[2].item_code, "address")]
    assert result.reused == {"hall": 0, "portal": 0}
    store.close()


@APART
def test_an_unordered_channel_reuses_what_it_saw(tmp_path, apart):
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    hall, portal = mapping_for("hall_db"), mapping_for("portal_db")
    items = list(generate(30, seed=11))
    changed = [dataclasses.replace(i, address="别处") if n == 7 else i
               for n, i in enumerate(items)]
    ordered = sorted((hall.from_item(i) for i in items), key=lambda r: r["SXBM"])
    shuffled = [portal.from_item(i) for i in reversed(changed)]
    for reused in (0, 30):
        result = run_reconcile({"hall": (ListChannel("hall", ordered), hall),
                                "portal": (ListChannel("portal", shuffled, False), portal)},
                               "hall", workdir=tmp_path, apart=apart, store=store)
        assert result.reused == {"hall": reused, "portal": reused}
        assert [(d.item_code, d.field) for d in result.diffs] == [(items[7].item_code,
                                                                    "address")]
    store.close()


@pytest.mark.parametrize("kind", DB_KINDS)
@APART
def test_a_code_the_state_table_cannot_hold_is_compared_not_remembered(fresh_db, tmp_path,
                                                                        kind, apart):
    store = open_store(fresh_db(kind))
    items = sorted(generate(3, seed=12), key=lambda i: i.item_code)
    long = dataclasses.replace(items[0], item_code=items[0].item_code * 3)  # 93 characters
    nul = dataclasses.replace(items[1], item_code=items[1].item_code + "\x00")  # PG refuses it
    # a lone surrogate: no UTF-8, so every driver raises (not the database); the second
    # run once failed on it with a UnicodeEncodeError
    lone = dataclasses.replace(items[2], item_code=items[2].item_code + "\ud800")
    listed = sorted([*items, long, nul, lone], key=lambda i: i.item_code)
    for reused in (0, 3):
        result = run_reconcile(_channels(listed, listed), "hall",
                               workdir=tmp_path, apart=apart, store=store)
        assert result.diffs == [] and result.items == 6
        assert result.reused == {"hall": reused, "portal": reused}
    store.close()


@APART
def test_an_item_no_digest_can_hold_is_compared_every_time(tmp_path, apart):
    """A limit past 64 bits: no exact digest, no content hash; the item is compared field
    by field on every run, found alike despite a cosmetic difference, and not kept."""
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    items = sorted(generate(4, seed=13), key=lambda i: i.item_code)
    items[1] = dataclasses.replace(items[1], legal_time_limit=1 << 70)
    portal = [dataclasses.replace(i, address=f" {i.address} ") if n == 1 else i
              for n, i in enumerate(items)]
    for _ in range(2):
        result = run_reconcile(_channels(items, portal), "hall", workdir=tmp_path,
                               apart=apart, store=store)
        assert result.diffs == [] and result.stats["portal"].consistent == 4
        assert result.compared_again == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from reconcile_alike")).scalar() == 0
    store.close()


@APART
@pytest.mark.parametrize("cached", [False, True], ids=["plain", "cached"])
def test_a_record_no_digest_can_hold_with_a_field_it_cannot_read_is_listed(tmp_path, apart,
                                                                           cached):
    """A limit past 64 bits (no digest) and an update time that cannot be read: where
    records are hashed (a cache, or reader processes) the record is read whole to be
    compared field by field, and its unreadable field lists it as unreadable, as an
    item read whole from the start is; the run once failed with that MappingError."""
    hall, portal = mapping_for("hall_db"), mapping_for("portal_db")
    items = sorted(generate(3, seed=14), key=lambda i: i.item_code)
    records = [portal.from_item(i) for i in items]
    column = {f.name: f.column for f in portal.fields}
    records[1] = dict(records[1], **{column["legal_time_limit"]: 1 << 70,
                                     column["updated_at"]: "不是时间"})
    store = open_store(f"sqlite:///{tmp_path}/state.db") if cached else None
    result = run_reconcile({"hall": (ListChannel("hall", [hall.from_item(i) for i in items]),
                                     hall),
                            "portal": (ListChannel("portal", records), portal)},
                           "hall", workdir=tmp_path, apart=apart, store=store)
    assert [(c, code, reason.split(":")[0]) for c, code, reason in result.unreadable] == [
        ("portal", items[1].item_code, "updated_at")]
    assert result.stats["portal"].consistent == 2
    if store is not None:
        store.close()


@pytest.mark.parametrize("kind", DB_KINDS)
def test_migrations_build_exactly_the_declared_tables(fresh_db, kind):
    store = open_store(fresh_db(kind))
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "include_name": lambda name, kind, _parent: name != "syncd_alembic_version"})
        drift = compare_metadata(ctx, metadata)
    store.close()
    assert drift == []
