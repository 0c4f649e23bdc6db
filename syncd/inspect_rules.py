"""The reform's rules for service guides, one small check per rule (DOMAIN.md §4).

A check is a plain function ``(item) -> Iterable[Hit]``: it says which field is
wrong and why, in Chinese, naming the values. ``RULES`` registers each check
with its stable id, Chinese label and severity; :mod:`syncd.inspect` runs them
and turns hits into findings. Adding a rule = one function + one ``Rule`` line.

The phrase lists and phone patterns are data at the top so reviewers can
extend them without reading the checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

from syncd.codes import label as code_label
from syncd.model import ITEM_FIELDS, ServiceItem, item_code_problem, uscc_problem
from syncd.normalize import is_placeholder, phone_key, text_key

# --- data ------------------------------------------------------------------------

#: Catch-all clauses (兜底条款) a guide must not use, in conditions or as a material.
#: Matched ignoring whitespace and 、，, so "法律法规规定的其他条件" matches too.
CATCH_ALL_PHRASES: tuple[str, ...] = (
    "法律、法规规定的其他条件",
    "法律、法规规定的其他材料",
    "法律法规规定的其他材料",
    "其他有关材料",
    "其他相关材料",
    "规定的其他",
)

#: Elements every guide must fill with something other than a placeholder.
REQUIRED_FIELDS: tuple[str, ...] = (
    "item_name", "item_type", "dept_name", "conditions", "legal_basis", "address",
    "office_hours", "consult_phone", "complaint_phone", "handle_type",
    "legal_time_limit", "promised_time_limit",
)

#: What counts as a dialable number once :func:`phone_key` removed separators.
PHONE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?<!\d)\(?0\d{2,3}\)?\s*\d{7,8}(?!\d)"),  # landline with area code
    re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"),               # mobile
    re.compile(r"(?<!\d)[48]00\d{7}(?!\d)"),               # 400/800 service numbers
    re.compile(r"(?<!\d)12345(?!\d)"),                     # the government hotline
)

#: Time-limit units as written in explanatory notes → limit_unit code (None: ambiguous).
NOTE_UNITS: dict[str, str | None] = {"工作日": "1", "自然日": "2", "日": None, "天": None}

ERROR, WARNING = "错误", "警告"
Severity = Literal["错误", "警告"]

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5,
              "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN = "".join(_CN_DIGITS) + "".join(_CN_UNITS)
_NOTE_LIMIT = re.compile(
    rf"(?<![\d{_CN}月第])(\d+|[{_CN}]+)\s*个?\s*({'|'.join(NOTE_UNITS)})")
_URL = re.compile(r"^https?://[^\s/?#]+\.[^\s/?#]+", re.IGNORECASE)
_REGION = re.compile(r"[1-9]\d{5}")
_SQUASH = re.compile(r"[\s、，,]")


class Hit(NamedTuple):
    """One rule broken by one item: the canonical field and a concrete message."""

    field: str
    message: str


Check = Callable[[ServiceItem], Iterable[Hit]]


@dataclass(frozen=True, slots=True)
class Rule:
    """A registered check with its stable id, Chinese label and severity."""

    id: str
    label: str
    severity: Severity
    check: Check


# --- helpers ---------------------------------------------------------------------

def cn_number(text: str) -> int | None:
    """``二十`` → 20, ``十五`` → 15, ``一百零五`` → 105, ``20`` → 20; None if not a number."""
    if text.isdigit():
        return int(text)
    total, digit, prev_digit = 0, None, False
    for ch in text:
        if ch in _CN_DIGITS:
            d = _CN_DIGITS[ch]
            digit = digit * 10 + d if prev_digit and digit is not None else d
            prev_digit = True
        elif ch in _CN_UNITS:
            total += (1 if digit is None else digit) * _CN_UNITS[ch]
            digit, prev_digit = None, False
        else:
            return None
    return total + (digit or 0)


class StatedLimit(NamedTuple):
    days: int
    unit: str | None  # limit_unit code, None when the note says just 日/天
    text: str


def stated_limits(note: str | None) -> list[StatedLimit]:
    """Every "number + day unit" a time-limit note states, in order of appearance."""
    found = []
    for m in _NOTE_LIMIT.finditer(text_key(note)):
        days = cn_number(m.group(1))
        if days is not None:
            found.append(StatedLimit(days, NOTE_UNITS[m.group(2)], m.group(0)))
    return found


def _show_limit(days: int | None, unit: str | None) -> str:
    """``20个工作日``; just the number when the unit is not filled in."""
    return f"{days}个{code_label('limit_unit', unit)}" if unit else str(days)


def _label(field: str) -> str:
    return ITEM_FIELDS[field].label


def catch_all_phrase(text: str | None) -> str | None:
    """The longest catch-all phrase ``text`` contains, or None."""
    squashed = _SQUASH.sub("", text_key(text))
    hits = [p for p in CATCH_ALL_PHRASES if _SQUASH.sub("", p) in squashed]
    return max(hits, key=len) if hits else None


def has_phone(value: str | None) -> bool:
    key = phone_key(value)
    return any(p.search(key) for p in PHONE_PATTERNS)


# --- checks ----------------------------------------------------------------------

def required_elements(item: ServiceItem) -> Iterator[Hit]:
    for name in REQUIRED_FIELDS:
        value = getattr(item, name)
        if is_placeholder(value):
            shown = "为空" if value is None or not str(value).strip() else f"为占位符“{value}”"
            yield Hit(name, f"{_label(name)}{shown}")


def code_formats(item: ServiceItem) -> Iterator[Hit]:
    if (problem := item_code_problem(item)) is not None:
        name, why = problem
        if name == "dept_code":  # the model's wording names no values
            why += f"（{item.dept_code} ≠ {item.item_code[:18]}）"
        yield Hit(name, why)
    if not is_placeholder(item.dept_code) and (why := uscc_problem(item.dept_code or "")):
        yield Hit("dept_code", f"实施主体编码 {item.dept_code}：{why}")
    if not is_placeholder(item.region_code) and not _REGION.fullmatch(item.region_code or ""):
        yield Hit("region_code", f"行政区划代码“{item.region_code}”应为6位数字且首位不为0")


def promise_within_legal(item: ServiceItem) -> Iterator[Hit]:
    legal, promised = item.legal_time_limit, item.promised_time_limit
    if legal is None or promised is None or _units_differ(item):
        return
    if promised > legal:
        yield Hit("promised_time_limit",
                  f"承诺办结时限 {_show_limit(promised, item.promised_limit_unit)} 超过"
                  f"法定办结时限 {_show_limit(legal, item.legal_limit_unit)}")


def _units_differ(item: ServiceItem) -> bool:
    units = (item.legal_limit_unit, item.promised_limit_unit)
    return None not in units and units[0] != units[1]


def same_limit_unit(item: ServiceItem) -> Iterator[Hit]:
    if item.legal_time_limit is not None and item.promised_time_limit is not None \
            and _units_differ(item):
        yield Hit("promised_limit_unit",
                  f"承诺时限单位“{code_label('limit_unit', item.promised_limit_unit)}”与"
                  f"法定时限单位“{code_label('limit_unit', item.legal_limit_unit)}”不一致")


def limits_match_notes(item: ServiceItem) -> Iterator[Hit]:
    for limit, unit, note in (("legal_time_limit", "legal_limit_unit", "legal_limit_note"),
                              ("promised_time_limit", "promised_limit_unit",
                               "promised_limit_note")):
        days, code = getattr(item, limit), getattr(item, unit)
        stated = stated_limits(getattr(item, note))
        if days is None or not stated:
            continue
        if any(s.days == days and (s.unit is None or code is None or s.unit == code)
               for s in stated):
            continue
        yield Hit(limit, f"{_label(limit)}为 {_show_limit(days, code)}，"
                         f"但{_label(note)}写的是“{stated[0].text}”")


def handle_type_limit(item: ServiceItem) -> Iterator[Hit]:
    promised = item.promised_time_limit
    if promised is None:
        return
    shown = _show_limit(promised, item.promised_limit_unit)
    if item.handle_type == "1" and promised > 1:
        yield Hit("promised_time_limit", f"即办件承诺时限应不超过1天，实为 {shown}")
    elif item.handle_type == "2" and promised <= 0:
        yield Hit("promised_time_limit", f"承诺件承诺时限应大于0，实为 {shown}")


def run_at_most_once(item: ServiceItem) -> Iterator[Hit]:
    if item.visit_count is not None and item.visit_count > 1:
        yield Hit("visit_count", f"到办事现场次数为 {item.visit_count} 次，未实现“最多跑一次”")


def visit_reason_given(item: ServiceItem) -> Iterator[Hit]:
    if (item.visit_count or 0) >= 1 and is_placeholder(item.visit_reason):
        yield Hit("visit_reason",
                  f"到办事现场次数为 {item.visit_count} 次，但未说明必须现场办理的原因")


def online_elements(item: ServiceItem) -> Iterator[Hit]:
    if "2" not in item.handle_modes:
        return
    if is_placeholder(item.online_depth):
        yield Hit("online_depth", "办理形式含网上办理，但未填写网办深度")
    if is_placeholder(item.online_url):
        yield Hit("online_url", "办理形式含网上办理，但未填写网上办理地址")
    elif not _URL.match(text_key(item.online_url)):
        yield Hit("online_url", f"网上办理地址“{item.online_url}”不是有效的 http(s) 地址")


def materials_have_basis(item: ServiceItem) -> Iterator[Hit]:
    for m in item.materials:
        if m.necessity == "1" and is_placeholder(m.legal_basis):
            yield Hit("materials", f"必要材料“{m.name}”无设定依据，建议取消")


def no_catch_all(item: ServiceItem) -> Iterator[Hit]:
    if (phrase := catch_all_phrase(item.conditions)) is not None:
        yield Hit("conditions", f"受理条件含兜底表述“{phrase}”")
    for m in item.materials:
        if (phrase := catch_all_phrase(m.name)) is not None:
            yield Hit("materials", f"申请材料“{m.name}”为兜底表述“{phrase}”")


def phones_dialable(item: ServiceItem) -> Iterator[Hit]:
    for name in ("consult_phone", "complaint_phone"):
        value = getattr(item, name)
        if not is_placeholder(value) and not has_phone(value):
            yield Hit(name, f"{_label(name)}“{value}”中没有可拨打的电话号码"
                            "（应为带区号的固定电话、手机号或12345）")


def fee_flag_matches(item: ServiceItem) -> Iterator[Hit]:
    names = "、".join(f.name for f in item.fees)
    if item.charged is True and not item.fees:
        yield Hit("fees", "标注为收费，但未列出收费项目")
    elif item.charged is False and item.fees:
        yield Hit("charged", f"标注为不收费，但列有收费项目：{names}")
    elif item.charged is None and item.fees:
        yield Hit("charged", f"未标注是否收费，但列有收费项目：{names}")


def fees_complete(item: ServiceItem) -> Iterator[Hit]:
    for fee in item.fees:
        missing = [what for what, value in (("收费标准", fee.standard),
                                            ("收费依据", fee.legal_basis))
                   if is_placeholder(value)]
        if missing:
            yield Hit("fees", f"收费项目“{fee.name}”缺少{'、'.join(missing)}")


def promise_cut(ratio: float) -> Check:
    """The provincial threshold: promised ≤ legal × (1 − ratio), same unit."""
    def check(item: ServiceItem) -> Iterator[Hit]:
        legal, promised = item.legal_time_limit, item.promised_time_limit
        if not legal or promised is None or promised > legal or _units_differ(item):
            return  # nothing to cut, or already reported by another rule
        if promised > legal * (1 - ratio) + 1e-9:
            cut = 1 - promised / legal
            yield Hit("promised_time_limit",
                      f"承诺办结时限 {_show_limit(promised, item.promised_limit_unit)} 较法定"
                      f"{_show_limit(legal, item.legal_limit_unit)}压缩 {cut:.0%}，"
                      f"低于要求的 {ratio:.0%}")
    return check


# --- registry --------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    Rule("required_missing", "必备要素缺失", ERROR, required_elements),
    Rule("code_invalid", "编码不规范", ERROR, code_formats),
    Rule("promise_exceeds_legal", "承诺时限超过法定时限", ERROR, promise_within_legal),
    Rule("limit_unit_mismatch", "承诺与法定时限单位不一致", ERROR, same_limit_unit),
    Rule("limit_note_mismatch", "时限与说明不一致", ERROR, limits_match_notes),
    Rule("handle_type_limit", "办件类型与承诺时限不符", ERROR, handle_type_limit),
    Rule("visits_exceed_one", "到现场次数超过一次", WARNING, run_at_most_once),
    Rule("visit_reason_missing", "缺少必须现场办理原因", ERROR, visit_reason_given),
    Rule("online_incomplete", "网上办理要素不全", ERROR, online_elements),
    Rule("material_without_basis", "必要材料无设定依据（建议取消）", ERROR, materials_have_basis),
    Rule("catch_all_clause", "含兜底条款", ERROR, no_catch_all),
    Rule("phone_invalid", "电话号码格式不正确", ERROR, phones_dialable),
    Rule("fee_flag_mismatch", "是否收费与收费项目不符", ERROR, fee_flag_matches),
    Rule("fee_incomplete", "收费项目缺少标准或依据", ERROR, fees_complete),
)

PROMISE_CUT_ID, PROMISE_CUT_LABEL = "promise_cut_insufficient", "承诺时限压缩比例不足"


def promise_cut_rule(ratio: float) -> Rule:
    """The optional per-province rule, built for one threshold (0 < ratio < 1)."""
    return Rule(PROMISE_CUT_ID, PROMISE_CUT_LABEL, WARNING, promise_cut(ratio))
