"""XLSX report: 汇总, the detail sheet (差异明细 / 检查发现), then the breakdowns.

Every sheet has a bold frozen header row, an auto filter over its data and
column widths fitted to the content. Written in openpyxl's write-only mode, so
a million differences stream to disk instead of building a workbook in memory.

Formula injection: openpyxl stores any string starting with ``=`` as a
formula, so text starting with = + - @ is forced to a plain string cell
(data type ``s``); the text itself is kept exactly as received. Characters
XML cannot hold (C0 controls) are dropped, over-long text is cut to Excel's
32,767-character cell limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from syncd.report.data import ReportData, Table, detail_table, summary_tables

MAX_ROWS = 1_048_575          # Excel's sheet limit, less the header
MAX_CELL_CHARS = 32_767
WIDTH_SAMPLE = 500            # rows looked at to size the columns
MIN_WIDTH, MAX_WIDTH = 8, 60
_FORMULA_START = ("=", "+", "-", "@")
_HEADER_FONT = Font(bold=True)
_HEADER_ALIGN = Alignment(vertical="center")


def write(report: ReportData, path: Path) -> None:
    tables = summary_tables(report)
    tables.insert(1, detail_table(report))
    wb = Workbook(write_only=True)
    for table in tables:
        _write_sheet(wb.create_sheet(table.name), table)
    wb.save(path)


def _write_sheet(ws: WriteOnlyWorksheet, table: Table) -> None:
    rows = table.rows
    truncated = len(rows) > MAX_ROWS
    if truncated:
        rows = rows[:MAX_ROWS - 1]
    ncols = len(table.headers)
    for i, width in enumerate(_widths(table.headers, rows), start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A2"
    last_row = len(rows) + 1 + truncated
    ws.auto_filter.ref = f"A1:{get_column_letter(ncols)}{last_row}"
    header = []
    for title in table.headers:
        cell = WriteOnlyCell(ws, value=_clean(title))
        cell.font, cell.alignment = _HEADER_FONT, _HEADER_ALIGN
        header.append(cell)
    ws.append(header)
    for row in rows:
        ws.append([_cell(ws, v, i in table.percent_columns) for i, v in enumerate(row)])
    if truncated:
        ws.append([f"……超出 Excel 行数上限，仅写入前 {len(rows)} 行，完整明细见 CSV/JSON 报告"])


def _cell(ws: WriteOnlyWorksheet, value: Any, percent: bool) -> WriteOnlyCell:
    if isinstance(value, str):
        text = _clean(value)
        cell = WriteOnlyCell(ws, value=text)
        if text.startswith(_FORMULA_START):
            cell.data_type = "s"  # never a formula: stored and shown as text
        return cell
    cell = WriteOnlyCell(ws, value=value)
    if percent and isinstance(value, float):
        cell.number_format = "0.0%"
    return cell


def _clean(text: str) -> str:
    return ILLEGAL_CHARACTERS_RE.sub("", text)[:MAX_CELL_CHARS]


def _widths(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[float]:
    """Column widths from the header and a sample of rows (CJK characters count double)."""
    widths = [_display_len(h) for h in headers]
    for row in rows[:WIDTH_SAMPLE]:
        for i, value in enumerate(row[:len(widths)]):
            widths[i] = max(widths[i], _display_len(value))
    return [min(max(w + 2, MIN_WIDTH), MAX_WIDTH) for w in widths]


def _display_len(value: Any) -> int:
    if value is None:
        return 0
    text = f"{value:.1%}" if isinstance(value, float) else str(value)
    first_line = text.split("\n", 1)[0]
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in first_line)
