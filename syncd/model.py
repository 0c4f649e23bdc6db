"""The canonical model every channel maps to and from: ``ServiceItem`` and its children.

One hub, N mappings: a channel never maps to another channel, only to this.
Field metadata (Chinese label, kind, code table, length, required) lives in
``ITEM_FIELDS``/``MATERIAL_FIELDS``/``FEE_FIELDS`` so that validation, hashing,
mappings and reports all read the same definition.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial
from operator import attrgetter
from typing import Any, Literal

import orjson

from syncd.codes import load_code_tables
from syncd.errors import ValidationError
from syncd.normalize import is_placeholder, phone_key, text_key

Kind = Literal["text", "phone", "code", "codes", "int", "bool", "datetime"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What one canonical field is: its label for reviewers and the rules it obeys."""

    name: str
    label: str
    kind: Kind = "text"
    table: str | None = None
    max_len: int | None = None
    required: bool = False
    content: bool = True  # part of the content hash (metadata such as version is not)


@dataclass(frozen=True, slots=True)
class Material:
    """申请材料: one required or optional document of an item."""

    name: str
    material_type: str | None = None
    form: str | None = None
    copies: int | None = None
    necessity: str | None = None
    source: str | None = None
    legal_basis: str | None = None
    order: int | None = None


@dataclass(frozen=True, slots=True)
class Fee:
    """收费项目: one fee of an item, with its standard and legal basis."""

    name: str
    standard: str | None = None
    legal_basis: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceItem:
    """政务服务事项 (implementation list entry / 办事指南), keyed by ``item_code``."""

    item_code: str
    item_name: str | None = None
    item_type: str | None = None
    dept_name: str | None = None
    status: str | None = None
    catalog_code: str | None = None
    dept_code: str | None = None
    region_code: str | None = None
    exercise_level: str | None = None
    service_objects: tuple[str, ...] = ()
    handle_type: str | None = None
    legal_time_limit: int | None = None
    legal_limit_unit: str | None = None
    legal_limit_note: str | None = None
    promised_time_limit: int | None = None
    promised_limit_unit: str | None = None
    promised_limit_note: str | None = None
    visit_count: int | None = None
    visit_reason: str | None = None
    handle_modes: tuple[str, ...] = ()
    online_url: str | None = None
    online_depth: str | None = None
    charged: bool | None = None
    conditions: str | None = None
    process: str | None = None
    address: str | None = None
    office_hours: str | None = None
    consult_phone: str | None = None
    complaint_phone: str | None = None
    legal_basis: str | None = None
    version: int | None = None
    updated_at: datetime | None = None
    materials: tuple[Material, ...] = field(default=())
    fees: tuple[Fee, ...] = field(default=())


#: 事项状态 取消 in the national code table: what a cancellation writes
STATUS_CANCELLED = "3"

