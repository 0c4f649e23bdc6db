"""What the report writers take: one frozen ``ReportData`` per report, plain values only.

The reconcile engine and the inspection fill a ``ReportData``; every writer
(HTML, XLSX, CSV, JSON) reads it and nothing else, so all formats say the same
thing. Machine values are English codes (``kind="differs"``, ``rule=
"promise_exceeds_legal"``); what reviewers read comes from the labels beside
them. ``detail_table``/``summary_tables`` give the tabular view the XLSX and
CSV writers share.

A reconcile report, as the engine builds it::

    ReportData("reconcile", "多渠道一致性比对报告", now, run_id,
               summary=(SummaryRow("items", "比对事项数", 120), ...),
               channels=("hall_db", "portal_db"), reference="platform",
               channel_rates=(ChannelRate("hall_db", 110, 120), ...),
               field_rates=(FieldRate("address", "办理地点", 115, 120), ...),
               diffs=(Diff(code, name, "address", "办理地点", "differs", "hall_db", a, b), ...),
               trend=(TrendPoint(run_id, started_at, {"hall_db": 0.91}), ...))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from syncd.codes import label as code_label
from syncd.inspect import RULE_LABELS, Finding, GroupSummary, summarize
from syncd.model import ServiceItem

DiffKind = Literal["missing", "extra", "differs", "stale"]
ReportKind = Literal["reconcile", "inspect"]

#: difference kind → what the reviewer reads
DIFF_KIND_LABELS: dict[str, str] = {
    "missing": "缺失",      # in the reference channel, not in this one
    "extra": "多余",        # in this channel, not in the reference
    "differs": "不一致",    # in both, this field differs after normalisation
    "stale": "版本落后",    # this channel holds an older version than the reference
}
REPORT_KIND_LABELS: dict[str, str] = {"reconcile": "一致性比对", "inspect": "规范性检查"}

#: reports show times in the city's zone; naive datetimes are taken as UTC
SHOWN_TZ = ZoneInfo("Asia/Shanghai")


def shown_time(at: datetime) -> str:
    """``2024-05-01 18:00:00`` in Asia/Shanghai."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(SHOWN_TZ).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class Diff:
    """One difference between a channel and the reference channel.

    ``field``/``field_label`` are None for whole-item kinds (missing, extra);
    values are the *shown* (not normalised) texts, None when absent.
    """

    item_code: str
    item_name: str | None
    field: str | None
    field_label: str | None
    kind: DiffKind
    channel: str
    reference_value: str | None = None
    channel_value: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in DIFF_KIND_LABELS:
            raise ValueError(f"unknown diff kind {self.kind!r}; known: {list(DIFF_KIND_LABELS)}")

    @property
    def kind_label(self) -> str:
        return DIFF_KIND_LABELS[self.kind]


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One headline number: English ``key`` for machines, Chinese ``label`` for people."""

    key: str
    label: str
    value: str | int | float
    percent: bool = False  # value is a share in 0..1, shown as a percentage


@dataclass(frozen=True, slots=True)
class ChannelRate:
    """Items of one channel that agree with the reference, out of those compared."""

    channel: str
    consistent: int
    compared: int

    @property
    def rate(self) -> float:
        return self.consistent / self.compared if self.compared else 1.0


@dataclass(frozen=True, slots=True)
class FieldRate:
    """How often one field agrees with the reference, over every compared channel."""

    field: str
    field_label: str
    equal: int
    compared: int

    @property
    def rate(self) -> float:
        return self.equal / self.compared if self.compared else 1.0

    @property
    def differing(self) -> int:
        return self.compared - self.equal


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One earlier (or this) reconcile run: its consistency rate per channel."""

    run_id: str
    at: datetime
    rates: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportData:
    """Everything one report says. Sequences (lists, generators) are stored as tuples.

    Reconcile reports fill the reconcile part, inspect reports the inspect
    part; the other part stays empty.
    """

    kind: ReportKind
    title: str
    generated_at: datetime
    run_id: str
    summary: Sequence[SummaryRow] = ()
    # reconcile
    channels: Sequence[str] = ()
    reference: str | None = None
    channel_rates: Sequence[ChannelRate] = ()
    field_rates: Sequence[FieldRate] = ()
    diffs: Sequence[Diff] = ()
    trend: Sequence[TrendPoint] = ()
    # inspect
    findings: Sequence[Finding] = ()
    by_dept: Sequence[GroupSummary] = ()
    by_type: Sequence[GroupSummary] = ()

    def __post_init__(self) -> None:
        if self.kind not in REPORT_KIND_LABELS:
            raise ValueError(f"unknown report kind {self.kind!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Iterable) and not isinstance(value, str | tuple):
                object.__setattr__(self, f.name, tuple(value))


def inspect_report(items: Sequence[ServiceItem], findings: Sequence[Finding], *, run_id: str,
                   generated_at: datetime | None = None,
                   title: str = "办事指南规范性检查报告") -> ReportData:
    """The report of one inspection: headline counts, summaries and every finding."""
    summary = summarize(findings, items)
    flagged = {f.item_code for f in findings}
    errors = sum(f.severity == "错误" for f in findings)
    rows = (
        SummaryRow("items", "检查事项数", len(items)),
        SummaryRow("items_with_findings", "存在问题事项数", len(flagged)),
        SummaryRow("pass_rate", "合格率", 1 - len(flagged) / len(items) if items else 1.0,
                   percent=True),
        SummaryRow("findings", "发现问题数", len(findings)),
        SummaryRow("errors", "其中错误", errors),
        SummaryRow("warnings", "其中警告", len(findings) - errors),
    )
    return ReportData("inspect", title, generated_at or datetime.now(UTC), run_id, rows,
                      findings=findings, by_dept=summary.by_dept, by_type=summary.by_type)


# --- the tabular view shared by XLSX and CSV -----------------------------------

class Table(NamedTuple):
    """A sheet's worth of rows: Chinese headers, values, which columns are shares."""

    name: str
    headers: tuple[str, ...]
    rows: Sequence[Sequence[Any]]
    percent_columns: frozenset[int] = frozenset()


WHOLE_ITEM = "（整条事项）"


def detail_table(report: ReportData) -> Table:
    """One row per difference (reconcile) or per finding (inspect)."""
    if report.kind == "inspect":
        return Table("检查发现",
                     ("实施编码", "事项名称", "实施主体", "事项类型", "严重程度", "规则",
                      "字段", "问题说明"),
                     [(f.item_code, f.item_name, f.dept_name, _type_label(f.item_type),
                       f.severity, f.rule_label, f.field_label, f.message)
                      for f in report.findings])
    ref = report.reference or "基准渠道"
    return Table("差异明细",
                 ("实施编码", "事项名称", "渠道", "差异类型", "字段", f"基准值（{ref}）", "渠道值"),
                 [(d.item_code, d.item_name, d.channel, d.kind_label,
                   d.field_label or d.field or WHOLE_ITEM, d.reference_value, d.channel_value)
                  for d in report.diffs])


def summary_tables(report: ReportData) -> list[Table]:
    """The headline table (汇总) first, then the kind's breakdowns."""
    head = Table("汇总", ("项目", "数值"),
                 [("报告类型", REPORT_KIND_LABELS[report.kind]), ("运行编号", report.run_id),
                  ("生成时间", shown_time(report.generated_at))]
                 + ([("基准渠道", report.reference)] if report.reference else [])
                 + [(r.label, f"{r.value:.1%}" if r.percent else r.value)
                    for r in report.summary])
    if report.kind == "inspect":
        return [head, _group_table("按实施主体", "实施主体", report.by_dept),
                _group_table("按事项类型", "事项类型", report.by_type)]
    tables = [head,
              Table("渠道一致率", ("渠道", "一致事项数", "比对事项数", "一致率"),
                    [(c.channel, c.consistent, c.compared, c.rate) for c in report.channel_rates],
                    frozenset({3})),
              Table("字段一致率", ("字段", "字段名称", "一致数", "比对数", "不一致数", "一致率"),
                    [(f.field, f.field_label, f.equal, f.compared, f.differing, f.rate)
                     for f in report.field_rates], frozenset({5}))]
    if report.trend:
        channels = sorted({c for p in report.trend for c in p.rates})
        tables.append(Table("历次运行", ("运行编号", "时间", *channels),
                            [(p.run_id, shown_time(p.at), *(p.rates.get(c) for c in channels))
                             for p in report.trend],
                            frozenset(range(2, 2 + len(channels)))))
    return tables


def _group_table(name: str, key_header: str, groups: Sequence[GroupSummary]) -> Table:
    used = [r for r in RULE_LABELS if any(r in g.by_rule for g in groups)]
    return Table(name, (key_header, "检查事项数", "问题事项数", "合格率", "发现问题数",
                        *(RULE_LABELS[r] for r in used)),
                 [(g.label, g.items, g.items_with_findings, g.pass_rate, g.findings,
                   *(g.by_rule.get(r, 0) for r in used)) for g in groups],
                 frozenset({3}))


def _type_label(code: str | None) -> str:
    return code_label("item_type", code)
