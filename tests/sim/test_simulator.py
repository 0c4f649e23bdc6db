"""The platform simulator over real HTTP on loopback, signed with the production signing code."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson
import pytest

from connectors.platform import signing
from syncd.sim import Faults, PlatformSimulator, serve_in_thread
from syncd.sim.items import content_hash

APP, SECRET = "app-1", "app-1-secret"
UPSERT = "/api/v1/items:batchUpsert"


def item(code: str, name: str = "名称", **fields: Any) -> dict[str, Any]:
    return {"TASK_CODE": code, "TASK_NAME": name, **fields}


class Caller:
    """A minimal signed client: what the real connector does, spelled out for tests."""

    def __init__(self, url: str, sim: PlatformSimulator, *, app: str = APP,
                 secret: str = SECRET) -> None:
        self.http = httpx.Client(base_url=url, timeout=5)
        self.sim, self.app, self.secret = sim, app, secret
        self.token: str | None = None

    def call(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
             body: Any = None, headers: dict[str, str] | None = None,
             now_ms: int | None = None, nonce: str | None = None,
             secret: str | None = None) -> httpx.Response:
        raw = body if isinstance(body, bytes) else (b"" if body is None else orjson.dumps(body))
        if self.sim.scheme == "token":
            auth = {"Authorization": f"Bearer {self.token}"}
        else:
            auth = signing.sign_headers(self.sim.scheme, self.app, secret or self.secret, method,
                                        path, query or [], raw,
                                        self.sim.now_ms() if now_ms is None else now_ms,
                                        nonce or signing.new_nonce())
        return self.http.request(method, path, params=query, content=raw,
                                 headers={**auth, **(headers or {})})

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        doc = self.call(method, path, **kwargs).json()
        assert doc["code"] == "0", doc
        return doc["data"]

    def code(self, method: str, path: str, **kwargs: Any) -> str:
        return self.call(method, path, **kwargs).json()["code"]

    def push(self, *items: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
        return self.ok("POST", UPSERT, body={"items": list(items)}, **kwargs)["results"]


@pytest.fixture
def sim() -> Iterator[PlatformSimulator]:
    simulator = PlatformSimulator({APP: SECRET}, faults=Faults(seed=7))
    yield simulator
    simulator.close()


@pytest.fixture
def server(sim: PlatformSimulator) -> Iterator[str]:
    with serve_in_thread(sim) as handle:
        yield handle.url


@pytest.fixture
def client(server: str, sim: PlatformSimulator) -> Iterator[Caller]:
    caller = Caller(server, sim)
    yield caller
    caller.http.close()


# --- basics ----------------------------------------------------------------------

def test_health_is_unsigned(server: str) -> None:
    doc = httpx.get(f"{server}/api/v1/health").json()
    assert doc["code"] == "0" and doc["data"] == {"status": "ok"} and doc["requestId"]


def test_upsert_list_get_replace_and_unchanged(client: Caller, sim: PlatformSimulator) -> None:
    results = client.push(item("A", PROMISE_DAY=5, EXTRA_FIELD="kept"), item("B"))
    assert [(r["TASK_CODE"], r["status"], r["version"]) for r in results] == [
        ("A", "accepted", 1), ("B", "accepted", 1)]
    a = client.ok("GET", "/api/v1/items/A")
    assert a["EXTRA_FIELD"] == "kept" and a["TASK_STATE"] == "1" and a["TASK_VERSION"] == 1
    assert a["UPDATE_TIME"].endswith("+08:00")
    listed = client.ok("GET", "/api/v1/items")
    assert [i["TASK_CODE"] for i in listed["items"]] == ["A", "B"]
    assert listed["total"] == 2 and listed["nextCursor"] is None

    # identical content (platform metadata ignored): same version, same UPDATE_TIME
    same = client.push(item("A", PROMISE_DAY=5, EXTRA_FIELD="kept", TASK_VERSION=99,
                            UPDATE_TIME="2000-01-01T00:00:00+08:00"))
    assert same == [{"TASK_CODE": "A", "status": "unchanged", "version": 1}]
    assert client.ok("GET", "/api/v1/items/A")["UPDATE_TIME"] == a["UPDATE_TIME"]

    # whole-record replace: absent and null fields are gone afterwards
    assert client.push(item("A", PROMISE_DAY=None))[0]["version"] == 2
    a2 = client.ok("GET", "/api/v1/items/A")
    assert "PROMISE_DAY" not in a2 and "EXTRA_FIELD" not in a2 and a2["TASK_VERSION"] == 2
    assert a2["UPDATE_TIME"] > a["UPDATE_TIME"]
    assert client.code("GET", "/api/v1/items/NOPE") == "2002"
    assert sim.get("A") == a2


def test_cancel_is_idempotent_and_upsert_revives(client: Caller) -> None:
    client.push(item("A"))
    first = client.ok("POST", "/api/v1/items/A:cancel", body={"reason": "撤销"})
    again = client.ok("POST", "/api/v1/items/A:cancel", body={"reason": "撤销"})
    assert first == again == {"TASK_CODE": "A", "TASK_STATE": "3", "version": 2}
    assert client.code("POST", "/api/v1/items/NOPE:cancel", body={}) == "2002"
    assert client.push(item("A"))[0] == {"TASK_CODE": "A", "status": "accepted", "version": 3}
    assert client.ok("GET", "/api/v1/items/A")["TASK_STATE"] == "1"


def test_validation_rejects_strings_for_integers_and_missing_keys(client: Caller) -> None:
    results = client.push(item("A", PROMISE_DAY="20"),
                          item("B", MATERIALS=[{"MATERIAL_NAME": "身份证", "PAGE_NUM": "2"}]),
                          {"TASK_CODE": "C"}, item("D", LIMIT_SCENE_NUM=1))
    assert [r["status"] for r in results] == ["rejected", "rejected", "rejected", "accepted"]
    assert results[0]["code"] == "2001"
    assert results[0]["errors"][0]["field"] == "PROMISE_DAY"
    assert results[1]["errors"][0]["field"] == "MATERIALS[0].PAGE_NUM"
    assert results[2]["errors"][0]["field"] == "TASK_NAME"
    assert client.code("GET", "/api/v1/items/A") == "2002"
    for bad in ({"items": []}, {"items": [item(str(i)) for i in range(101)]}, {"x": 1}):
        doc = client.call("POST", UPSERT, body=bad).json()
        assert doc["code"] == "2001" and doc["data"]["errors"][0]["field"] == "items"
    assert client.code("POST", UPSERT, body=b"not json") == "2001"


def test_stale_base_version_is_a_conflict_even_when_identical(client: Caller) -> None:
    client.push(item("A"))
    client.push(item("A", TASK_NAME="改名"))
    conflict = client.push(item("A", TASK_NAME="改名", BASE_VERSION=1))[0]
    assert conflict["status"] == "rejected" and conflict["code"] == "2003"
    assert conflict["currentVersion"] == 2
    assert client.push(item("A", TASK_NAME="又改", BASE_VERSION=2))[0]["version"] == 3
    assert client.push(item("NEW", BASE_VERSION=5))[0]["status"] == "accepted"


# --- listing -----------------------------------------------------------------------

def test_paging_misses_nothing_while_items_change(client: Caller, sim: PlatformSimulator) -> None:
    for i in range(25):
        sim.put_direct(item(f"C{i:02d}"))
    seen: list[tuple[str, int]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = [("pageSize", "5")] + ([("cursor", cursor)] if cursor else [])
        data = client.ok("GET", "/api/v1/items", query=query)
        assert data["total"] >= 25
        seen += [(i["TASK_CODE"], i["TASK_VERSION"]) for i in data["items"]]
        pages += 1
        if pages == 2:  # change one item already seen and one not yet reached
            sim.put_direct(item("C01", TASK_NAME="平台修改"))
            sim.put_direct(item("C20", TASK_NAME="平台修改"))
            sim.put_direct(item("C99"))  # and create one
        cursor = data["nextCursor"]
        if cursor is None:
            break
    codes = {code for code, _v in seen}
    assert codes == {f"C{i:02d}" for i in range(25)} | {"C99"}
    assert ("C01", 1) in seen and ("C01", 2) in seen  # reappears with its new version
    assert ("C20", 2) in seen and ("C20", 1) not in seen


def test_list_filters_since_inclusive_total_and_cursor_binding(client: Caller,
                                                              sim: PlatformSimulator) -> None:
    sim.put_direct(item("A", REGION_CODE="330100"))
    b = sim.put_direct(item("B", REGION_CODE="330200"))
    sim.put_direct(item("C", REGION_CODE="330100", TASK_STATE="2"))
    since = client.ok("GET", "/api/v1/items", query=[("updatedSince", b["UPDATE_TIME"])])
    assert [i["TASK_CODE"] for i in since["items"]] == ["B", "C"] and since["total"] == 2
    region = client.ok("GET", "/api/v1/items", query=[("region", "330100"), ("pageSize", "1")])
    assert region["total"] == 2 and [i["TASK_CODE"] for i in region["items"]] == ["A"]
    other = [("region", "330200"), ("cursor", region["nextCursor"])]
    assert client.call("GET", "/api/v1/items", query=other).json()["data"]["errors"][0][
        "field"] == "cursor"
    follow = client.ok("GET", "/api/v1/items", query=[("region", "330100"), ("pageSize", "1"),
                                                      ("cursor", region["nextCursor"])])
    assert [i["TASK_CODE"] for i in follow["items"]] == ["C"] and follow["nextCursor"] is None
    status = client.ok("GET", "/api/v1/items", query=[("status", "2")])
    assert [i["TASK_CODE"] for i in status["items"]] == ["C"]
    for bad in ([("pageSize", "0")], [("pageSize", "501")], [("pageSize", "x")],
                [("updatedSince", "yesterday")], [("cursor", "garbage")]):
        assert client.code("GET", "/api/v1/items", query=bad) == "2001", bad


def test_clock_is_injectable_and_stamps_strictly_increase() -> None:
    frozen = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
    sim = PlatformSimulator({APP: SECRET}, clock=lambda: frozen)
    with serve_in_thread(sim) as handle:
        client = Caller(handle.url, sim)
        client.push(item("A"), item("B"))
        times = [i["UPDATE_TIME"] for i in client.ok("GET", "/api/v1/items")["items"]]
        assert times == ["2026-11-26T10:00:00+08:00", "2026-11-26T10:00:00.000001+08:00"]
        wall = int(time.time() * 1000)  # far from the platform's clock
        assert client.code("GET", "/api/v1/items", now_ms=wall) == "1002"
        client.http.close()


# --- idempotency and the ledger -----------------------------------------------------

def test_idempotency_key_replays_first_answer(client: Caller, sim: PlatformSimulator) -> None:
    body = orjson.dumps({"items": [item("A", TASK_NAME="v1")]})
    key = {"Idempotency-Key": "batch-1"}
    first = client.call("POST", UPSERT, body=body, headers=key).content
    sim.put_direct(item("A", TASK_NAME="platform edit"))
    replay = client.call("POST", UPSERT, body=body, headers=key).content
    assert replay == first  # the very same answer, requestId included
    assert sim.get("A")["TASK_NAME"] == "platform edit"  # and nothing re-applied
    # same key, different raw bytes: a new request
    other = orjson.dumps({"items": [item("A", TASK_NAME="v1")]}, option=orjson.OPT_INDENT_2)
    results = orjson.loads(client.call("POST", UPSERT, body=other, headers=key).content)
    assert results["data"]["results"][0] == {"TASK_CODE": "A", "status": "accepted", "version": 3}
    assert sim.ledger[("A", content_hash(sim.get("A")))] == 2  # v1 applied twice, knowingly
    assert list(sim.applied_twice()) == [("A", content_hash(sim.get("A")))]


def test_ledger_counts_applied_versions(client: Caller, sim: PlatformSimulator,
                                        server: str) -> None:
    client.push(item("A", TASK_NAME="old"))
    client.push(item("A", TASK_NAME="old"))  # unchanged: not applied again
    client.push(item("A", TASK_NAME="new"))
    assert sim.applied_twice() == {}
    client.push(item("A", TASK_NAME="old"))  # a stale payload landing after a newer one
    twice = sim.applied_twice()
    assert len(twice) == 1 and list(twice.values()) == [2]
    doc = httpx.get(f"{server}/_sim/ledger").json()["data"]
    assert len(doc["entries"]) == 2 and doc["appliedTwice"][0]["count"] == 2
    sim.put_direct(item("P"))  # platform-side edits are not deliveries
    assert not any(code == "P" for code, _h in sim.ledger)


# --- authentication -----------------------------------------------------------------

def test_signature_checks_in_order(client: Caller, sim: PlatformSimulator, server: str) -> None:
    assert client.code("GET", "/api/v1/items", secret="wrong") == "1001"
    stranger = Caller(server, sim, app="nobody")
    assert stranger.code("GET", "/api/v1/items") == "1004"
    old = sim.now_ms() - 301_000
    assert client.code("GET", "/api/v1/items", now_ms=old) == "1002"
    assert client.code("GET", "/api/v1/items", now_ms=sim.now_ms() - 290_000) == "0"
    nonce = signing.new_nonce()
    assert client.code("GET", "/api/v1/items", nonce=nonce, secret="wrong") == "1001"
    assert client.code("GET", "/api/v1/items", nonce=nonce) == "0"  # bad signature spent nothing
    assert client.code("GET", "/api/v1/items", nonce=nonce) == "1003"
    assert client.code("GET", "/api/v1/items", nonce="short") == "1001"
    stranger.http.close()


def test_nonce_is_spent_even_when_the_request_then_fails(client: Caller,
                                                         sim: PlatformSimulator) -> None:
    sim.faults.burst_429 = 1
    nonce = signing.new_nonce()
    assert client.call("GET", "/api/v1/items", nonce=nonce).status_code == 429
    assert client.code("GET", "/api/v1/items", nonce=nonce) == "1003"


def test_query_is_signed_decoded_and_sorted(client: Caller, sim: PlatformSimulator) -> None:
    stamp = sim.put_direct(item("A"))["UPDATE_TIME"]
    # httpx escapes '+' as %2B and ':' literally; the signature must not care
    data = client.ok("GET", "/api/v1/items", query=[("updatedSince", stamp), ("pageSize", "10")])
    assert data["total"] == 1


@pytest.mark.parametrize("scheme", ["sm3", "token"])
def test_other_schemes(scheme: str) -> None:
    sim = PlatformSimulator({APP: SECRET}, scheme=scheme)
    with serve_in_thread(sim) as handle:
        client = Caller(handle.url, sim)
        if scheme == "token":
            denied = client.http.post("/api/v1/auth/token",
                                      json={"appKey": APP, "appSecret": "wrong"}).json()
            assert denied["code"] == "1001"
            assert client.code("GET", "/api/v1/items") == "1001"  # no token yet
            got = client.http.post("/api/v1/auth/token",
                                   json={"appKey": APP, "appSecret": SECRET}).json()["data"]
            assert got["expiresIn"] == 7200
            client.token = got["token"]
        else:
            assert client.code("GET", "/api/v1/items", secret="wrong") == "1001"
        assert client.push(item("A"))[0]["status"] == "accepted"
        client.http.close()


# --- faults -------------------------------------------------------------------------

def test_burst_429_with_retry_after(client: Caller, sim: PlatformSimulator) -> None:
    sim.faults.update({"burst_429": 2, "retry_after": 3})
    for _ in range(2):
        response = client.call("POST", UPSERT, body={"items": [item("A")]})
        assert response.status_code == 429 and response.headers["Retry-After"] == "3"
        assert response.json()["code"] == "4290"
    assert sim.get("A") is None  # a faulted request applies nothing
    assert client.push(item("A"))[0]["status"] == "accepted"


def test_error_ratio_shapes_and_nothing_applied(client: Caller, sim: PlatformSimulator) -> None:
    sim.faults.update({"error_ratio": 1.0, "retry_after": 0})
    shapes = set()
    for i in range(30):
        response = client.call("POST", UPSERT, body={"items": [item(f"E{i}")]})
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "0"
            shapes.add("503")
        elif response.status_code == 502:
            assert response.content == b""
            shapes.add("502")
        else:
            shapes.add(response.json()["code"])
    assert shapes == {"503", "502", "5030", "5000"}
    assert sim.items() == [] and sim.ledger == {}


def test_slow_responses(client: Caller, sim: PlatformSimulator) -> None:
    sim.faults.update({"slow_ratio": 1.0, "slow_seconds": 0.3})
    started = time.monotonic()
    assert client.code("GET", "/api/v1/items") == "0"
    assert time.monotonic() - started >= 0.3


def test_dropped_connection_applies_nothing(client: Caller, sim: PlatformSimulator) -> None:
    sim.faults.drop_ratio = 1.0
    with pytest.raises(httpx.RemoteProtocolError):
        client.call("POST", UPSERT, body={"items": [item("A")]})
    assert sim.get("A") is None
    sim.faults.drop_ratio = 0.0
    assert client.push(item("A"))[0]["status"] == "accepted"


def test_lost_answer_after_apply_is_saved_by_idempotency_key(client: Caller,
                                                             sim: PlatformSimulator) -> None:
    sim.faults.fault_after_apply_ratio = 1.0
    body, key = {"items": [item("A")]}, {"Idempotency-Key": "k-1"}
    with pytest.raises(httpx.RemoteProtocolError):
        client.call("POST", UPSERT, body=body, headers=key)
    assert sim.get("A")["TASK_VERSION"] == 1  # applied, though the answer was lost
    sim.faults.fault_after_apply_ratio = 0.0
    retry = client.ok("POST", UPSERT, body=body, headers=key)
    assert retry["results"] == [{"TASK_CODE": "A", "status": "accepted", "version": 1}]
    assert sim.applied_twice() == {} and sum(sim.ledger.values()) == 1


def test_reject_items_and_faults_over_http(client: Caller, sim: PlatformSimulator,
                                           server: str) -> None:
    doc = httpx.post(f"{server}/_sim/faults", json={"reject_items": ["BAD"], "seed": 3}).json()
    assert doc["data"]["reject_items"] == ["BAD"] and doc["data"]["seed"] == 3
    assert httpx.get(f"{server}/_sim/faults").json()["data"]["reject_items"] == ["BAD"]
    results = client.push(item("BAD"), item("GOOD"))
    assert results[0]["status"] == "rejected" and results[0]["code"] == "2001"
    assert results[0]["errors"][0]["field"] == "TASK_CODE"
    assert results[1]["status"] == "accepted"
    bad = httpx.post(f"{server}/_sim/faults", json={"error_ratio": 2})
    assert bad.status_code == 400 and bad.json()["code"] == "2001"
    assert httpx.post(f"{server}/_sim/faults", json={"nope": 1}).status_code == 400
    assert sim.faults.error_ratio == 0.0 and sim.faults.reject_items == {"BAD"}


def test_seed_makes_faults_repeatable() -> None:
    def verdicts() -> list[str]:
        sim = PlatformSimulator({APP: SECRET}, faults=Faults(error_ratio=0.5, seed=42))
        return [sim.dice.roll(write=True).fault for _ in range(50)]

    assert verdicts() == verdicts()


# --- storage ------------------------------------------------------------------------

def test_sqlite_file_survives_restart(tmp_path) -> None:
    path = str(tmp_path / "platform.db")
    sim = PlatformSimulator({APP: SECRET}, db_path=path)
    with serve_in_thread(sim) as handle:
        client = Caller(handle.url, sim)
        client.push(item("A"), item("B"))
        client.push(item("A", TASK_NAME="二版"))
        client.http.close()
    before = sim.items()
    sim.close()
    reopened = PlatformSimulator({APP: SECRET}, db_path=path)
    assert reopened.items() == before and reopened.get("A")["TASK_VERSION"] == 2
    assert sum(reopened.ledger.values()) == 3
    reopened.put_direct(item("C"))
    assert reopened.items()[-1]["UPDATE_TIME"] > before[-1]["UPDATE_TIME"]
    reopened.close()


def test_concurrent_pushes(client: Caller, server: str, sim: PlatformSimulator) -> None:
    def worker(n: int) -> None:
        caller = Caller(server, sim)
        for i in range(5):
            caller.push(item(f"T{n}-{i}"))
        caller.http.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sim.items()) == 30 and sim.applied_twice() == {}
