"""JSON report: one object with everything, English machine keys plus Chinese labels.

Codes stay codes (``"kind": "differs"``, ``"rule": "phone_invalid"``); each
sits next to its label (``kind_label``, ``rule_label``), and ``labels`` maps
every code used to its label, so a consumer never has to guess.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from syncd.inspect import RULE_LABELS, GroupSummary
from syncd.report.data import DIFF_KIND_LABELS, REPORT_KIND_LABELS, ReportData, shown_time


def _group(g: GroupSummary) -> dict[str, Any]:
    return {"key": g.key, "label": g.label, "items": g.items,
            "items_with_findings": g.items_with_findings, "findings": g.findings,
            "pass_rate": g.pass_rate, "by_rule": g.by_rule}


def to_document(report: ReportData) -> dict[str, Any]:
    """The report as JSON-ready data (times as ISO 8601 with offset)."""
    return {
        "kind": report.kind,
        "kind_label": REPORT_KIND_LABELS[report.kind],
        "title": report.title,
        "run_id": report.run_id,
        "generated_at": report.generated_at.isoformat(),
        "generated_at_shown": shown_time(report.generated_at),
        "summary": [asdict(r) for r in report.summary],
        "reconcile": {
            "reference": report.reference,
            "channels": list(report.channels),
            "channel_rates": [{"channel": c.channel, "consistent": c.consistent,
                               "compared": c.compared, "rate": c.rate}
                              for c in report.channel_rates],
            "field_rates": [{"field": f.field, "field_label": f.field_label, "equal": f.equal,
                             "compared": f.compared, "differing": f.differing, "rate": f.rate}
                            for f in report.field_rates],
            "diffs": [asdict(d) | {"kind_label": d.kind_label} for d in report.diffs],
            "trend": [{"run_id": p.run_id, "at": p.at.isoformat(), "rates": p.rates}
                      for p in report.trend],
        },
        "inspect": {
            "findings": [asdict(f) for f in report.findings],
            "by_dept": [_group(g) for g in report.by_dept],
            "by_type": [_group(g) for g in report.by_type],
        },
        "labels": {"diff_kinds": DIFF_KIND_LABELS, "rules": RULE_LABELS,
                   "report_kinds": REPORT_KIND_LABELS},
    }


def write(report: ReportData, path: Path) -> None:
    path.write_bytes(orjson.dumps(to_document(report), option=orjson.OPT_INDENT_2))
