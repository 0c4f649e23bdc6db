"""The provincial platform, simulated: what each endpoint does to the data.

HTTP concerns (envelope, signatures, fault shapes) live in ``app.py``; this
module answers "what would the platform do with this request" and offers the
side doors tests need (seeding items, reading the delivery ledger).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from syncd.sim.auth import Authenticator
from syncd.sim.faults import Dice, Faults
from syncd.sim.items import TASK_STATES, content_hash, normal_form, validate
from syncd.sim.store import ItemStore, Stored

MAX_BATCH = 100
MAX_PAGE = 500
DEFAULT_PAGE = 100


@dataclass(frozen=True, slots=True)
class Result:
    """A business answer: platform code, message and data, before it is enveloped."""

    code: str
    message: str
    data: Any = None


OK = "成功"


def _invalid(field_name: str, message: str) -> Result:
    return Result("2001", message, {"errors": [{"field": field_name, "message": message}]})


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class _Filters:
    """A listing's filters; a cursor is only valid with the filters it was issued for."""

    since: datetime | None
    region: str | None
    status: str | None
    fingerprint: str


class PlatformSimulator:
    """An in-process provincial platform serving the reference profile.

    Args:
        apps: ``{app_key: secret}`` of the applications allowed to call.
        scheme: ``hmac-sha256`` (default), ``sm3`` or ``token``.
        db_path: a SQLite file to keep items in across restarts; None = memory.
        clock: the platform's clock (aware datetimes); stamps UPDATE_TIME and
            judges timestamps, nonces, tokens and idempotency windows.
        faults: initial fault switches (mutable later through ``sim.faults``).
        token_ttl: bearer token lifetime in seconds (token scheme).
    """

    IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000

    def __init__(self, apps: Mapping[str, str], *, scheme: str = "hmac-sha256",
                 db_path: str | None = None, clock: Callable[[], datetime] = _utc_now,
                 faults: Faults | None = None, token_ttl: int = 7200) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.auth = Authenticator(apps, scheme, token_ttl)
        self.store = ItemStore(db_path, clock)
        self.faults = faults or Faults()
        self.dice = Dice(self.faults)

    @property
    def scheme(self) -> str:
        return self.auth.scheme

    def now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def close(self) -> None:
        """Release the SQLite file, if any."""
        with self.lock:
            self.store.close()

    # --- side doors for tests and demos ------------------------------------------
    def items(self) -> list[dict[str, Any]]:
        """Every ITEM as the platform would answer it, in update order."""
        with self.lock:
            return [s.record() for s in self.store.all()]

    def get(self, code: str) -> dict[str, Any] | None:
        with self.lock:
            stored = self.store.get(code)
            return stored.record() if stored else None

    def put_direct(self, item: dict[str, Any]) -> dict[str, Any]:
        """Create or edit an item on the platform's side (not a delivery: no ledger entry).

        Bumps version and UPDATE_TIME like an edit in the platform's own UI,
        unless the content is unchanged.

        Raises:
            ValueError: the item breaks the platform's rules.
        """
        errors = validate(item)
        if errors:
            raise ValueError(f"invalid item: {errors}")
        content = normal_form(item)
        with self.lock:
            code = content["TASK_CODE"]
            old = self.store.get(code)
            stored = self._write_if_changed(code, content, old, delivered=False)
            return stored.record()

    @property
    def ledger(self) -> dict[tuple[str, str], int]:
        """How many times each (TASK_CODE, content hash) was applied through the API."""
        with self.lock:
            return dict(self.store.ledger)

    def applied_twice(self) -> dict[tuple[str, str], int]:
        """Item versions applied more than once: a replayed or stale push landed again."""
        return {key: n for key, n in self.ledger.items() if n > 1}

    # --- endpoints (callers hold ``self.lock``) -------------------------------------
    def list_items(self, params: Mapping[str, str]) -> Result:
        """``GET /api/v1/items``: a page in (UPDATE_TIME, TASK_CODE) order, and the total."""
        size_text = params.get("pageSize", str(DEFAULT_PAGE))
        if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE:
            return _invalid("pageSize", f"pageSize 应为 1–{MAX_PAGE} 的整数，实为 {size_text!r}")
        filters = self._filters(params)
        if isinstance(filters, Result):
            return filters
        after = None
        if params.get("cursor"):
            after = _decode_cursor(params["cursor"], filters)
            if after is None:
                return _invalid("cursor", "cursor 无效，或与本次查询条件不符")
        scan = dict(since=filters.since, region=filters.region, status=filters.status)
        page: list[Stored] = []
        more = False
        for stored in self.store.scan(after=after, **scan):
            if len(page) == int(size_text):
                more = True
                break
            page.append(stored)
        total = sum(1 for _ in self.store.scan(after=None, **scan))
        next_cursor = _encode_cursor(page[-1], filters) if more else None
        return Result("0", OK, {"items": [s.record() for s in page], "nextCursor": next_cursor,
                                "total": total})

    @staticmethod
    def _filters(params: Mapping[str, str]) -> _Filters | Result:
        since = None
        if params.get("updatedSince"):
            text = params["updatedSince"]
            try:
                since = datetime.fromisoformat(text)
            except ValueError:
                since = None
            if since is None or since.tzinfo is None:
                return _invalid("updatedSince", f"updatedSince {text!r} 不是带时区的 ISO 8601 时间"
                                                "（查询串中的 + 须写作 %2B）")
        region = params.get("region") or None
        if region is not None and not (len(region) == 6 and region.isdigit()):
            return _invalid("region", f"region {region!r} 应为6位行政区划代码")
        status = params.get("status") or None
        if status is not None and status not in TASK_STATES:
            return _invalid("status", f"status {status!r} 不在 1/2/3 中")
        since_key = since.astimezone(timezone.utc).isoformat() if since else None
        fingerprint = hashlib.sha256(orjson.dumps([since_key, region, status])).hexdigest()[:16]
        return _Filters(since, region, status, fingerprint)

    def get_item(self, code: str) -> Result:
        """``GET /api/v1/items/{taskCode}``."""
        stored = self.store.get(code)
        if stored is None:
            return Result("2002", f"事项 {code} 不存在")
        return Result("0", OK, stored.record())

    def batch_upsert(self, body: bytes) -> Result:
        """``POST /api/v1/items:batchUpsert``: per-item results; one bad item never fails the rest."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _invalid("items", "请求体不是 JSON")
        items = doc.get("items") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            return _invalid("items", f"items 应为 1–{MAX_BATCH} 个事项的数组")
        return Result("0", OK, {"results": [self._upsert_one(item) for item in items]})

    def _upsert_one(self, item: Any) -> dict[str, Any]:
        code = item.get("TASK_CODE") if isinstance(item, dict) else None
        errors = validate(item)
        if not errors and code in self.faults.reject_items:
            errors = [{"field": "TASK_CODE", "message": "模拟器故障开关 reject_items：该事项总被拒绝"}]
        text = self.faults.reject_text
        if not errors and text and text in str(item.get("TASK_NAME", "")):
            errors = [{"field": "TASK_NAME", "message": f"事项名称不得含有“{text}”"}]
        if errors:
            return {"TASK_CODE": code, "status": "rejected", "code": "2001",
                    "message": "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                    "errors": errors}
        old = self.store.get(code)
        base = item.get("BASE_VERSION")
        if old is not None and base is not None and old.version > base:
            return {"TASK_CODE": code, "status": "rejected", "code": "2003",
                    "message": f"平台已有更新版本 {old.version}（BASE_VERSION {base}）",
                    "currentVersion": old.version}
        stored = self._write_if_changed(code, normal_form(item), old, delivered=True)
        status = "unchanged" if stored is old else "accepted"
        return {"TASK_CODE": code, "status": status, "version": stored.version}

    def _write_if_changed(self, code: str, content: dict[str, Any], old: Stored | None, *,
                          delivered: bool) -> Stored:
        """The stored item after a write: a new version only when the content differs."""
        if old is not None and old.hash == content_hash(content):
            return old
        return self.store.write(code, content, delivered=delivered)

    def cancel(self, code: str) -> Result:
        """``POST /api/v1/items/{taskCode}:cancel``: TASK_STATE 3, idempotent."""
        old = self.store.get(code)
        if old is None:
            return Result("2002", f"事项 {code} 不存在")
        stored = self._write_if_changed(code, {**old.content, "TASK_STATE": "3"}, old,
                                        delivered=True)
        return Result("0", OK, {"TASK_CODE": code, "TASK_STATE": "3", "version": stored.version})


def _encode_cursor(last: Stored, filters: _Filters) -> str:
    """Opaque cursor: the last (UPDATE_TIME, TASK_CODE) returned and the filters' fingerprint."""
    raw = orjson.dumps({"t": last.stamp.isoformat(), "c": last.content["TASK_CODE"],
                        "f": filters.fingerprint})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, filters: _Filters) -> tuple[datetime, str] | None:
    """The position a cursor stands for, or None when it is garbage or for other filters."""
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position = (datetime.fromisoformat(doc["t"]), str(doc["c"]))
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if doc.get("f") != filters.fingerprint or position[0].tzinfo is None:
        return None
    return position
