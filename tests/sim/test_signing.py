"""Known-answer tests of the platform signing rule (platform-api.md, "Signing").

The expected strings were written out by hand from the spec; the expected
MACs were computed once with the standard library (``hmac`` with SHA-256, and
with OpenSSL's SM3) and pasted here, so a change in the rule cannot pass
silently by changing both sides.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from connectors.platform import signing

SECRET = "test-secret"
TS = "1764122400000"  # 2025-11-26T10:00:00+08:00
BODY = '{"items":[{"TASK_CODE":"X","TASK_NAME":"办"}]}'.encode()
BODY_SHA256 = "f7e4a682e528a4936698b2da3960c51314e98ef044bc896c6758354b9e983a02"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

POST_STRING = ("POST\n/api/v1/items:batchUpsert\n\n" + TS + "\n"
               "0123456789abcdef0123456789abcdef\n" + BODY_SHA256)
POST_HMAC_SHA256 = "56a07e7d120349d4f1c7a42ca0bcded0723a94862642412627bd2fa208af9ba1"
POST_HMAC_SM3 = "0dbadd1528593be06735f6ca1332bb3b592bef310abafa65466f1bcd112468b1"

GET_QUERY = "pageSize=100&cursor=a+b&updatedSince=2026-11-26T10:00:00+08:00"
GET_STRING = ("GET\n/api/v1/items\n"
              "cursor=a%20b&pageSize=100&updatedSince=2026-11-26T10%3A00%3A00%2008%3A00\n"
              + TS + "\nfedcba9876543210fedcba9876543210\n" + EMPTY_SHA256)
GET_HMAC_SHA256 = "49d453dd292b855f387e3fb54353210be6be5c3fafeae80651c97ef69a4b9999"


def test_sm3_known_vector() -> None:
    # GB/T 32905-2016, appendix A.1
    assert signing._sm3_digest(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")


def test_string_to_sign_post_with_body() -> None:
    got = signing.string_to_sign("POST", "/api/v1/items:batchUpsert", [], TS,
                                 "0123456789abcdef0123456789abcdef", BODY)
    assert hashlib.sha256(BODY).hexdigest() == BODY_SHA256
    assert got == POST_STRING


def test_string_to_sign_get_with_raw_query() -> None:
    # '+' decodes to a space (re-encoded %20), ':' is reserved (%3A), names sorted
    got = signing.string_to_sign("GET", "/api/v1/items", GET_QUERY, TS,
                                 "fedcba9876543210fedcba9876543210", b"")
    assert got == GET_STRING


def test_canonical_query_from_decoded_pairs() -> None:
    pairs = [("updatedSince", "2026-11-26T10:00:00+08:00"), ("b", "2"), ("a", "z"), ("a", "y"),
             ("region", "中 ~*/")]
    assert signing.canonical_query(pairs) == (
        "a=y&a=z&b=2&region=%E4%B8%AD%20~%2A%2F&updatedSince=2026-11-26T10%3A00%3A00%2B08%3A00")
    assert signing.canonical_query("") == ""
    assert signing.canonical_query("flag=&x=%2B1") == "flag=&x=%2B1"


def test_hmac_sha256_known_answer() -> None:
    assert hmac.new(SECRET.encode(), POST_STRING.encode(), hashlib.sha256).hexdigest() \
        == POST_HMAC_SHA256
    assert signing.sign("hmac-sha256", SECRET, POST_STRING) == POST_HMAC_SHA256
    assert signing.sign("hmac-sha256", SECRET, GET_STRING) == GET_HMAC_SHA256


def test_hmac_sm3_known_answer() -> None:
    assert signing.sign("sm3", SECRET, POST_STRING) == POST_HMAC_SM3
    if "sm3" in hashlib.algorithms_available:  # independent check through OpenSSL
        assert hmac.new(SECRET.encode(), POST_STRING.encode(), "sm3").hexdigest() == POST_HMAC_SM3


@pytest.mark.parametrize("key", [b"k", b"x" * 64, b"long key " * 20])
def test_hmac_construction_matches_stdlib(key: bytes) -> None:
    """The hand-written HMAC equals the standard one for short, block-sized and long keys."""
    ours = signing._hmac(lambda d: hashlib.sha256(d).digest(), key, b"message")
    assert ours == hmac.new(key, b"message", hashlib.sha256).digest()


def test_sign_headers() -> None:
    headers = signing.sign_headers("hmac-sha256", "app-1", SECRET, "POST",
                                   "/api/v1/items:batchUpsert", [], BODY, int(TS),
                                   "0123456789abcdef0123456789abcdef")
    assert headers == {"X-App-Key": "app-1", "X-Timestamp": TS,
                       "X-Nonce": "0123456789abcdef0123456789abcdef",
                       "X-Signature": POST_HMAC_SHA256}


def test_new_nonce_is_fresh_hex() -> None:
    nonces = {signing.new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(len(n) == 32 and int(n, 16) >= 0 for n in nonces)


def test_token_scheme_does_not_sign() -> None:
    with pytest.raises(ValueError, match="token"):
        signing.sign("token", SECRET, POST_STRING)
