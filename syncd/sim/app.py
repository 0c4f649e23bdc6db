"""The simulator's HTTP face: routes, envelope, authentication and fault shapes.

Every signed item request goes through :func:`_guarded`: authenticate (which
spends the nonce), roll the fault dice, and only then touch the data, so a
faulted request changes nothing — except ``drop_after_apply``, which applies
the write and then loses the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from syncd.sim.auth import Denied, SignedRequest
from syncd.sim.faults import Verdict
from syncd.sim.simulator import PlatformSimulator, Result

JSON = "application/json"
_RAW_SEND = "syncd.sim.raw_send"  # scope key: the server's own send, to abort the connection


def envelope(result: Result, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The platform's envelope, present on every answer."""
    body = {"code": result.code, "message": result.message, "requestId": uuid.uuid4().hex,
            "data": result.data}
    return Response(orjson.dumps(body), status, headers, media_type=JSON)


class _Dropped(Response):
    """No answer at all: the connection is closed before a single byte is sent.

    ASGI has no "close the connection" message and an exception before the
    response starts becomes a 500, so the server's transport is aborted
    directly (uvicorn's send is a bound method of its request cycle, which
    holds the transport).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_send = scope.get(_RAW_SEND)
        transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
        if transport is None:  # another ASGI server: promise a body and never send it
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"1")]})
            return
        transport.abort()
        await asyncio.sleep(0)  # let the server notice the loss before the app returns


def _fault_response(verdict: Verdict, retry_after: int) -> Response | None:
    """The answer for a fault decided before processing, or None to process normally."""
    wait = {"Retry-After": str(retry_after)}
    match verdict.fault:
        case "429":
            return envelope(Result("4290", "请求过于频繁"), 429, wait)
        case "503":
            return Response(b"<html><body><h1>503 Service Unavailable</h1></body></html>", 503,
                            wait, media_type="text/html")
        case "502":
            return Response(b"", 502)
        case "5030":
            return envelope(Result("5030", "系统繁忙，请稍后再试"))
        case "5000":
            return envelope(Result("5000", "系统内部错误"))
        case "drop":
            return _Dropped()
    return None


Work = Callable[[Request, str, bytes], bytes]


async def _guarded(sim: PlatformSimulator, request: Request, work: Work, *,
                   write: bool) -> Response:
    """Authenticate, apply faults, then run ``work(request, app_key, body)`` under the lock."""
    body = await request.body()
    signed = SignedRequest(request.method, request.scope.get("raw_path", b"").decode("latin-1")
                           or request.url.path, request.scope["query_string"].decode("latin-1"),
                           body, request.headers)
    with sim.lock:
        app = sim.auth.check(signed, sim.now_ms())
        if isinstance(app, Denied):
            return envelope(Result(app.code, app.message))
        verdict = sim.dice.roll(write=write)
        retry_after = sim.faults.retry_after
    if verdict.delay:
        await asyncio.sleep(verdict.delay)
    fault = _fault_response(verdict, retry_after)
    if fault is not None:
        return fault
    with sim.lock:
        answer = work(request, app, body)
    if verdict.fault == "drop_after_apply":
        return _Dropped()
    return Response(answer, media_type=JSON)


def _enveloped(result: Result) -> bytes:
    return bytes(envelope(result).body)


def build_app(sim: PlatformSimulator) -> Callable[[Scope, Receive, Send], Any]:
    """The ASGI app serving ``sim`` (reference paths, plus the unsigned ``/_sim`` controls)."""

    async def health(_request: Request) -> Response:
        return envelope(Result("0", "成功", {"status": "ok"}))

    async def token(request: Request) -> Response:
        try:
            doc = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            return envelope(Result("2001", "请求体应为 {appKey, appSecret}"))
        with sim.lock:
            issued = sim.auth.issue_token(doc.get("appKey"), doc.get("appSecret"), sim.now_ms())
        if isinstance(issued, Denied):
            return envelope(Result(issued.code, issued.message))
        return envelope(Result("0", "成功", {"token": issued[0], "expiresIn": issued[1]}))

    async def list_items(request: Request) -> Response:
        return await _guarded(sim, request, lambda r, _app, _body: _enveloped(
            sim.list_items(r.query_params)), write=False)

    async def get_item(request: Request) -> Response:
        return await _guarded(sim, request, lambda r, _app, _body: _enveloped(
            sim.get_item(r.path_params["code"])), write=False)

    async def cancel(request: Request) -> Response:
        return await _guarded(sim, request, lambda r, _app, _body: _enveloped(
            sim.cancel(r.path_params["code"])), write=True)

    def upsert_once(request: Request, app: str, body: bytes) -> bytes:
        """Answer a push; the same Idempotency-Key and raw body replays the first answer."""
        key = request.headers.get("idempotency-key")
        if not key:
            return _enveloped(sim.batch_upsert(body))
        reply_key = (app, key, hashlib.sha256(body).hexdigest())
        now = sim.now_ms()
        first = sim.store.reply(reply_key, now, sim.IDEMPOTENCY_TTL_MS)
        if first is None:
            first = _enveloped(sim.batch_upsert(body))
            sim.store.remember(reply_key, now, first)
        return first

    async def upsert(request: Request) -> Response:
        return await _guarded(sim, request, upsert_once, write=True)

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = orjson.loads(await request.body())
                if not isinstance(changes, dict):
                    raise ValueError("body must be a JSON object of fault switches")
                with sim.lock:
                    sim.faults.update(changes)
                    if "seed" in changes:
                        sim.dice.reseed()
            except ValueError as exc:  # includes orjson.JSONDecodeError
                return envelope(Result("2001", str(exc)), 400)
        with sim.lock:
            return envelope(Result("0", "成功", sim.faults.to_json()))

    async def ledger(_request: Request) -> Response:
        entries = [{"TASK_CODE": code, "hash": hash_, "count": n}
                   for (code, hash_), n in sorted(sim.ledger.items())]
        twice = [e for e in entries if e["count"] > 1]
        return envelope(Result("0", "成功", {"entries": entries, "appliedTwice": twice}))

    routes = [
        Route("/api/v1/health", health, methods=["GET"]),
        Route("/api/v1/items", list_items, methods=["GET"]),
        Route("/api/v1/items:batchUpsert", upsert, methods=["POST"]),
        Route("/api/v1/items/{code}:cancel", cancel, methods=["POST"]),
        Route("/api/v1/items/{code}", get_item, methods=["GET"]),
        Route("/_sim/faults", faults, methods=["GET", "POST"]),
        Route("/_sim/ledger", ledger, methods=["GET"]),
    ]
    if sim.scheme == "token":
        routes.append(Route("/api/v1/auth/token", token, methods=["POST"]))
    starlette = Starlette(routes=routes)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_RAW_SEND] = send
        await starlette(scope, receive, send)

    return app
