"""The platform's rules for one ITEM: validation, normal form, content identity.

Kept apart from storage and HTTP so that the rules the simulator enforces can
be read in one place and match platform-api.md line by line.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

#: Platform time zone: UPDATE_TIME is emitted in Beijing time, as the real gateway does.
CST = timezone(timedelta(hours=8))

#: Set by the platform, never part of an item's content.
METADATA = ("TASK_VERSION", "UPDATE_TIME", "BASE_VERSION")

INT_FIELDS = ("PROMISE_DAY", "ANTICIPATE_DAY", "LIMIT_SCENE_NUM", "TASK_VERSION", "BASE_VERSION")
MATERIAL_INT_FIELDS = ("PAGE_NUM", "ORDER_NUM")
TASK_STATES = ("1", "2", "3")
NAME_MAX = 200

FieldError = dict[str, str]


def _int_problem(value: Any) -> str | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    return f"应为整数，实为 {type(value).__name__} {value!r}"


def validate(item: Any) -> list[FieldError]:
    """Field errors of one pushed ITEM (empty when it is acceptable).

    Counts and limits must be JSON integers: a string ``"20"`` is an error, as
    on the real platform, so a mapping that forgets to convert is caught.
    """
    if not isinstance(item, dict):
        return [{"field": "items", "message": "每个事项应为 JSON 对象"}]
    errors: list[FieldError] = []
    for name in ("TASK_CODE", "TASK_NAME"):
        value = item.get(name)
        if not isinstance(value, str) or not value.strip():
            errors.append({"field": name, "message": "必填项缺失"})
    name_value = item.get("TASK_NAME")
    if isinstance(name_value, str) and len(name_value) > NAME_MAX:
        errors.append({"field": "TASK_NAME", "message": f"长度 {len(name_value)} 超过 {NAME_MAX}"})
    for name in INT_FIELDS:
        if (why := _int_problem(item.get(name))) is not None:
            errors.append({"field": name, "message": why})
    state = item.get("TASK_STATE")
    if state is not None and state not in TASK_STATES:
        errors.append({"field": "TASK_STATE", "message": f"代码 {state!r} 不在 1/2/3 中"})
    for key in ("MATERIALS", "FEES"):
        rows = item.get(key)
        if rows is not None and (not isinstance(rows, list)
                                 or not all(isinstance(r, dict) for r in rows)):
            errors.append({"field": key, "message": "应为对象数组"})
    for i, row in enumerate(item.get("MATERIALS") or []):
        for name in MATERIAL_INT_FIELDS:
            if isinstance(row, dict) and (why := _int_problem(row.get(name))) is not None:
                errors.append({"field": f"MATERIALS[{i}].{name}", "message": why})
    return errors


def normal_form(item: dict[str, Any]) -> dict[str, Any]:
    """The content the platform stores for a pushed ITEM (whole-record replace).

    Absent and null fields are absent afterwards, unknown fields are kept, an
    absent TASK_STATE means ``1`` (in use), and platform metadata is dropped.
    """
    content = {k: v for k, v in item.items() if v is not None and k not in METADATA}
    content.setdefault("TASK_STATE", "1")
    return content


def content_hash(content: dict[str, Any]) -> str:
    """Identity of an item's content: equal hashes mean "unchanged", no new version."""
    body = {k: v for k, v in content.items() if k not in METADATA}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def format_time(stamp: datetime) -> str:
    """ISO 8601 in Beijing time, the way the platform emits UPDATE_TIME."""
    return stamp.astimezone(CST).isoformat()
