"""Signed HTTP calls to the provincial platform, with the envelope unwrapped.

Translates everything httpx and the gateway can say into syncd errors, once:
timeouts, dropped connections, 429/502/503/504 and the busy codes become
``Transient*`` errors (the retry policy's business); a bad signature or an
unknown app key become one clear ``PlatformError`` that is never retried; an
expired timestamp or reused nonce is re-signed once right here.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson

from connectors.platform import signing
from connectors.platform.profile import PlatformProfile
from connectors.platform.ratelimit import RateLimiter
from syncd.errors import PlatformError, TransferError, TransientPlatformError, TransientTransferError

TRANSIENT_HTTP = frozenset({429, 502, 503, 504})


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class PlatformClient:
    """One app's signed session with one platform.

    Args:
        base_url: the gateway (HTTPS; plain HTTP only for loopback).
        app_key, app_secret: the credentials (the secret is never logged or raised).
        profile: the province's names and codes.
        limiter: the shared per-app-key rate limiter.
        transport: an httpx transport (tests pass ``httpx.MockTransport``).
        timeout: seconds per request (connect, read, write, pool).
        ca_bundle: an extra CA file for a government intranet CA.
        clock_ms / nonce: injectable for known-answer tests.
    """

    def __init__(self, base_url: str, app_key: str, app_secret: str, profile: PlatformProfile, *,
                 limiter: RateLimiter, channel: str = "platform",
                 transport: httpx.BaseTransport | None = None, timeout: float = 10.0,
                 ca_bundle: str | None = None, max_connections: int = 10,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 nonce: Callable[[], str] = signing.new_nonce) -> None:
        url = httpx.URL(base_url)
        if url.scheme != "https" and url.host not in ("127.0.0.1", "localhost", "::1"):
            raise TransferError(f"plain HTTP is allowed only for loopback, not {url.host}",
                                channel=channel)
        verify: Any = True
        if ca_bundle:
            verify = ssl.create_default_context()
            verify.load_verify_locations(cafile=ca_bundle)
        self.http = httpx.Client(base_url=base_url, transport=transport, verify=verify,
                                 timeout=httpx.Timeout(timeout),
                                 limits=httpx.Limits(max_connections=max_connections,
                                                     max_keepalive_connections=max_connections))
        self.app_key, self._secret, self.profile = app_key, app_secret, profile
        self.limiter, self.channel = limiter, channel
        self.clock_ms, self.nonce = clock_ms, nonce
        self._token: tuple[str, float] | None = None

    def close(self) -> None:
        self.http.close()

    # --- one call -------------------------------------------------------------
    def call(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
             body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """Send a signed request and return the envelope's data.

        Raises:
            TransientTransferError / TransientPlatformError: worth retrying.
            PlatformError: the platform refused (bad signature, validation …).
            TransferError: the answer made no sense (not JSON, no envelope).
        """
        raw = b"" if body is None else orjson.dumps(body)
        for attempt in (1, 2):  # a stale timestamp or reused nonce: re-sign once
            try:
                return self._send(method, path, query or [], raw, headers or {})
            except PlatformError as exc:
                if exc.code in self.profile.resign_codes and attempt == 1:
                    continue
                if exc.code in self.profile.resign_codes:
                    raise TransientPlatformError(exc.code, str(exc), channel=self.channel) from None
                raise
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, query: list[tuple[str, str]], raw: bytes,
              extra: dict[str, str]) -> Any:
        headers = {"Content-Type": "application/json", **extra, **self._auth(method, path, query, raw)}
        qs = urlencode(query, quote_via=quote) if query else ""
        self.limiter.acquire()
        try:
            response = self.http.request(method, path + (f"?{qs}" if qs else ""), content=raw or None,
                                         headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientTransferError(f"{method} {path}: timed out ({type(exc).__name__})",
                                         channel=self.channel) from None
        except httpx.TransportError as exc:
            raise TransientTransferError(f"{method} {path}: connection failed "
                                         f"({type(exc).__name__})", channel=self.channel) from None
        if response.status_code in TRANSIENT_HTTP:
            raise TransientTransferError(f"{method} {path}: HTTP {response.status_code}",
                                         channel=self.channel,
                                         retry_after=_retry_after(response))
        return self._unwrap(method, path, response)

    def _unwrap(self, method: str, path: str, response: httpx.Response) -> Any:
        env = self.profile.envelope
        try:
            doc = orjson.loads(response.content)
            code = str(doc[env["code"]])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise TransferError(f"{method} {path}: HTTP {response.status_code} without an "
                                f"envelope", channel=self.channel) from None
        if code == self.profile.success_code:
            return doc.get(env["data"])
        message = str(doc.get(env["message"]) or "")
        data = doc.get(env["data"]) or {}
        request_id = doc.get(env["request_id"])
        if code in self.profile.transient_codes:
            raise TransientPlatformError(code, message, channel=self.channel,
                                         request_id=request_id, retry_after=_retry_after(response))
        if code == "1001":
            message += " — check the app key and secret configured for this channel"
        raise PlatformError(code, message, channel=self.channel, request_id=request_id,
                            errors=data.get("errors") if isinstance(data, dict) else None)

    # --- authentication -------------------------------------------------------
    def _auth(self, method: str, path: str, query: list[tuple[str, str]], raw: bytes) -> dict[str, str]:
        if self.profile.signing == "token":
            return {"Authorization": f"Bearer {self._bearer()}"}
        return signing.sign_headers(self.profile.signing, self.app_key, self._secret, method, path,
                                    query, raw, self.clock_ms(), self.nonce())

    def _bearer(self) -> str:
        now = self.clock_ms() / 1000
        if self._token is None or self._token[1] - 30 < now:
            raw = orjson.dumps({"appKey": self.app_key, "appSecret": self._secret})
            path = self.profile.paths["token"]
            self.limiter.acquire()
            try:
                response = self.http.post(path, content=raw,
                                          headers={"Content-Type": "application/json"})
            except httpx.TransportError as exc:
                raise TransientTransferError(f"POST {path}: {type(exc).__name__}",
                                             channel=self.channel) from None
            data = self._unwrap("POST", path, response)
            self._token = (str(data["token"]), now + float(data.get("expiresIn", 3600)))
        return self._token[0]
