"""Request signatures (DESIGN.md, "Request signature"): HMAC-SHA256 with the session's sign_key.

A mini-program cannot keep a static secret, so each login gets its own key. The signature binds
method, path, query, time, a one-off nonce and the body, so a captured request can be neither
altered nor replayed. This module is plain Python (no Flask): the server check, the tests and the
load tests (Locust) all sign with `sign_headers`, so there is one implementation of the format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, quote

from minishop.errors import AppError, ErrorCode

TIMESTAMP_HEADER = "X-Timestamp"
NONCE_HEADER = "X-Nonce"
SIGNATURE_HEADER = "X-Signature"
HEADERS = (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)

MAX_SKEW_SECONDS = 300
NONCE_TTL_SECONDS = 600
NONCE_ALPHABET = string.ascii_letters + string.digits
NONCE_LENGTH = 32

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[A-Za-z0-9]{16,64}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


def canonical_query(query: str) -> str:
    """Decoded pairs sorted by name then value, re-encoded RFC 3986 style (only -_.~ kept)."""
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)


def string_to_sign(
    method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes
) -> str:
    body_hash = hashlib.sha256(body).hexdigest()
    return "\n".join([method.upper(), path, canonical_query(query), timestamp, nonce, body_hash])


def compute_signature(sign_key: str, message: str) -> str:
    """Lowercase hex HMAC-SHA256 keyed with the base64-decoded sign_key."""
    key = base64.b64decode(sign_key)
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    return "".join(secrets.choice(NONCE_ALPHABET) for _ in range(NONCE_LENGTH))


def sign_headers(
    method: str,
    path: str,
    query: str,
    body: bytes,
    sign_key: str,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The three headers that sign this request; timestamp and nonce default to now and random."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    once = new_nonce() if nonce is None else nonce
    message = string_to_sign(method, path, query, stamp, once, body)
    return {
        TIMESTAMP_HEADER: stamp,
        NONCE_HEADER: once,
        SIGNATURE_HEADER: compute_signature(sign_key, message),
    }


class SignatureError(AppError):
    """40102; `reason` is one word for metrics: missing, malformed, stale, mismatch, replayed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(ErrorCode.BAD_SIGNATURE, f"bad request signature: {detail}")
        self.reason = reason


def verify(
    method: str,
    path: str,
    query: str,
    body: bytes,
    headers: Mapping[str, str],
    sign_key: str,
    now: float,
    remember_nonce: Callable[[str], bool],
) -> None:
    """Raise 40102 unless the headers sign this request; reasons never reveal the expected value.

    `remember_nonce` records a nonce atomically and says whether it was new. It is called only for
    a request whose signature is right, so a caller without the key cannot fill the nonce store.
    """
    for name in HEADERS:
        if not headers.get(name):
            raise SignatureError("missing", f"missing {name} header")
    timestamp, nonce, signature = (headers[name] for name in HEADERS)
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError("malformed", f"malformed {TIMESTAMP_HEADER}")
    if not _NONCE.fullmatch(nonce):
        raise SignatureError("malformed", f"malformed {NONCE_HEADER}: 16-64 letters and digits")
    if not _SIGNATURE.fullmatch(signature):
        raise SignatureError("malformed", f"malformed {SIGNATURE_HEADER}: 64 lowercase hex digits")
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        raise SignatureError("stale", "stale timestamp")
    expected = compute_signature(
        sign_key, string_to_sign(method, path, query, timestamp, nonce, body)
    )
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureError("mismatch", "signature mismatch")
    if not remember_nonce(nonce):
        raise SignatureError("replayed", "replayed nonce")
