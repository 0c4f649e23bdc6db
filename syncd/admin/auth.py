"""Bearer-token authentication for the admin API (pure ASGI, before any routing).

Everything but the open paths (``/health``, so a load balancer or the CLI can
probe without a secret) needs ``Authorization: Bearer <token>``. The token is
compared in constant time so response timing tells nothing about it.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health"})


class BearerAuth:
    """Refuse requests without the right bearer token with 401."""

    def __init__(self, app: ASGIApp, token: str, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app, self.open_paths = app, open_paths
        self._token = token.encode()

    def allowed(self, authorization: str) -> bool:
        scheme, _, credentials = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self.allowed(
                Headers(scope=scope).get("authorization", "")):
            await self.app(scope, receive, send)
            return
        refusal = JSONResponse({"error": "missing or wrong bearer token"}, status_code=401,
                               headers={"WWW-Authenticate": 'Bearer realm="syncd"'})
        await refusal(scope, receive, send)
