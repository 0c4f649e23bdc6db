"""Reports from live channels: reconcile them (and keep the run for the trend), or inspect one.

The CLI and scheduled report jobs call these; the writers in this package
turn the ``ReportData`` into files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from syncd.channel_reader import Opener
from syncd.config import Config
from syncd.engine import warn_without_statistics
from syncd.errors import ConfigError, MappingError
from syncd.inspect import field_label, inspect_item, rules_for
from syncd.item_stream import unreadable
from syncd.mapping import Mapping
from syncd.model import ServiceItem
from syncd.reconcile import ReconcileResult, reconcile
from syncd.report.data import (
    DIFF_KIND_LABELS,
    ChannelRate,
    FieldRate,
    ReportData,
    SummaryRow,
    TrendPoint,
    inspect_report,
)
from syncd.state.store import StateStore

PAGE = 1000
log = structlog.get_logger(__name__)


def check_channels(config: Config, names: Sequence[str], reference: str) -> None:
    """Fail with one clear line when a named channel is not configured."""
    for name in [*names, reference]:
        if name not in config.channels:
            raise ConfigError(f"no channel named {name!r} (known: {', '.join(config.channels)})",
                              file=config.file, key="--channels")
    if reference not in names:
        raise ConfigError(f"the reference channel {reference!r} must be one of --channels",
                          file=config.file, key="--reference")
    if len(set(names)) < 2:
        raise ConfigError("reconcile needs at least two channels", key="--channels")


def openers(config: Config, names: Sequence[str]) -> dict[str, Opener]:
    """How to open each named channel, here or in a reader process."""
    return {name: Opener(config.channels[name], config.retry) for name in names}


def open_channels(config: Config, names: Sequence[str]) -> dict[str, tuple[Any, Mapping]]:
    opened: dict[str, tuple[Any, Mapping]] = {}
    try:
        for name, opener in openers(config, names).items():
            opened[name] = opener()
    except BaseException:
        close_channels(opened)
        raise
    return opened


def close_channels(opened: dict[str, tuple[Any, Mapping]]) -> None:
    for connector, _ in opened.values():
        connector.close()


def reconcile_channels(config: Config, store: StateStore, names: Sequence[str], reference: str,
                       *, items: Sequence[str] | None = None,
                       workdir: Path | None = None) -> tuple[ReconcileResult, ReportData]:
    """Reconcile ``names`` against ``reference``, store the run, and build its report."""
    check_channels(config, names, reference)
    opened = open_channels(config, names)
    try:
        warn_without_statistics([(n, c) for n, (c, _m) in opened.items()], log)
        result = reconcile(opened, reference, keys=items or None, workdir=workdir, store=store,
                           openers=openers(config, names))
    finally:
        close_channels(opened)
    rates = {n: s.rate for n, s in result.stats.items()}
    store.record_reconcile(result.run_id, started_at=result.started_at,
                           channels=list(names), reference=reference, items=result.items,
                           rates=rates, diffs=result.diffs)
    trend = [TrendPoint(r["id"], r["started_at"], r["rates"]) for r in store.reconcile_trend()]
    return result, reconcile_report(result, trend)


def reconcile_report(result: ReconcileResult, trend: Sequence[TrendPoint] = ()) -> ReportData:
    """What reviewers read about one reconcile run."""
    kinds = Counter(d.kind for d in result.diffs)
    differing = {d.item_code for d in result.diffs}
    summary = [
        SummaryRow("items", "比对事项数", result.items),
        SummaryRow("items_with_differences", "存在差异事项数", len(differing)),
        SummaryRow("differences", "差异条数", result.total_diffs),
        *([SummaryRow("diffs_not_listed", "未列出的差异条数（超出上限）",
                      result.total_diffs - len(result.diffs))]
          if result.total_diffs > len(result.diffs) else []),
        *(SummaryRow(f"diff_{kind}", f"其中{label}", kinds[kind])
          for kind, label in DIFF_KIND_LABELS.items()),
        SummaryRow("unreadable", "无法读取的记录", len(result.unreadable)),
    ]
    equal, compared = Counter[str](), Counter[str]()
    for stats in result.stats.values():
        equal.update(stats.fields_equal)
        compared.update(stats.fields_compared)
    field_rates = sorted((FieldRate(f, field_label(f), equal[f], compared[f]) for f in compared),
                         key=lambda r: (-r.differing, r.field))
    return ReportData(
        "reconcile", "多渠道一致性比对报告", result.started_at, result.run_id, summary,
        channels=result.channels, reference=result.reference,
        channel_rates=[ChannelRate(n, s.consistent, s.items) for n, s in result.stats.items()],
        field_rates=field_rates, diffs=result.diffs, trend=trend)


@dataclass
class InspectOutcome:
    report: ReportData
    unreadable: list[tuple[str, str]]  # (item_code, reason): records the mapping could not read


def inspect_channel(config: Config, name: str, *, items: Sequence[str] | None = None,
                    promise_cut_ratio: float | None = None, run_id: str) -> InspectOutcome:
    """Inspect every guide a channel holds against the reform's rules."""
    if name not in config.channels:
        raise ConfigError(f"no channel named {name!r} (known: {', '.join(config.channels)})",
                          file=config.file, key="--channel")
    rules_for(promise_cut_ratio)  # a bad ratio fails before anything is read
    opened = open_channels(config, [name])
    connector, mapping = opened[name]
    guides: list[ServiceItem] = []
    findings = []
    unreadable: list[tuple[str, str]] = []
    try:
        for item, problem in _items(connector, mapping, items):
            if item is None:
                unreadable.append(problem)
                continue
            guides.append(item)
            findings.extend(inspect_item(item, promise_cut_ratio=promise_cut_ratio))
    finally:
        close_channels(opened)
    report = inspect_report(guides, findings, run_id=run_id, generated_at=datetime.now(UTC),
                            title=f"办事指南规范性检查报告（{name}）")
    return InspectOutcome(report, unreadable)


def _items(connector: Any, mapping: Mapping, keys: Sequence[str] | None
           ) -> Iterator[tuple[ServiceItem | None, tuple[str, str]]]:
    """Items as the mapping reads them; no model validation, since the rules judge the values."""
    pages = connector.scan(PAGE, keys=keys) if keys else connector.scan(PAGE)
    for page in pages:
        for record in page.records:
            try:
                yield mapping.to_item(record), ("", "")
            except MappingError as exc:
                yield None, unreadable(mapping, record, exc)
