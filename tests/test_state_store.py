"""The state store: the record of a page (on SQLite, PostgreSQL and MariaDB), the
reconcile cache's lookups."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest
import sqlalchemy as sa
from conftest import DB_KINDS

from syncd.errors import StateError
from syncd.state.store import (
    HEAD,
    MIGRATIONS,
    VERSION_TABLE,
    Delivered,
    Failed,
    PageOutcome,
    open_store,
)


@pytest.mark.parametrize("kind", DB_KINDS)
def test_a_delivery_clears_the_items_retry_and_no_other(fresh_db, kind):
    """An item waiting in the outbox leaves it once a page delivers it; another
    target's retry of the same item, and other items' retries, stay."""
    store = open_store(fresh_db(kind))
    waiting = [PageOutcome(target, failed=[Failed(code, "h0", {"item_code": code}, "timeout",
                                                  "pending")])
               for target in ("portal", "platform") for code in ("A", "B")]
    store.record_page("job", "run-1", outcomes=waiting, source="hall")
    assert len(store.outbox(job="job")) == 4
    store.record_page("job", "run-2", outcomes=[PageOutcome("portal", delivered=[
        Delivered("A", "h1"), Delivered("C", "h1")])], source="hall")
    left = sorted((r["target"], r["item_code"]) for r in store.outbox(job="job"))
    assert left == [("platform", "A"), ("platform", "B"), ("portal", "B")]
    assert store.delivered_hashes("job", "portal", ["A", "B", "C"]) == {"A": "h1", "C": "h1"}
    store.record_page("job", "run-3", outcomes=[PageOutcome("other", delivered=[
        Delivered("A", "h1")])], source="hall")  # a target with nothing waiting
    assert len(store.outbox(job="job")) == 3
    store.close()


def test_a_seen_lookup_leaves_nothing_for_the_cyclic_collector(tmp_path):
    """Readers look up a page of codes at a time under a raised collector threshold: a
    lookup that left its statement, codes and all, in reference cycles would grow the
    reader until the collector came round (~50 bytes a record at 100k)."""
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    codes = [f"C{i:04d}" for i in range(1000)]
    store.save_seen("hall", "fp", [(code, "d", "e") for code in codes])
    store.seen("hall", "fp", codes)  # the first run compiles and caches the statement
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            assert len(store.seen("hall", "fp", codes)) == 1000
        assert gc.collect() == 0
    finally:
        gc.enable()
        store.close()


def _alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def test_head_is_the_newest_migration():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(_alembic_config()).get_current_head() == HEAD


@pytest.mark.parametrize("kind", DB_KINDS)
def test_a_store_at_head_opens_without_alembic_and_an_older_one_is_migrated(fresh_db, kind):
    from alembic import command

    url = fresh_db(kind)
    open_store(url).close()  # an empty DB is migrated to head
    opened = subprocess.run(
        [sys.executable, "-c", "import sys; from syncd.state.store import open_store; "
         "open_store(sys.argv[1]).close(); print('alembic' in sys.modules)", url],
        capture_output=True, text=True, check=True)
    assert opened.stdout.split() == ["False"]

    store = open_store(url)
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    with store.engine.connect() as conn:
        assert not sa.inspect(conn).has_table("reconcile_alike")
    store.close()
    store = open_store(url)  # one migration behind: migrated again
    with store.engine.connect() as conn:
        assert sa.inspect(conn).has_table("reconcile_alike")
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == HEAD
    store.close()


def test_a_state_db_that_cannot_be_reached_is_named_without_its_password():
    with pytest.raises(StateError) as err:
        open_store("postgresql+psycopg://syncd:s3cret@127.0.0.1:1/state")
    assert "127.0.0.1:1/state" in str(err.value) and "s3cret" not in str(err.value)
