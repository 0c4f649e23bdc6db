"""CSV report: one row per difference or finding, Chinese headers, UTF-8 with BOM.

The BOM makes Excel read the Chinese correctly. Because Excel also runs
formulas from CSV cells, text starting with = + - @ (or tab/CR) is written
with a leading single quote, the usual CSV-injection guard; plain numbers
such as ``-5`` are left alone.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from syncd.report.data import ReportData, detail_table

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def safe_cell(value: Any) -> Any:
    """``value`` made inert for spreadsheet programs; None becomes an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START) \
            and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def write(report: ReportData, path: Path) -> None:
    table = detail_table(report)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(table.headers)
        out.writerows([safe_cell(v) for v in row] for row in table.rows)
