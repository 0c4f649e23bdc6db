"""`syncd report reconcile` on three channels in three databases with known differences.

The hall DB (SQLite) is the reference; two portal DBs (PostgreSQL and MariaDB)
hold the same items with injected differences, real ones and cosmetic ones.
The report must name exactly the real ones, in every output format, and
`--fix` must make the channels agree.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from helpers import seed, write_config

from syncd.cli import main
from syncd.model import Material
from syncd.sample import generate
from syncd.state.store import open_store

FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")


def _variants(items):
    """Reference items and the two portal channels' copies, plus what must be reported."""
    ref = list(items)
    pg, my = list(items), list(items)
    expected: set[tuple[str, str, str, str | None]] = set()  # (code, channel, kind, field)

    # cosmetic differences: never reported
    pg[1] = dataclasses.replace(pg[1], consult_phone=(pg[1].consult_phone or "0777-6420000")
                                .translate(FULL_WIDTH))
    ref[1] = dataclasses.replace(ref[1], consult_phone=ref[1].consult_phone or "0777-6420000")
    pg[2] = dataclasses.replace(pg[2], conditions="  " + (pg[2].conditions or "").replace("，", "， \n"))
    my[3] = dataclasses.replace(my[3], materials=tuple(reversed(my[3].materials)))
    my[4] = dataclasses.replace(my[4], address=(my[4].address or "") + "　")  # ideographic space
    pg[5] = dataclasses.replace(pg[5], item_name=pg[5].item_name.replace("(", "（")
                                .replace(")", "）") + " ")

    # real differences
    gone = pg.pop(10)
    expected.add((gone.item_code, "portal_pg", "missing", None))
    pg[20] = dataclasses.replace(pg[20], office_hours="周一至周五 9:00-12:00")
    expected.add((pg[20].item_code, "portal_pg", "differs", "office_hours"))
    my[30] = dataclasses.replace(my[30], consult_phone="0777-6999999")
    expected.add((my[30].item_code, "portal_my", "differs", "consult_phone"))
    my[31] = dataclasses.replace(my[31], materials=my[31].materials[:-1])
    expected.add((my[31].item_code, "portal_my", "differs", "materials"))
    # the reference moved on (version 5, new address); both portals still have version 2
    ref[40] = dataclasses.replace(ref[40], version=5, address="钦州市灵山县新政务服务中心")
    my[40] = dataclasses.replace(my[40], version=2)
    pg[39] = dataclasses.replace(pg[39], version=2)  # (index 39: one item was popped above)
    for channel in ("portal_pg", "portal_my"):
        expected.add((my[40].item_code, channel, "stale", "version"))
        expected.add((my[40].item_code, channel, "differs", "address"))
    extra = next(iter(generate(1, seed=77)))
    my.append(extra)
    expected.add((extra.item_code, "portal_my", "extra", None))
    return ref, pg, my, expected


@pytest.fixture
def three_channels(fresh_db, tmp_path):
    items = list(generate(120, seed=21))
    for i in (3, 31):  # make sure the material cases have something to reorder and drop
        items[i] = dataclasses.replace(items[i], materials=items[i].materials + (
            Material("身份证明", "1", "1", 1, "1", "10", "《中华人民共和国居民身份证法》第三条", 9),
            Material("委托书", "3", "1", 1, "2", "10", "《中华人民共和国民法典》第一百六十五条",
                     10)))
    ref, pg, my, expected = _variants(items)
    urls = {"hall": fresh_db("sqlite"), "portal_pg": fresh_db("postgres"),
            "portal_my": fresh_db("mysql")}
    seed(urls["hall"], "hall_db", ref)
    seed(urls["portal_pg"], "portal_db", pg)
    seed(urls["portal_my"], "portal_db", my)
    cfg = write_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                       channels={"hall": ("sql", urls["hall"], "hall_db.yaml"),
                                 "portal_pg": ("sql", urls["portal_pg"], "portal_db.yaml"),
                                 "portal_my": ("sql", urls["portal_my"], "portal_db.yaml")},
                       jobs={})
    return cfg, expected, {i.item_code for i in ref} | {my[-1].item_code}


def _reconcile(cfg: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["--config", str(cfg), "report", "reconcile", "--channels",
                                     "hall,portal_pg,portal_my", "--reference", "hall",
                                     "--format", "html,xlsx,json,csv", "--out", str(out), *extra])


def _found(rows) -> set[tuple[str, str, str, str | None]]:
    return {(r[0], r[1], r[2], r[3]) for r in rows}


