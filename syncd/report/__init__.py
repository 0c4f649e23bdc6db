"""Report writers: one module per format, chosen by name from ``WRITERS``.

    write_reports(report, ["html", "xlsx"], out_dir) → [out_dir/inspect-<run>.html, …]

Each writer is ``write(report: ReportData, path: Path) -> None``; a new
format is a new module plus one line here. Files are written under a temporary
name and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from syncd.errors import ConfigError
from syncd.report import csv, html, json, xlsx
from syncd.report.data import ReportData

Writer = Callable[[ReportData, Path], None]

#: format name → (file suffix, writer)
WRITERS: dict[str, tuple[str, Writer]] = {
    "html": ("html", html.write),
    "xlsx": ("xlsx", xlsx.write),
    "csv": ("csv", csv.write),
    "json": ("json", json.write),
}

_UNSAFE = re.compile(r"[^\w.-]+")


def report_path(report: ReportData, fmt: str, out_dir: Path) -> Path:
    """``<out_dir>/<kind>-<run_id>.<suffix>``, the run id made safe for file names."""
    run = _UNSAFE.sub("_", report.run_id).strip("._") or "run"
    return out_dir / f"{report.kind}-{run}.{WRITERS[fmt][0]}"


def write_reports(report: ReportData, formats: list[str], out_dir: Path) -> list[Path]:
    """Write ``report`` once per format into ``out_dir`` (created if missing).

    Returns:
        the written files, in the order of ``formats`` (duplicates written once).

    Raises:
        ConfigError: a format has no writer (checked before anything is written).
    """
    unknown = [f for f in formats if f not in WRITERS]
    if unknown:
        raise ConfigError(f"unknown report format {unknown[0]!r}; known: {', '.join(WRITERS)}",
                          key="formats")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fmt in dict.fromkeys(formats):
        path = report_path(report, fmt, out_dir)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            WRITERS[fmt][1](report, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(path)
    return written


__all__ = ["WRITERS", "ReportData", "report_path", "write_reports"]
