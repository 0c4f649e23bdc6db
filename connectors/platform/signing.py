"""Request signing for the provincial platform (reference profile, platform-api.md).

Pure functions, no I/O: the client signs with them and the simulator verifies
with the very same code, so a change to the rule cannot drift between the two.

String to sign — six lines joined by ``\\n``::

    METHOD / PATH / CANONICAL_QUERY / TIMESTAMP / NONCE / BODY_SHA256

Schemes: ``hmac-sha256`` (the default) and ``sm3`` (国密: the same HMAC
construction with SM3 as the hash). The ``token`` scheme does not sign requests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from urllib.parse import parse_qsl, quote

from gmssl import func, sm3

SIGNING_SCHEMES = ("hmac-sha256", "sm3")

_BLOCK = 64  # both SHA-256 and SM3 work on 512-bit blocks


def canonical_query(query: list[tuple[str, str]] | str) -> str:
    """The query as signed: decoded, sorted by name then value, re-encoded per RFC 3986.

    A string is a raw query as sent on the wire (``+`` decodes to a space, as
    in form encoding); a list holds already-decoded (name, value) pairs. Sorting
    the decoded pairs and re-encoding them makes the signature independent of
    how a client or proxy chose to escape the query.
    """
    pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else list(query)
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(pairs))


def _encode(text: str) -> str:
    """RFC 3986 percent-encoding: only the unreserved ``A-Za-z0-9-._~`` stay literal."""
    return quote(text, safe="-._~")


def string_to_sign(method: str, path: str, query: list[tuple[str, str]] | str,
                   timestamp_ms: str, nonce: str, body: bytes) -> str:
    """The six-line string both sides sign; PATH is taken exactly as sent (no host, no query)."""
    return "\n".join((method.upper(), path, canonical_query(query), timestamp_ms, nonce,
                      hashlib.sha256(body).hexdigest()))


def _sm3_digest(data: bytes) -> bytes:
    return bytes.fromhex(sm3.sm3_hash(func.bytes_to_list(data)))


def _hmac(digest: Callable[[bytes], bytes], key: bytes, message: bytes) -> bytes:
    """HMAC (RFC 2104) over any 64-byte-block hash.

    Written out because gmssl offers SM3 but no HMAC-SM3, and the standard
    library's ``hmac`` only reaches SM3 when OpenSSL happens to provide it.
    """
    if len(key) > _BLOCK:
        key = digest(key)
    key = key.ljust(_BLOCK, b"\x00")
    inner = digest(bytes(b ^ 0x36 for b in key) + message)
    return digest(bytes(b ^ 0x5C for b in key) + inner)


def sign(scheme: str, secret: str, string: str) -> str:
    """Lowercase hex HMAC of ``string`` keyed with the app secret, per ``scheme``.

    Raises:
        ValueError: for a scheme that does not sign requests (``token``) or is unknown.
    """
    key, message = secret.encode(), string.encode()
    if scheme == "hmac-sha256":
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    if scheme == "sm3":
        return _hmac(_sm3_digest, key, message).hex()
    raise ValueError(f"signing scheme {scheme!r} does not sign requests "
                     f"(signing schemes: {', '.join(SIGNING_SCHEMES)})")


def sign_headers(scheme: str, app_key: str, secret: str, method: str, path: str,
                 query: list[tuple[str, str]] | str, body: bytes, now_ms: int,
                 nonce: str) -> dict[str, str]:
    """The four authentication headers of one request.

    The caller supplies the time and nonce so that every retry can be re-signed
    fresh (the platform spends a nonce even on a failed request) and so that
    known-answer tests are deterministic.
    """
    timestamp = str(now_ms)
    signature = sign(scheme, secret, string_to_sign(method, path, query, timestamp, nonce, body))
    return {"X-App-Key": app_key, "X-Timestamp": timestamp, "X-Nonce": nonce,
            "X-Signature": signature}


def new_nonce() -> str:
    """32 random hex characters: inside the platform's 16–64 range, never guessable."""
    return secrets.token_hex(16)
