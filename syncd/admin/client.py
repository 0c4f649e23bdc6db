"""The CLI's way to a running daemon: so `syncd sync` and `syncd outbox replay` never
run a job beside the daemon's own run of it.

HTTP errors become syncd errors here, once: 409 → JobBusyError (exit 4), a
refused token or unknown job → ConfigError (exit 2), a failed run →
RemoteRunError (exit 3), a lost connection → DaemonUnreachable.
"""

from __future__ import annotations

from typing import Any

import httpx

from syncd.admin.settings import AdminSettings
from syncd.engine import RunRequest
from syncd.errors import ConfigError, JobBusyError, MappingError, SyncdError

#: a run may take as long as it takes; only connecting is bounded
RUN_TIMEOUT = httpx.Timeout(None, connect=5.0)
PROBE_TIMEOUT = httpx.Timeout(2.0)


class RemoteRunError(SyncdError):
    """The daemon ran the request and it failed (the message is the daemon's)."""


class DaemonUnreachable(SyncdError):
    """The daemon answered the probe but not the request (it stopped or crashed)."""


class AdminClient:
    """Talks to the admin API at ``settings``; ``transport`` lets tests skip the network."""

    def __init__(self, settings: AdminSettings, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        self._http = httpx.Client(base_url=settings.base_url, headers=headers,
                                  transport=transport, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def alive(self) -> bool:
        """True when a syncd daemon answers /health at the configured address."""
        try:
            resp = self._http.get("/health", timeout=PROBE_TIMEOUT)
        except httpx.TransportError:
            return False
        return resp.status_code == 200 and _json(resp).get("service") == "syncd"

    def run(self, req: RunRequest) -> dict[str, Any]:
        """Trigger ``req`` on the daemon and wait for its result (a RunResult as a dict)."""
        body = {"items": list(req.items), "full": req.full, "dry_run": req.dry_run}
        return self._post(f"/jobs/{req.job}/run", body)

    def replay(self, *, job: str | None, items: list[str],
               include_dead: bool) -> list[dict[str, Any]]:
        """Replay outbox items on the daemon; one result per job that had any."""
        body = {"job": job, "items": items, "all": include_dead}
        return list(self._post("/outbox/replay", body)["results"])

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = self._http.post(path, json=body, timeout=RUN_TIMEOUT)
        except httpx.TransportError as exc:
            raise DaemonUnreachable(f"lost the daemon at {self._http.base_url} during the "
                                    f"request ({type(exc).__name__}); see `syncd status`") from None
        doc = _json(resp)
        if resp.status_code == 200:
            return doc
        message = str(doc.get("error") or f"HTTP {resp.status_code}")
        if resp.status_code == 401:
            raise ConfigError("the daemon refused the admin token (is it the daemon's?)",
                              key="admin.token")
        if resp.status_code == 409:
            run = doc.get("run_id")
            raise JobBusyError(message + (f" (run {run})" if run else ""))
        if resp.status_code in (400, 404) or doc.get("error_type") == "ConfigError":
            raise ConfigError(message)
        if doc.get("error_type") == "MappingError":
            raise MappingError(message)
        raise RemoteRunError(message)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        doc = resp.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
