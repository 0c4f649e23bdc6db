"""Vanished items are reported, then cancelled on an operator's word: a status update
in every target (SQLite, PostgreSQL, MariaDB, the platform), never a delete."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from helpers import open_sql, seed, write_config

from syncd.cli import main
from syncd.sample import generate
from syncd.sim import PlatformSimulator, serve_in_thread
from syncd.sqlutil import make_engine


def _delete_from_hall(url: str, codes: list[str]) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for table in ("SP_SXCL", "SP_SXSF", "SP_SXXX"):
            conn.execute(sa.text(f'DELETE FROM "{table}" WHERE "SXBM" IN :codes')
                         .bindparams(sa.bindparam("codes", expanding=True)), {"codes": codes})
    engine.dispose()


def _portal_states(url: str) -> dict[str, str]:
    channel = open_sql(url, "portal_db")
    try:
        return {i.item_code: i.status for page in channel.scan(500) for i in
                (channel.mapping.to_item(r) for r in page.records)}
    finally:
        channel.close()


@pytest.mark.parametrize("db", ["sqlite", "postgres", "mysql"])
def test_vanished_items_are_listed_then_cancelled_in_the_target(db, fresh_db, tmp_path):
    src, dst = fresh_db("sqlite"), fresh_db(db)
    items = list(generate(30, seed=9))
    seed(src, "hall_db", items)
    seed(dst, "portal_db", [])
    cfg = write_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                       channels={"hall": ("sql", src, "hall_db.yaml"),
                                 "portal": ("sql", dst, "portal_db.yaml")},
                       jobs={"j": {"source": "hall", "targets": ["portal"], "page_size": 7}})
    run = CliRunner()
    assert run.invoke(main, ["--config", str(cfg), "sync", "j"]).exit_code == 0
    gone = [items[3].item_code, items[20].item_code]
    _delete_from_hall(src, gone)
    full = run.invoke(main, ["--config", str(cfg), "sync", "j", "--full"])
    assert "vanished=2" in full.output
    listed = run.invoke(main, ["--config", str(cfg), "vanished"]).output
    assert all(code in listed for code in gone)
    assert _portal_states(dst)[gone[0]] == items[3].status != "3"  # reported, not touched

    cancelled = run.invoke(main, ["--config", str(cfg), "cancel", "j", *gone, "not-a-code"])
    assert cancelled.exit_code == 1  # one code was not found
    assert f"cancelled {gone[0]} in portal" in cancelled.output
    assert "not found not-a-code in portal" in cancelled.output
    states = _portal_states(dst)
    assert len(states) == 30  # nothing deleted
    assert {c: states[c] for c in gone} == dict.fromkeys(gone, "3")
    assert all(states[i.item_code] == i.status for i in items if i.item_code not in gone)
    assert run.invoke(main, ["--config", str(cfg), "vanished"]).output.strip() == "vanished: none"


def test_cancel_on_the_platform_sets_task_state_3(tmp_path):
    src = f"sqlite:///{tmp_path}/hall.db"
    items = list(generate(10, seed=4))
    seed(src, "hall_db", items)
    sim = PlatformSimulator({"app": "secret-for-cancel"})
    with serve_in_thread(sim) as server:
        cfg = write_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                           channels={"hall": ("sql", src, "hall_db.yaml"),
                                     "platform": ("platform", server.url,
                                                  "platform/reference.yaml")},
                           jobs={"push": {"source": "hall", "targets": ["platform"]}},
                           options={"platform": {"app_key": "app",
                                                 "app_secret": "secret-for-cancel"}})
        run = CliRunner()
        assert run.invoke(main, ["--config", str(cfg), "sync", "push"]).exit_code == 0
        result = run.invoke(main, ["--config", str(cfg), "cancel", "push", items[2].item_code])
        assert result.exit_code == 0, result.output
        assert sim.get(items[2].item_code)["TASK_STATE"] == "3"
        assert all(sim.get(i.item_code)["TASK_STATE"] == i.status for i in items if i != items[2])
