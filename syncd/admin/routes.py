"""The admin API's endpoints: JSON in and out (Prometheus text for ``/metrics``).

    GET  /health                 liveness, no token
    GET  /ready                  scheduler running, not stopping, state DB answers (else 503)
    GET  /status                 jobs (next, current, last run), outbox size, dead letters
    GET  /runs?job=&limit=       run history, newest first
    GET  /runs/{run_id}          one run, with its quarantined records
    POST /jobs/{job}/run         {"items": [...], "full": bool, "dry_run": bool}; ?wait=false → 202
    GET  /outbox?status=&job=    outbox rows (without payloads)
    POST /outbox/replay          {"job": ..., "items": [...], "all": bool}
    GET  /metrics                Prometheus text
    GET  /reports                files in the configured reports directory

Handlers are thin: they parse, call the daemon in a worker thread (the state
DB and runs block) and shape the answer. A triggered run lives in its own
thread, so a client that hangs up never stops it half-way.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncd.admin.auth import BearerAuth
from syncd.engine import RunRequest
from syncd.errors import JobBusyError, SyncdError

if TYPE_CHECKING:
    from syncd.daemon import Daemon

_NO = ("false", "0", "no")


class JSON(Response):
    """orjson-rendered JSON (datetimes as ISO 8601, anything else as its str; SQLAlchemy
    hands back column names as str subclasses, hence non-str keys)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str, option=orjson.OPT_NON_STR_KEYS)


def _daemon(request: Request) -> Daemon:
    return request.app.state.daemon  # type: ignore[no-any-return]


async def health(_request: Request) -> Response:
    return JSON({"status": "ok", "service": "syncd"})


async def ready(request: Request) -> Response:
    ok, reason = await run_in_threadpool(_daemon(request).ready)
    return JSON({"ready": ok, "reason": reason}, status_code=200 if ok else 503)


async def status(request: Request) -> Response:
    return JSON(await run_in_threadpool(_daemon(request).status))


async def runs(request: Request) -> Response:
    store = _daemon(request).store
    job = request.query_params.get("job") or None
    limit = _int_param(request, "limit", default=50, low=1, high=1000)
    return JSON({"runs": await run_in_threadpool(store.runs, job, limit)})


async def run_detail(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    row = await run_in_threadpool(_daemon(request).store.run, run_id)
    if row is None:
        raise HTTPException(404, f"no run {run_id}")
    return JSON(row)


async def trigger(request: Request) -> Response:
    """Start a run of the job; wait for its result unless ``?wait=false``."""
    daemon, job = _daemon(request), request.path_params["job"]
    if job not in daemon.config.jobs:
        raise HTTPException(404, f"no job named {job!r}")
    body = await _body(request, {"items": list, "full": bool, "dry_run": bool})
    req = RunRequest(job, trigger="manual", full=body.get("full", False),
                     items=_codes(body), dry_run=body.get("dry_run", False))
    active = await run_in_threadpool(daemon.dispatcher.start, req)
    if request.query_params.get("wait", "true").lower() in _NO:
        run_id = await run_in_threadpool(lambda: daemon.dispatcher.run_id(job, wait=10.0))
        if active.done.is_set() and active.error is not None:
            raise active.error
        return JSON({"run_id": run_id, "job": job, "status": "started"}, status_code=202)
    result = await run_in_threadpool(active.outcome)
    return JSON(dataclasses.asdict(result))


async def outbox(request: Request) -> Response:
    status_ = request.query_params.get("status") or None
    if status_ not in (None, "pending", "dead"):
        raise HTTPException(400, "status must be pending or dead")
    job = request.query_params.get("job") or None
    limit = _int_param(request, "limit", default=1000, low=1, high=10_000)
    rows = await run_in_threadpool(lambda: _daemon(request).store.outbox(
        job=job, status=status_, limit=limit))
    for row in rows:
        row.pop("payload")  # canonical item JSON: large, and `syncd outbox list` shows it
    return JSON({"outbox": rows})


async def outbox_replay(request: Request) -> Response:
    daemon = _daemon(request)
    body = await _body(request, {"job": str, "items": list, "all": bool})
    if body.get("job") and body["job"] not in daemon.config.jobs:
        raise HTTPException(404, f"no job named {body['job']!r}")
    results = await run_in_threadpool(lambda: daemon.replay(
        job=body.get("job"), items=list(_codes(body)), include_dead=body.get("all", False)))
    return JSON({"results": [dataclasses.asdict(r) for r in results]})


async def metrics(request: Request) -> Response:
    text = await run_in_threadpool(_daemon(request).metrics.render)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


async def reports(request: Request) -> Response:
    folder = _daemon(request).reports_dir
    found = [p for p in folder.iterdir() if p.is_file()] if folder and folder.is_dir() else []
    files = sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
    return JSON({"dir": str(folder) if folder else None, "files": [
        {"name": p.name, "size": p.stat().st_size,
         "modified": datetime.fromtimestamp(p.stat().st_mtime, UTC).isoformat()} for p in files]})


def _int_param(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise HTTPException(400, f"{name} must be an integer from {low} to {high}")
    return int(raw)


async def _body(request: Request, fields: dict[str, type]) -> dict[str, Any]:
    """The JSON object body, checked against ``fields`` (name → type); {} when empty."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HTTPException(400, "the body must be JSON") from None
    if not isinstance(doc, dict):
        raise HTTPException(400, "the body must be a JSON object")
    for key, value in doc.items():
        if key not in fields:
            raise HTTPException(400, f"unknown field {key!r} (known: {', '.join(fields)})")
        if not isinstance(value, fields[key]) and value is not None:
            raise HTTPException(400, f"{key} must be {fields[key].__name__}")
    return {k: v for k, v in doc.items() if v is not None}


def _codes(body: dict[str, Any]) -> tuple[str, ...]:
    items = body.get("items") or []
    if not all(isinstance(code, str) and code for code in items):
        raise HTTPException(400, "items must be a list of item codes")
    return tuple(items)


def _error(status_code: int) -> Any:
    async def handler(_request: Request, exc: Exception) -> Response:
        return JSON({"error": str(exc), "error_type": type(exc).__name__,
                     "run_id": getattr(exc, "run_id", None)}, status_code=status_code)
    return handler


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSON({"error": exc.detail}, status_code=exc.status_code)


def create_app(daemon: Daemon, token: str) -> Starlette:
    """The API around ``daemon``; every path but /health needs ``token``."""
    from syncd.daemon import ShuttingDown  # the daemon imports this module

    app = Starlette(
        routes=[Route("/health", health), Route("/ready", ready), Route("/status", status),
                Route("/runs", runs), Route("/runs/{run_id}", run_detail),
                Route("/jobs/{job}/run", trigger, methods=["POST"]),
                Route("/outbox", outbox), Route("/outbox/replay", outbox_replay, methods=["POST"]),
                Route("/metrics", metrics), Route("/reports", reports)],
        middleware=[Middleware(BearerAuth, token=token)],
        exception_handlers={HTTPException: _http_error, JobBusyError: _error(409),
                            ShuttingDown: _error(503), SyncdError: _error(500)})
    app.state.daemon = daemon
    return app