def test_report_finds_exactly_the_injected_differences_in_every_format(three_channels, tmp_path):
    cfg, expected, codes = three_channels
    out = tmp_path / "reports"
    result = _reconcile(cfg, out)
    assert result.exit_code == 1, result.output  # differences remain
    files = {p.suffix: p for p in out.iterdir()}
    assert set(files) == {".html", ".xlsx", ".json", ".csv"}

    doc = json.loads(files[".json"].read_text(encoding="utf-8"))
    diffs = doc["reconcile"]["diffs"]
    assert _found((d["item_code"], d["channel"], d["kind"], d["field"]) for d in diffs) == expected
    assert len(diffs) == len(expected)
    by_key = {(d["item_code"], d["channel"], d["field"]): d for d in diffs}
    code30 = next(c for c, ch, k, f in expected if f == "consult_phone")
    phone = by_key[(code30, "portal_my", "consult_phone")]
    assert phone["channel_value"] == "0777-6999999" and phone["kind_label"] == "不一致"
    summary = {r["key"]: r["value"] for r in doc["summary"]}
    assert summary["items"] == len(codes)
    assert summary["differences"] == len(expected)
    rates = {r["channel"]: r for r in doc["reconcile"]["channel_rates"]}
    assert rates["portal_pg"]["compared"] - rates["portal_pg"]["consistent"] == 3
    assert rates["portal_my"]["compared"] - rates["portal_my"]["consistent"] == 4

    kind_labels = {"missing": "缺失", "extra": "多余", "differs": "不一致", "stale": "版本落后"}
    with files[".csv"].open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["实施编码", "事项名称", "渠道", "差异类型"]
    assert {(r[0], r[2], r[3]) for r in body} == \
        {(c, ch, kind_labels[k]) for c, ch, k, _f in expected}
    assert len(body) == len(expected)

    book = openpyxl.load_workbook(files[".xlsx"], read_only=True)
    sheet = book["差异明细"]
    xrows = [r for r in sheet.iter_rows(min_row=2, values_only=True) if r[0]]
    assert {(r[0], r[2], r[3]) for r in xrows} == \
        {(c, ch, kind_labels[k]) for c, ch, k, _f in expected}

    page = files[".html"].read_text(encoding="utf-8")
    differing = {c for c, *_ in expected}
    for code in differing:
        assert code in page
    assert not [c for c in codes - differing if c in page]  # cosmetic ones stay out


def test_runs_are_stored_and_fix_makes_the_channels_agree(three_channels, tmp_path):
    cfg, expected, _codes = three_channels
    first = _reconcile(cfg, tmp_path / "r1", "--fix", "--dry-run")
    assert first.exit_code == 1, first.output
    assert "would resync 3 items hall -> portal_pg" in first.output
    assert "would resync 3 items hall -> portal_my" in first.output
    assert "1 only in portal_my" in first.output
    # a dry run changed nothing
    assert _reconcile(cfg, tmp_path / "r2").exit_code == 1

    fixed = _reconcile(cfg, tmp_path / "r3", "--fix")
    assert fixed.exit_code == 1, fixed.output  # the report before the fix still had them
    after = _reconcile(cfg, tmp_path / "r4", "--format", "json")
    assert after.exit_code == 1, after.output
    doc = json.loads(next((tmp_path / "r4").glob("*.json")).read_text(encoding="utf-8"))
    # only the extra item remains: --fix never deletes what only a channel has
    assert _found((d["item_code"], d["channel"], d["kind"], d["field"])
                  for d in doc["reconcile"]["diffs"]) == {e for e in expected if e[2] == "extra"}
    trend = doc["reconcile"]["trend"]
    assert len(trend) == 4  # r1, r2, r3, r4: every run is kept for the trend
    assert trend[0]["rates"]["portal_pg"] < 1.0 and trend[-1]["rates"]["portal_pg"] == 1.0

    store = open_store(f"sqlite:///{tmp_path}/state.db")
    try:
        stored = store.reconcile_diffs(trend[0]["run_id"])
    finally:
        store.close()
    assert _found((d["item_code"], d["channel"], d["kind"], d["field"]) for d in stored) == expected


def test_unknown_channel_is_one_clear_error(tmp_path, three_channels):
    cfg, _expected, _codes = three_channels
    result = CliRunner().invoke(main, ["--config", str(cfg), "report", "reconcile",
                                       "--channels", "hall,portal_xx", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "no channel named 'portal_xx'" in result.output