ITEM_FIELDS: dict[str, FieldSpec] = {f.name: f for f in (
    FieldSpec("item_code", "实施编码", required=True, max_len=31),
    FieldSpec("item_name", "事项名称", required=True, max_len=200),
    FieldSpec("item_type", "事项类型", "code", "item_type", required=True),
    FieldSpec("dept_name", "实施主体", required=True, max_len=200),
    FieldSpec("status", "事项状态", "code", "status", required=True),
    FieldSpec("catalog_code", "基本编码", max_len=12),
    FieldSpec("dept_code", "实施主体编码", max_len=18),
    FieldSpec("region_code", "行政区划代码", max_len=6),
    FieldSpec("exercise_level", "行使层级", "code", "exercise_level"),
    FieldSpec("service_objects", "服务对象", "codes", "service_object"),
    FieldSpec("handle_type", "办件类型", "code", "handle_type"),
    FieldSpec("legal_time_limit", "法定办结时限", "int"),
    FieldSpec("legal_limit_unit", "法定办结时限单位", "code", "limit_unit"),
    FieldSpec("legal_limit_note", "法定办结时限说明", max_len=2000),
    FieldSpec("promised_time_limit", "承诺办结时限", "int"),
    FieldSpec("promised_limit_unit", "承诺办结时限单位", "code", "limit_unit"),
    FieldSpec("promised_limit_note", "承诺办结时限说明", max_len=2000),
    FieldSpec("visit_count", "到办事现场次数", "int"),
    FieldSpec("visit_reason", "必须现场办理原因说明", max_len=2000),
    FieldSpec("handle_modes", "办理形式", "codes", "handle_mode"),
    FieldSpec("online_url", "网上办理地址", max_len=500),
    FieldSpec("online_depth", "网办深度", "code", "online_depth"),
    FieldSpec("charged", "是否收费", "bool"),
    FieldSpec("conditions", "受理条件", max_len=4000),
    FieldSpec("process", "办理流程", max_len=4000),
    FieldSpec("address", "办理地点", max_len=500),
    FieldSpec("office_hours", "办理时间", max_len=500),
    FieldSpec("consult_phone", "咨询电话", "phone", max_len=200),
    FieldSpec("complaint_phone", "监督投诉电话", "phone", max_len=200),
    FieldSpec("legal_basis", "设定依据", max_len=4000),
    FieldSpec("version", "版本", "int", content=False),
    FieldSpec("updated_at", "更新时间", "datetime", content=False),
)}

MATERIAL_FIELDS: dict[str, FieldSpec] = {f.name: f for f in (
    FieldSpec("name", "材料名称", required=True, max_len=200),
    FieldSpec("material_type", "材料类型", "code", "material_type"),
    FieldSpec("form", "材料形式", "code", "material_form"),
    FieldSpec("copies", "份数", "int"),
    FieldSpec("necessity", "材料必要性", "code", "necessity"),
    FieldSpec("source", "来源渠道", "code", "material_source"),
    FieldSpec("legal_basis", "材料依据", max_len=2000),
    FieldSpec("order", "序号", "int", content=False),
)}

FEE_FIELDS: dict[str, FieldSpec] = {f.name: f for f in (
    FieldSpec("name", "收费项目名称", required=True, max_len=200),
    FieldSpec("standard", "收费标准", max_len=1000),
    FieldSpec("legal_basis", "收费依据", max_len=2000),
)}

#: Child collections: canonical attribute → (row class, its fields, Chinese label).
CHILDREN: dict[str, tuple[type, dict[str, FieldSpec], str]] = {
    "materials": (Material, MATERIAL_FIELDS, "申请材料"),
    "fees": (Fee, FEE_FIELDS, "收费项目"),
}

#: how many distinct children (or child rows) are remembered, per collection and use
CHILD_MEMORY = 1 << 13
_child_memory = CHILD_MEMORY
#: the sizes asked for by the :func:`children_remembered` blocks running now (threads of
#: the daemon may run two reconciles at once, and end them in any order)
_asked: list[int] = []
_asking = threading.Lock()


def child_memory() -> int:
    """How many distinct children (or child rows) each memory of them keeps in this
    process now: :data:`CHILD_MEMORY`, unless :func:`children_remembered` says fewer.
    Read when a memory is about to grow, so a memory over it empties then."""
    return _child_memory


@contextmanager
def children_remembered(size: int) -> Iterator[None]:
    """Each memory of children keeps at most ``size`` of them meanwhile.

    Memories are sized for a stream of items, where the same children recur on item
    after item. A process that reads only the few items it compares again (each channel
    streamed by a reader process of its own) would fill them with children it seldom
    meets again, tens of megabytes at a million items. Process-wide: memories used by
    other work in this process meanwhile keep fewer too (slower, not wrong). Blocks
    that overlap get the smallest size any of them asked for, until the last ends."""
    global _child_memory
    with _asking:
        _asked.append(size)
        _child_memory = min(_asked)
    try:
        yield
    finally:
        with _asking:
            _asked.remove(size)
            _child_memory = min(_asked, default=CHILD_MEMORY)


