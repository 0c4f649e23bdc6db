"""Report writers: every format written, read back, and hostile text kept inert."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest

from syncd.errors import ConfigError
from syncd.inspect import inspect_items
from syncd.model import ServiceItem, uscc_check_char
from syncd.report import WRITERS, write_reports
from syncd.report.data import (
    ChannelRate,
    Diff,
    FieldRate,
    ReportData,
    SummaryRow,
    TrendPoint,
    inspect_report,
)
from syncd.report.html import HTML_MAX_ROWS, render

SCRIPT = "<script>alert(1)</script>"
QUOTED = "他说\"是\"和'否'"
FORMULAS = ['=HYPERLINK("http://evil.example","点我")', "+1+1", "@SUM(A1:A2)", "-2+3"]
BASE17 = "11450721MB1558081"
CODE = BASE17 + uscc_check_char(BASE17) + "4" + "000104002000"
AT = datetime(2024, 5, 1, 2, 30, tzinfo=UTC)


def reconcile_data(n_extra: int = 0) -> ReportData:
    diffs = [
        Diff(CODE, SCRIPT, "address", "办理地点", "differs", "hall_db", QUOTED, FORMULAS[0]),
        Diff(CODE, SCRIPT, "consult_phone", "咨询电话", "differs", "hall_db", FORMULAS[1],
             FORMULAS[2]),
        Diff(CODE, SCRIPT, "version", "版本", "stale", "portal_db", "12", "11"),
        Diff(CODE[:-1] + "1", "仅基准有", None, None, "missing", "portal_db"),
        Diff(CODE[:-1] + "2", FORMULAS[3], None, None, "extra", "hall_db", None, "-5"),
    ] + [Diff(f"{CODE[:-4]}{i:04d}", "批量", "office_hours", "办理时间", "differs", "hall_db",
              "8:00", "9:00") for i in range(n_extra)]
    return ReportData(
        "reconcile", "多渠道一致性比对报告", AT, "run/2024-05-01",
        summary=(SummaryRow("items", "比对事项数", 3), SummaryRow("rate", "总体一致率", 0.5,
                                                                  percent=True)),
        channels=("hall_db", "portal_db"), reference="platform",
        channel_rates=(ChannelRate("hall_db", 1, 3), ChannelRate("portal_db", 2, 3)),
        field_rates=(FieldRate("address", "办理地点", 5, 6), FieldRate("consult_phone",
                                                                     "咨询电话", 4, 6),
                     FieldRate("item_name", "事项名称", 6, 6)),
        diffs=diffs,
        trend=[TrendPoint("r1", AT - timedelta(days=1), {"hall_db": 0.2, "portal_db": 0.5}),
               TrendPoint("r2", AT, {"hall_db": 1 / 3, "portal_db": 2 / 3})])


def inspect_data() -> ReportData:
    items = [ServiceItem(CODE, item_name=SCRIPT, item_type="01", dept_name=FORMULAS[0],
                         consult_phone=FORMULAS[1], complaint_phone=QUOTED)]
    return inspect_report(items, inspect_items(items), run_id="insp-1", generated_at=AT)


@pytest.fixture(params=["reconcile", "inspect"])
def written(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ReportData, dict[str, Path]]:
    report = reconcile_data() if request.param == "reconcile" else inspect_data()
    paths = write_reports(report, list(WRITERS), tmp_path / "out")
    return report, {p.suffix[1:]: p for p in paths}


def details(report: ReportData) -> int:
    return len(report.diffs) if report.kind == "reconcile" else len(report.findings)


def test_every_format_is_written_under_a_safe_name(written) -> None:
    report, paths = written
    assert set(paths) == {"html", "xlsx", "csv", "json"}
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
        assert re.fullmatch(rf"{report.kind}-[\w.-]+\.\w+", path.name)
    assert not list(paths["html"].parent.glob(".*.tmp"))


def test_html_escapes_everything_and_runs_no_script(written) -> None:
    report, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&#34;是&#34;" in page and "&#39;否&#39;" in page
    assert "Content-Security-Policy" in page
    for external in ("<link", " src=", "@import", "url(", "<iframe", "javascript:"):
        assert external not in page
    assert page.count("<svg") >= 2


def test_html_reconcile_has_the_three_charts() -> None:
    page = render(reconcile_data())
    for title in ("各渠道一致率", "差异最多的字段（前10）", "一致率趋势"):
        assert f"<figcaption>{title}</figcaption>" in page
    assert page.count("<svg") == 3
    assert "<polyline" in page
    assert "基准值（platform）" in page


def test_html_shows_a_bounded_number_of_rows() -> None:
    page = render(reconcile_data(n_extra=HTML_MAX_ROWS))
    assert f"共 {HTML_MAX_ROWS + 5} 条" in page
    assert page.count("<td class=\"kind-") == HTML_MAX_ROWS


def test_xlsx_sheets_headers_freeze_and_filter(written) -> None:
    report, paths = written
    wb = openpyxl.load_workbook(paths["xlsx"])
    detail = "差异明细" if report.kind == "reconcile" else "检查发现"
    assert wb.sheetnames[:2] == ["汇总", detail]
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref == f"A1:{ws.cell(1, ws.max_column).column_letter}{ws.max_row}"
        assert ws.cell(1, 1).font.bold
    ws = wb[detail]
    assert ws.max_row == details(report) + 1
    assert ws.cell(1, 1).value == "实施编码"
    assert ws.column_dimensions["B"].width > 8


def test_xlsx_never_stores_a_formula(written) -> None:
    _report, paths = written
    wb = openpyxl.load_workbook(paths["xlsx"])
    cells = [c for ws in wb.worksheets for row in ws.iter_rows() for c in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    values = {c.value for c in cells}
    hostile = [f for f in FORMULAS if f in values]
    assert hostile, "the hostile values should round-trip unchanged"
    assert any(SCRIPT == v for v in values)


def test_xlsx_rates_are_percent_numbers(tmp_path: Path) -> None:
    [path] = write_reports(reconcile_data(), ["xlsx"], tmp_path)
    ws = openpyxl.load_workbook(path)["渠道一致率"]
    assert ws["D2"].value == pytest.approx(1 / 3)
    assert ws["D2"].number_format == "0.0%"


def test_csv_has_bom_chinese_headers_and_guarded_cells(written) -> None:
    report, paths = written
    assert paths["csv"].read_bytes().startswith(b"\xef\xbb\xbf")
    with paths["csv"].open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "实施编码"
    assert len(rows) == details(report) + 1
    cells = [c for row in rows[1:] for c in row]
    assert SCRIPT in cells
    assert not [c for c in cells if c[:1] in ("=", "+", "@") or re.match(r"-\D", c)]
    if report.kind == "reconcile":
        assert "'" + FORMULAS[0] in cells and "-5" in cells
        assert rows[0][3] == "差异类型" and {r[3] for r in rows[1:]} == \
            {"不一致", "版本落后", "缺失", "多余"}


def test_json_holds_codes_and_labels(written) -> None:
    report, paths = written
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["kind"] == report.kind and doc["run_id"] == report.run_id
    assert doc["generated_at"] == AT.isoformat()
    assert doc["generated_at_shown"] == "2024-05-01 10:30:00"
    assert doc["labels"]["diff_kinds"]["stale"] == "版本落后"
    if report.kind == "reconcile":
        diffs = doc["reconcile"]["diffs"]
        assert [d["kind"] for d in diffs] == ["differs", "differs", "stale", "missing", "extra"]
        assert diffs[2]["kind_label"] == "版本落后"
        assert diffs[0]["item_name"] == SCRIPT
        rates = {c["channel"]: c["rate"] for c in doc["reconcile"]["channel_rates"]}
        assert rates == pytest.approx({"hall_db": 1 / 3, "portal_db": 2 / 3})
        assert len(doc["reconcile"]["trend"]) == 2
    else:
        findings = doc["inspect"]["findings"]
        assert len(findings) == len(report.findings)
        assert {f["rule"] for f in findings} >= {"required_missing", "phone_invalid"}
        assert doc["labels"]["rules"]["phone_invalid"] == "电话号码格式不正确"
        assert doc["inspect"]["by_dept"][0]["items_with_findings"] == 1


def test_unknown_format_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pdf"):
        write_reports(reconcile_data(), ["html", "pdf"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_diff_kind_is_checked() -> None:
    with pytest.raises(ValueError):
        Diff(CODE, None, None, None, "gone", "hall_db")  # type: ignore[arg-type]
