"""HTML report: one self-contained file (inline CSS, server-side SVG charts, no script).

Jinja2 renders ``templates/report.html.j2`` with autoescaping on, so item
names and values, however hostile, arrive as text. Charts are computed here
as plain geometry (numbers and labels) and drawn by template macros, so no
markup is ever assembled from data in Python. A Content-Security-Policy meta
tag forbids scripts and remote loads in case a viewer ignores the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from syncd.inspect import RULE_LABELS
from syncd.report.data import REPORT_KIND_LABELS, WHOLE_ITEM, ReportData, shown_time

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: rows of a detail table shown in the page; the XLSX/CSV/JSON reports hold all of them
HTML_MAX_ROWS = 2000
TOP_FIELDS = 10
PALETTE = ("#2f6fb3", "#d9822b", "#3c9a5f", "#b33f40", "#7d5ba6", "#8c6d31", "#c2589b", "#5a6e7f")

_LABEL_W, _BAR_W, _ROW_H, _VALUE_W = 190, 340, 24, 90


@dataclass(frozen=True, slots=True)
class Bar:
    label: str       # shown (possibly shortened)
    full_label: str  # in the tooltip
    y: float
    width: float
    value_text: str
    color: str


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    width: int
    height: int
    label_width: int
    bars: tuple[Bar, ...]


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    color: str
    points: str                                  # "x,y x,y …" for <polyline>
    dots: tuple[tuple[float, float, str], ...]   # x, y, tooltip


@dataclass(frozen=True, slots=True)
class LineChart:
    title: str
    width: int
    height: int
    left: int
    top: int
    plot_w: int
    plot_h: int
    series: tuple[Series, ...]
    x_ticks: tuple[tuple[float, str], ...]
    y_ticks: tuple[tuple[float, str], ...]


def _short(text: str, limit: int = 14) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def bar_chart(title: str, rows: Sequence[tuple[str, float, str]], *,
              max_value: float | None = None) -> BarChart:
    """Horizontal bars: rows of (label, value, value as shown)."""
    top = max_value if max_value is not None else max((v for _, v, _ in rows), default=0)
    bars = tuple(Bar(_short(label), label, 8 + i * _ROW_H,
                     round(_BAR_W * value / top, 1) if top else 0.0, text,
                     PALETTE[i % len(PALETTE)] if max_value is None else PALETTE[0])
                 for i, (label, value, text) in enumerate(rows))
    return BarChart(title, _LABEL_W + _BAR_W + _VALUE_W, 16 + len(rows) * _ROW_H,
                    _LABEL_W, bars)


def line_chart(title: str, points: Sequence[tuple[str, dict[str, float]]]) -> LineChart:
    """Rates (0..1) per channel over runs: points of (x label, {channel: rate})."""
    left, top, plot_w, plot_h = 46, 12, 480, 160
    channels = sorted({c for _, rates in points for c in rates})
    step = plot_w / (len(points) - 1) if len(points) > 1 else 0

    def xy(i: int, rate: float) -> tuple[float, float]:
        x = left + (i * step if len(points) > 1 else plot_w / 2)
        return round(x, 1), round(top + plot_h * (1 - rate), 1)

    series = []
    for n, channel in enumerate(channels):
        dots = tuple((*xy(i, rates[channel]), f"{channel} {label}：{rates[channel]:.1%}")
                     for i, (label, rates) in enumerate(points) if channel in rates)
        series.append(Series(channel, PALETTE[n % len(PALETTE)],
                             " ".join(f"{x},{y}" for x, y, _ in dots), dots))
    every = max(1, len(points) // 6)
    x_ticks = tuple((xy(i, 0)[0], label) for i, (label, _) in enumerate(points)
                    if i % every == 0 or i == len(points) - 1)
    y_ticks = tuple((xy(0, r)[1], f"{r:.0%}") for r in (0, 0.25, 0.5, 0.75, 1))
    return LineChart(title, left + plot_w + 150, top + plot_h + 40, left, top, plot_w, plot_h,
                     tuple(series), x_ticks, y_ticks)


def charts(report: ReportData) -> list[BarChart | LineChart]:
    """The charts of a report, in page order."""
    if report.kind == "inspect":
        by_rule = Counter(f.rule for f in report.findings)
        worst = sorted(report.by_dept, key=lambda g: (g.pass_rate, g.key))[:TOP_FIELDS]
        return [bar_chart("各规则发现问题数",
                          [(RULE_LABELS.get(r, r), n, str(n)) for r, n in by_rule.most_common()]),
                bar_chart("合格率最低的实施主体",
                          [(g.label, g.pass_rate, f"{g.pass_rate:.1%}") for g in worst],
                          max_value=1.0)]
    result: list[BarChart | LineChart] = [bar_chart(
        "各渠道一致率", [(c.channel, c.rate, f"{c.rate:.1%}") for c in report.channel_rates],
        max_value=1.0)]
    if report.field_rates:
        fields = [(f.field_label, f.differing) for f in report.field_rates if f.differing]
    else:
        counted = Counter(d.field_label or d.field or WHOLE_ITEM for d in report.diffs)
        fields = list(counted.items())
    fields = sorted(fields, key=lambda kv: -kv[1])[:TOP_FIELDS]
    result.append(bar_chart("差异最多的字段（前10）", [(k, n, str(n)) for k, n in fields]))
    if report.trend:
        result.append(line_chart("一致率趋势", [(shown_time(p.at)[5:16], p.rates)
                                               for p in sorted(report.trend, key=lambda p: p.at)]))
    return result


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: "" if v is None else f"{v:.1%}"
    env.filters["shown_time"] = shown_time
    env.filters["blank"] = lambda v: "" if v is None else v
    return env


def render(report: ReportData) -> str:
    """The report page as one HTML string."""
    rows = report.findings if report.kind == "inspect" else report.diffs
    return _environment().get_template("report.html.j2").render(
        r=report, kind_label=REPORT_KIND_LABELS[report.kind], charts=charts(report),
        rows=rows[:HTML_MAX_ROWS], total_rows=len(rows), rule_labels=RULE_LABELS,
        whole_item=WHOLE_ITEM)


def write(report: ReportData, path: Path) -> None:
    path.write_text(render(report), encoding="utf-8")