def remembered(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn`` of a child object, remembered by the object's identity.

    Children are frozen, and the same ones (身份证, 营业执照 … with the same basis)
    recur on item after item as the very same object (a mapping remembers the rows
    it has read): validation, the content hash and writers call such a function for
    every child of every item. Keyed by identity, a call costs a dict lookup, where
    ``lru_cache`` would hash and compare every field of the child each time; an
    equal child that is another object is computed again, to the same result. The
    child is kept with its result, so its id cannot be reused while remembered.
    """
    memory: dict[int, tuple[Any, Any]] = {}

    def call(obj: Any) -> Any:
        try:
            return memory[id(obj)][1]
        except KeyError:
            pass
        result = fn(obj)
        if len(memory) >= _child_memory:
            memory.clear()
        memory[id(obj)] = (obj, result)
        return result

    return call


# --- code checks -------------------------------------------------------------

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


@lru_cache(maxsize=1 << 12)  # a city has few departments: their codes repeat on every item
def uscc_check_char(first17: str) -> str:
    """GB 32100 check character for the first 17 characters of a credit code."""
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def uscc_problem(code: str) -> str | None:
    """Why ``code`` is not a valid unified social credit code, or None."""
    if len(code) != 18:
        return f"统一社会信用代码应为18位，实为{len(code)}位"
    bad = [c for c in code if c not in _USCC_CHARS]
    if bad:
        return f"统一社会信用代码含非法字符 {bad[0]!r}"
    if uscc_check_char(code[:17]) != code[17]:
        return f"统一社会信用代码校验位错误（应为 {uscc_check_char(code[:17])}）"
    return None


def item_code_problem(item: ServiceItem) -> tuple[str, str] | None:
    """(field, reason) when the 31-character 实施编码 does not hold together, else None."""
    code = item.item_code
    if len(code) != 31:
        return "item_code", f"实施编码应为31位，实为{len(code)}位"
    if (why := uscc_problem(code[:18])) is not None:
        return "item_code", f"实施编码前18位：{why}"
    if code[18] not in load_code_tables()["exercise_level"]:
        return "item_code", f"实施编码第19位行使层级 {code[18]!r} 不在代码表中"
    if not code[19:].isdigit():
        return "item_code", "实施编码后12位基本编码应为数字"
    if item.catalog_code and item.catalog_code != code[19:]:
        return "catalog_code", f"基本编码 {item.catalog_code} 与实施编码后12位 {code[19:]} 不一致"
    if item.dept_code and item.dept_code != code[:18]:
        return "dept_code", "实施主体编码与实施编码前18位不一致"
    if item.exercise_level and item.exercise_level != code[18]:
        return "exercise_level", f"行使层级 {item.exercise_level} 与实施编码第19位 {code[18]} 不一致"
    return None


# --- validation --------------------------------------------------------------

_MISSING = "必填项缺失或为占位符"
Check = Callable[[Any], "str | None"]


def _checker(spec: FieldSpec, tables: dict[str, dict[str, str]]) -> Check:
    """Why a present value (not None, not empty) breaks ``spec``, or None; specialised
    once per field, since validation runs on every item of every run."""
    required, max_len = spec.required, spec.max_len
    table = tables[spec.table or ""] if spec.kind in ("code", "codes") else {}

    if spec.kind in ("text", "phone"):
        def check(value: Any) -> str | None:
            if required and is_placeholder(value):
                return _MISSING
            if "\x00" in value:
                return "含 NUL 字符"
            if max_len is not None and len(value) > max_len:
                return f"长度 {len(value)} 超过上限 {max_len}"
            return None
    elif spec.kind == "code":
        def check(value: Any) -> str | None:
            return None if value in table else f"代码 {value!r} 不在代码表 {spec.table} 中"
    elif spec.kind == "codes":
        def check(value: Any) -> str | None:
            bad = next((c for c in value if c not in table), None)
            return None if bad is None else f"代码 {bad!r} 不在代码表 {spec.table} 中"
    elif spec.kind == "int":
        def check(value: Any) -> str | None:
            return f"不能为负数（{value}）" if value < 0 else None
    else:
        def check(value: Any) -> str | None:
            return _MISSING if required and is_placeholder(value) else None
    return check


Checks = tuple[tuple[str, bool, Check], ...]


Problem = Callable[[Any], "tuple[str, str] | None"]


@lru_cache(maxsize=1)
def _checks() -> tuple[Checks, tuple[tuple[str, Problem], ...]]:
    """(item field checks, (child attr, a child's first problem) …), built once."""
    tables = load_code_tables()

    def plan(specs: dict[str, FieldSpec]) -> Checks:
        return tuple((s.name, s.required, _checker(s, tables)) for s in specs.values())

    return plan(ITEM_FIELDS), tuple((attr, remembered(partial(_first_problem, checks=plan(specs))))
                                    for attr, (_cls, specs, _label) in CHILDREN.items())


def _first_problem(obj: Any, checks: Checks) -> tuple[str, str] | None:
    """(field, reason) of the first field of ``obj`` that breaks its check, or None."""
    for name, required, check in checks:
        value = getattr(obj, name)
        if not value and (value is None or value == ()):  # most values are not empty
            if required:
                return name, _MISSING
        elif (why := check(value)) is not None:
            return name, why
    return None


def validate(item: ServiceItem) -> None:
    """Check ``item`` against the canonical model's rules.

    Raises:
        ValidationError: naming the first offending field (children as
            ``materials[2].name``) and the rule it breaks, in Chinese.
    """
    item_checks, child_checks = _checks()
    if (problem := _first_problem(item, item_checks)) is not None:
        raise ValidationError(problem[1], field=problem[0], item_code=item.item_code)
    for attr, problem_of in child_checks:
        for i, child in enumerate(getattr(item, attr)):
            if (problem := problem_of(child)) is not None:
                raise ValidationError(problem[1], field=f"{attr}[{i}].{problem[0]}",
                                      item_code=item.item_code)
    for limit, unit in (("legal_time_limit", "legal_limit_unit"),
                        ("promised_time_limit", "promised_limit_unit")):
        if getattr(item, limit) is not None and getattr(item, unit) is None:
            raise ValidationError("时限缺少单位（工作日/自然日）", field=unit,
                                  item_code=item.item_code)
    if (problem := item_code_problem(item)) is not None:
        raise ValidationError(problem[1], field=problem[0], item_code=item.item_code)


# --- comparison keys and the content hash ------------------------------------

def _sorted_codes(value: tuple[str, ...]) -> list[str]:
    return sorted(set(value))


#: field kind → its comparison key function (kinds not listed compare as they are)
_KEYS: dict[str, Callable[[Any], Any]] = {"text": text_key, "phone": phone_key,
                                          "codes": _sorted_codes}


def field_key(spec: FieldSpec, value: Any) -> Any:
    """The normalised comparison key of one field value."""
    fn = _KEYS.get(spec.kind)
    return fn(value) if fn else value


@dataclass(frozen=True, slots=True)
class _ViewPlan:
    """The compared fields of one class: their values taken in one ``attrgetter`` call,
    and the comparison key applied only where the kind has one (text, phones, codes)."""

    names: tuple[str, ...]
    values: Callable[[Any], tuple[Any, ...]]
    keyed: tuple[tuple[int, Callable[[Any], Any]], ...]

    def view(self, obj: Any) -> dict[str, Any]:
        values = self.values(obj)
        if self.keyed:
            values = list(values)  # type: ignore[assignment]
            for i, fn in self.keyed:
                values[i] = fn(values[i])  # type: ignore[index]
        return dict(zip(self.names, values, strict=True))


def attributes(names: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The named attributes of an object as a tuple, in one ``attrgetter`` call (which by
    itself gives a bare value for one name, and refuses none)."""
    if not names:
        return lambda _obj: ()
    getter = attrgetter(*names)
    return getter if len(names) > 1 else lambda obj: (getter(obj),)


def _view_plan(specs: dict[str, FieldSpec]) -> _ViewPlan:
    compared = [s for s in specs.values() if s.content]
    names = tuple(s.name for s in compared)
    return _ViewPlan(names, attributes(names),
                     tuple((i, fn) for i, s in enumerate(compared)
                           if (fn := _KEYS.get(s.kind)) is not None))


_ITEM_VIEW = _view_plan(ITEM_FIELDS)
_CHILD_VIEWS = tuple((attr, _view_plan(specs)) for attr, (_cls, specs, _label) in CHILDREN.items())


def _row_order(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


def comparison_view(item: ServiceItem) -> dict[str, Any]:
    """The item as compared across channels: normalised, children in a stable order."""
    view = _ITEM_VIEW.view(item)
    for attr, plan in _CHILD_VIEWS:
        rows = [plan.view(child) for child in getattr(item, attr)]
        view[attr] = sorted(rows, key=_row_order) if len(rows) > 1 else rows
    return view


def kept_json(obj: Any, option: int = 0) -> bytes:
    """``orjson.dumps(obj)`` to keep for long (in a cache): an exact-size copy, since what
    orjson returns holds on to its whole write buffer (about 4 KB, whatever the length),
    which in a cache of thousands of children comes to tens of megabytes."""
    return bytes(memoryview(orjson.dumps(obj, option=option)))


def _child_json(plan: _ViewPlan) -> Callable[[Any], bytes]:
    """A child's compared view as JSON, remembered: the content hash embeds it as is."""
    return remembered(lambda child: kept_json(plan.view(child), orjson.OPT_SORT_KEYS))


_CHILD_JSON = {attr: _child_json(plan) for attr, plan in _CHILD_VIEWS}


def children_json(attr: str, children: Sequence[Any]) -> list[bytes]:
    """A child collection as compared: each child's normalised view as sorted-key JSON,
    in a stable order (what the content hash embeds, and what reconcile compares)."""
    json_of = _CHILD_JSON[attr]
    return sorted(json_of(child) for child in children)


#: the item's view with its fields in name order, the hashed view's keys (its fields
#: and child collections, sorted) and where each child collection goes among them
_HASH_VIEW = _view_plan(dict(sorted(ITEM_FIELDS.items())))
_HASHED = sorted([*_HASH_VIEW.names, *_CHILD_JSON])
_CHILD_AT = tuple((_HASHED.index(attr), attr) for attr in sorted(_CHILD_JSON, key=_HASHED.index))


def content_hash(item: ServiceItem) -> str:
    """Stable hash of the normalised item: the unit of change detection.

    It hashes ``comparison_view(item)`` as sorted-key JSON; each child's part is
    serialised once and embedded as it is (``orjson.Fragment``), sorted as
    ``comparison_view`` sorts the rows, so the bytes are the same. The keys are put
    in sorted order here, where orjson would sort them again for every item (a third
    of its time)."""
    values = list(_HASH_VIEW.values(item))
    for i, fn in _HASH_VIEW.keyed:
        values[i] = fn(values[i])
    for at, attr in _CHILD_AT:  # in ascending order: each goes where it belongs
        values.insert(at, [orjson.Fragment(part)
                           for part in children_json(attr, getattr(item, attr))])
    blob = orjson.dumps(dict(zip(_HASHED, values, strict=True)))
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


# --- plain-data form (outbox payloads for operators to read, JSON reports) ----

def to_data(item: ServiceItem) -> dict[str, Any]:
    """The item as JSON-ready plain data."""
    data = dataclasses.asdict(item)
    if item.updated_at is not None:
        data["updated_at"] = item.updated_at.isoformat()
    return data
