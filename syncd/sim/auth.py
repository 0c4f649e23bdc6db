"""Who may call the simulator: signature checks and bearer tokens, as the platform does them.

Checks run in the platform's order — app key (1004), signature (1001),
timestamp (1002), nonce (1003) — and a nonce is spent as soon as signature
and timestamp pass, even if the request fails afterwards, so a client that
retries without re-signing is caught exactly as the real gateway would.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from connectors.platform import signing

SCHEMES = ("hmac-sha256", "sm3", "token")
WINDOW_MS = 300_000  # timestamp tolerance
NONCE_TTL_MS = 600_000  # a nonce may not be reused within 10 minutes


@dataclass(frozen=True, slots=True)
class Denied:
    """A refused request: the platform code and a message saying what to fix."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The parts of an HTTP request that its signature covers."""

    method: str
    path: str
    query: str
    body: bytes
    headers: Mapping[str, str]


class Authenticator:
    """Verifies requests for a set of apps under one scheme.

    Args:
        apps: {app_key: secret}.
        scheme: ``hmac-sha256``, ``sm3`` or ``token``.
        token_ttl: seconds a bearer token stays valid (token scheme).
    """

    def __init__(self, apps: Mapping[str, str], scheme: str, token_ttl: int = 7200) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
        self.apps, self.scheme, self.token_ttl = dict(apps), scheme, token_ttl
        self._nonces: dict[tuple[str, str], int] = {}  # (app, nonce) -> spent at, ms
        self._tokens: dict[str, tuple[str, int]] = {}  # token -> (app, expires at, ms)

    def check(self, request: SignedRequest, now_ms: int) -> str | Denied:
        """The calling app key, or why the request is refused."""
        if self.scheme == "token":
            return self._check_token(request.headers.get("authorization", ""), now_ms)
        app = request.headers.get("x-app-key", "")
        if app not in self.apps:
            return Denied("1004", f"app key {app!r} unknown or disabled")
        timestamp = request.headers.get("x-timestamp", "")
        nonce = request.headers.get("x-nonce", "")
        if not 16 <= len(nonce) <= 64:
            return Denied("1001", "signature invalid: X-Nonce must be 16–64 characters")
        expected = signing.sign(self.scheme, self.apps[app], signing.string_to_sign(
            request.method, request.path, request.query, timestamp, nonce, request.body))
        if not hmac.compare_digest(expected.encode(),
                                   request.headers.get("x-signature", "").lower().encode()):
            return Denied("1001", "signature invalid")
        if not timestamp.isdigit() or abs(now_ms - int(timestamp)) > WINDOW_MS:
            return Denied("1002", f"timestamp {timestamp!r} outside ±{WINDOW_MS // 1000} s "
                                  f"of platform time {now_ms}")
        self._forget_nonces(now_ms)
        if (app, nonce) in self._nonces:
            return Denied("1003", f"nonce {nonce!r} already used")
        self._nonces[(app, nonce)] = now_ms
        return app

    def _forget_nonces(self, now_ms: int) -> None:
        """Drop nonces older than their reuse window (dicts keep insertion order)."""
        stale = []
        for key, spent in self._nonces.items():
            if spent > now_ms - NONCE_TTL_MS:
                break
            stale.append(key)
        for key in stale:
            del self._nonces[key]

    def issue_token(self, app: object, secret: object, now_ms: int) -> tuple[str, int] | Denied:
        """A bearer token and its lifetime in seconds, for ``POST /api/v1/auth/token``."""
        if not isinstance(app, str) or app not in self.apps:
            return Denied("1004", f"app key {app!r} unknown or disabled")
        if not isinstance(secret, str) or not hmac.compare_digest(secret.encode(),
                                                               self.apps[app].encode()):
            return Denied("1001", "app secret invalid")
        token = secrets.token_hex(16)
        self._tokens[token] = (app, now_ms + self.token_ttl * 1000)
        return token, self.token_ttl

    def _check_token(self, authorization: str, now_ms: int) -> str | Denied:
        scheme, _, token = authorization.partition(" ")
        entry = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if entry is None or entry[1] <= now_ms:
            self._tokens.pop(token, None)
            return Denied("1001", "bearer token missing, invalid or expired")
        return entry[0]
