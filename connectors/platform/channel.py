"""The provincial platform as a channel: incremental pull, batch push with receipts, cancel.

Pull: ``updatedSince`` the checkpoint minus a lag window, then the platform's
cursor; since the listing is ordered by update time and an item changed while
paging shows up again later, checkpointing the last update time seen misses
nothing. Push: batches of the profile's size, each with an ``Idempotency-Key``
derived from the batch's item codes and content, so a retried request can
never apply twice; per-item receipts.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from connectors.base import Page, RawRecord, Receipt
from connectors.platform.client import PlatformClient
from syncd.errors import PlatformError
from syncd.mapping import Mapping
from syncd.retry import RetryPolicy


class PlatformChannel:
    """Source and sink over :class:`PlatformClient`.

    Args:
        name: channel name.
        client: the signed client (its profile names fields and codes).
        mapping: the channel's mapping (key and update-time fields).
        policy: retries for reads (pushes are retried by the engine's load stage).
        lag_seconds: re-read this much before the checkpoint.
        sleep: how read retries wait.
        in_flight: batches pushed at once (the rate limiter still applies to each).
    """

    ordered_scan = False  # the platform lists by update time, not by key
    #: requests count against the app key's quota, which this process's limiter keeps:
    #: sync workers (other processes) would each spend it again, so a job pushing here
    #: reads its source in one process
    quota_per_process = True

    def __init__(self, name: str, client: PlatformClient, mapping: Mapping, *,
                 policy: RetryPolicy | None = None, lag_seconds: float = 0.0,
                 sleep: Callable[[float], Any] | None = None, in_flight: int = 4) -> None:
        self.name, self.client, self.mapping = name, client, mapping
        self.profile = client.profile
        self.policy = policy or RetryPolicy()
        self.lag = timedelta(seconds=lag_seconds)
        self._sleep = sleep
        self.key = mapping.key_column
        self.base_version_field = self.profile.base_version_field  # two-way jobs set it
        self.in_flight = in_flight
        self._pool: ThreadPoolExecutor | None = None
        self.updated = next((f.column for f in mapping.fields if f.name == "updated_at"), None)

    def _get(self, path: str, query: list[tuple[str, str]]) -> Any:
        kwargs = {"sleep": self._sleep} if self._sleep else {}
        return self.policy.call(lambda: self.client.call("GET", path, query=query),
                                what=f"GET {path}", target=self.name, **kwargs)

    # --- reading ---------------------------------------------------------------
    def read(self, cursor: str | None, page_size: int) -> Iterator[Page]:
        """Items updated since the checkpoint (minus the lag), following the platform's cursor."""
        since: str | None = None
        if cursor:
            since_dt = datetime.fromisoformat(orjson.loads(cursor)["since"]) - self.lag
            since = since_dt.isoformat()
        yield from self._list(since, page_size)

    def scan(self, page_size: int, *, keys: Sequence[str] | None = None) -> Iterator[Page]:
        """Everything (in the platform's order), or just ``keys`` fetched one by one."""
        if keys is None:
            for page in self._list(None, page_size):
                yield Page(page.records, None)
            return
        found = []
        for code in keys:
            try:
                found.append(self._get(self.profile.paths["get"].format(code=code), []))
            except PlatformError as exc:
                if exc.code != self.profile.not_found_code:
                    raise
        yield Page(found, None)

    def _list(self, since: str | None, page_size: int) -> Iterator[Page]:
        p = self.profile.page
        size = str(min(page_size, int(p["max_size"])))
        next_cursor: str | None = None
        last_seen = since
        while True:
            query = [(p["size"], size)]
            if since:
                query.append((p["since"], since))
            if next_cursor:
                query.append((p["cursor"], next_cursor))
            data = self._get(self.profile.paths["list"], query)
            records = data.get(p["items"]) or []
            for r in records:
                stamp = r.get(self.updated) if self.updated else None
                if stamp and (last_seen is None or _later(stamp, last_seen)):
                    last_seen = stamp
            checkpoint = orjson.dumps({"since": last_seen}).decode() if last_seen else None
            yield Page(records, checkpoint)
            next_cursor = data.get(p["next"])
            if not next_cursor or not records:
                return

    # --- writing ---------------------------------------------------------------
    def write(self, records: Sequence[RawRecord]) -> list[Receipt]:
        """Push in batches, up to ``in_flight`` at once; one receipt per record, in order.

        A rejected item never blocks the rest. A batch that fails as a whole fails
        the call, and the caller's retry re-sends every batch: those that landed
        carry the same Idempotency-Key, so the platform answers them from its
        cache instead of applying them again.
        """
        size = self.profile.batch_size
        batches = [records[i:i + size] for i in range(0, len(records), size)]
        if len(batches) == 1 or self.in_flight == 1:
            return [r for batch in batches for r in self._push(batch)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix=f"push-{self.name}")
        return [r for receipts in self._pool.map(self._push, batches) for r in receipts]

    def _push(self, batch: Sequence[RawRecord]) -> list[Receipt]:
        body = {"items": list(batch)}
        key = idempotency_key(batch, self.key)
        data = self.client.call("POST", self.profile.paths["upsert"], body=body,
                                headers={"Idempotency-Key": key})
        r = self.profile.results
        by_key = {str(res.get(r["key"])): res for res in (data or {}).get(r["list"]) or []}
        out = []
        for record in batch:
            code = str(record[self.key])
            res = by_key.get(code)
            out.append(self._receipt(code, res))
        return out

    def _receipt(self, code: str, res: dict[str, Any] | None) -> Receipt:
        r = self.profile.results
        if res is None:
            return Receipt(code, "retry", error="no result for this item in the platform's answer")
        status = res.get(r["status"])
        version = res.get(r["version"])
        if status in self.profile.accepted:
            return Receipt(code, "delivered", version=version)
        if status in self.profile.unchanged:
            return Receipt(code, "unchanged", version=version)
        err_code = str(res.get(r["code"]) or "")
        message = f"platform code {err_code}: {res.get(r['message']) or status}"
        if err_code == self.profile.conflict_code:
            current = res.get(r["current_version"])
            return Receipt(code, "conflict", version=current,
                           error=f"{message} (platform version {current})")
        if err_code in self.profile.transient_codes:
            return Receipt(code, "retry", error=message)
        details = [{"field": str(e.get("field", "")), "message": str(e.get("message", ""))}
                   for e in res.get(r["errors"]) or []]
        return Receipt(code, "rejected", error=message, details=details)

    def get(self, code: str) -> RawRecord | None:
        """One item as the platform holds it now, or None when it has none."""
        try:
            return self._get(self.profile.paths["get"].format(code=code), [])
        except PlatformError as exc:
            if exc.code == self.profile.not_found_code:
                return None
            raise

    def cancel(self, code: str, reason: str) -> bool:
        """Withdraw an item on the platform (TASK_STATE 3, idempotent); False if unknown."""
        try:
            self.policy.call(lambda: self.client.call(
                "POST", self.profile.paths["cancel"].format(code=code), body={"reason": reason}),
                what="cancel", target=self.name, item_code=code,
                **({"sleep": self._sleep} if self._sleep else {}))
        except PlatformError as exc:
            if exc.code == self.profile.not_found_code:
                return False
            raise
        return True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.client.close()


def idempotency_key(batch: Sequence[RawRecord], key: str) -> str:
    """Same items with the same content → same key; any change → a new key."""
    h = hashlib.sha256()
    for record in batch:
        h.update(str(record[key]).encode())
        h.update(hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).digest())
    return h.hexdigest()


def _later(a: str, b: str) -> bool:
    return datetime.fromisoformat(a) > datetime.fromisoformat(b)


