"""Inspection: service guides checked against the "run once" reform's rules.

``inspect_item`` runs every rule of :mod:`syncd.inspect_rules` on one item and
returns findings a reviewer can act on (who, which rule, which field, what is
wrong, with the values). ``summarize`` counts them per department and per
item type for the report's summary tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from syncd.codes import label as code_label
from syncd.inspect_rules import (
    PROMISE_CUT_ID,
    PROMISE_CUT_LABEL,
    RULES,
    Rule,
    Severity,
    promise_cut_rule,
)
from syncd.model import CHILDREN, ITEM_FIELDS, ServiceItem
from syncd.normalize import text_key

#: rule id → Chinese label, in report order (the optional threshold rule last).
RULE_LABELS: dict[str, str] = {r.id: r.label for r in RULES} | {PROMISE_CUT_ID: PROMISE_CUT_LABEL}

#: shown for an item whose department or type is not filled in
UNFILLED = "（未填写）"


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule one item breaks, worded for the reviewer.

    ``rule`` is a stable machine id (see ``RULE_LABELS``); ``field`` the
    canonical field name (``materials``/``fees`` for child rows); ``message``
    names the offending values.
    """

    item_code: str
    item_name: str | None
    dept_name: str | None
    item_type: str | None
    rule: str
    rule_label: str
    field: str
    field_label: str
    severity: Severity
    message: str


def field_label(name: str) -> str:
    """The Chinese label of a canonical field or child collection."""
    if name in ITEM_FIELDS:
        return ITEM_FIELDS[name].label
    if name in CHILDREN:
        return CHILDREN[name][2]
    return name


def rules_for(promise_cut_ratio: float | None = None) -> list[Rule]:
    """The rules to run: all standard ones, plus the province's cut threshold if given."""
    rules = list(RULES)
    if promise_cut_ratio is not None:
        if not 0 < promise_cut_ratio < 1:
            raise ValueError(f"promise_cut_ratio must be between 0 and 1, got {promise_cut_ratio}")
        rules.append(promise_cut_rule(promise_cut_ratio))
    return rules


def inspect_item(item: ServiceItem, *, promise_cut_ratio: float | None = None) -> list[Finding]:
    """Every finding for ``item``, in rule order.

    Args:
        promise_cut_ratio: the province's required cut of the promised limit
            against the legal one (0.6 = promised ≤ 40 % of legal); None = no such rule.
    """
    return _run(item, rules_for(promise_cut_ratio))


def inspect_items(items: Iterable[ServiceItem], *,
                  promise_cut_ratio: float | None = None) -> list[Finding]:
    """Findings for many items, item by item."""
    rules = rules_for(promise_cut_ratio)
    return [f for item in items for f in _run(item, rules)]


def _run(item: ServiceItem, rules: Sequence[Rule]) -> list[Finding]:
    return [Finding(item.item_code, item.item_name, item.dept_name, item.item_type,
                    rule.id, rule.label, hit.field, field_label(hit.field), rule.severity,
                    hit.message)
            for rule in rules for hit in rule.check(item)]


# --- summaries ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GroupSummary:
    """Counts for one department or one item type."""

    key: str                  # department name, or item type code
    label: str                # what the reviewer reads (type label for item types)
    items: int                # items inspected
    items_with_findings: int
    by_rule: dict[str, int] = field(default_factory=dict)  # rule id → findings, rule order

    @property
    def findings(self) -> int:
        return sum(self.by_rule.values())

    @property
    def pass_rate(self) -> float:
        """Share of items without findings (1.0 for an empty group)."""
        return 1 - self.items_with_findings / self.items if self.items else 1.0


@dataclass(frozen=True, slots=True)
class InspectSummary:
    by_dept: tuple[GroupSummary, ...]
    by_type: tuple[GroupSummary, ...]


def _dept_key(name: str | None) -> str:
    return text_key(name) or UNFILLED


def _type_key(code: str | None) -> str:
    return code or UNFILLED


def _type_label(key: str) -> str:
    return key if key == UNFILLED else code_label("item_type", key)


def summarize(findings: Iterable[Finding], items: Iterable[ServiceItem]) -> InspectSummary:
    """Items inspected, items with findings and findings by rule, per department and type.

    Groups are keyed on the normalised department name and the item type code,
    sorted by key; a finding for an item not in ``items`` still counts.
    """
    items_by = {"dept": Counter[str](), "type": Counter[str]()}
    for item in items:
        items_by["dept"][_dept_key(item.dept_name)] += 1
        items_by["type"][_type_key(item.item_type)] += 1
    flagged: dict[str, dict[str, set[str]]] = {"dept": {}, "type": {}}
    rules: dict[str, dict[str, Counter[str]]] = {"dept": {}, "type": {}}
    for f in findings:
        for dim, key in (("dept", _dept_key(f.dept_name)), ("type", _type_key(f.item_type))):
            flagged[dim].setdefault(key, set()).add(f.item_code)
            rules[dim].setdefault(key, Counter())[f.rule] += 1

    def groups(dim: str, label: Callable[[str], str]) -> tuple[GroupSummary, ...]:
        keys = sorted(set(items_by[dim]) | set(flagged[dim]))
        order = list(RULE_LABELS)
        return tuple(GroupSummary(
            k, label(k), items_by[dim][k], len(flagged[dim].get(k, ())),
            dict(sorted(rules[dim].get(k, Counter()).items(),
                        key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))))
            for k in keys)

    return InspectSummary(groups("dept", lambda k: k), groups("type", _type_label))
