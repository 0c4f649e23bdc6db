"""`syncd report inspect` end to end: seeded guides in a portal DB (SQLite, PostgreSQL,
MariaDB) give exactly the expected findings, in every output format."""

from __future__ import annotations

import csv
import json

import openpyxl
import pytest
from click.testing import CliRunner
from helpers import seed, write_config
from test_inspect import CASES, CLEAN

from syncd.cli import main


@pytest.mark.parametrize("db", ["sqlite", "postgres", "mysql"])
def test_inspect_report_lists_exactly_the_seeded_findings(db, fresh_db, tmp_path):
    url = fresh_db(db)
    seed(url, "portal_db", [CLEAN] + [item for item, _ in CASES])
    cfg = write_config(tmp_path / "syncd.toml", state_db=f"sqlite:///{tmp_path}/state.db",
                       channels={"portal": ("sql", url, "portal_db.yaml")}, jobs={})
    out = tmp_path / "reports"
    result = CliRunner().invoke(main, ["--config", str(cfg), "report", "inspect", "--channel",
                                       "portal", "--format", "json,csv,xlsx,html", "--out",
                                       str(out)])
    assert result.exit_code == 1, result.output  # findings exist
    expected = sorted((item.item_code, rule, field) for item, pairs in CASES
                      for rule, field in pairs)
    files = {p.suffix: p for p in out.iterdir()}

    doc = json.loads(files[".json"].read_text(encoding="utf-8"))
    findings = doc["inspect"]["findings"]
    assert sorted((f["item_code"], f["rule"], f["field"]) for f in findings) == expected
    summary = {r["key"]: r["value"] for r in doc["summary"]}
    assert summary["items"] == len(CASES) + 1
    assert summary["items_with_findings"] == len(CASES)

    labels = {f["rule"]: f["rule_label"] for f in findings}
    with files[".csv"].open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    assert sorted((r[0], r[5]) for r in rows) == sorted((c, labels[r]) for c, r, _ in expected)
    sheet = openpyxl.load_workbook(files[".xlsx"], read_only=True)["检查发现"]
    xrows = [r for r in sheet.iter_rows(min_row=2, values_only=True) if r[0]]
    assert len(xrows) == len(expected)
    page = files[".html"].read_text(encoding="utf-8")
    assert all(code in page for code, _, _ in expected)
    assert CLEAN.item_code not in page  # the clean guide has nothing to report
