"""Signed requests for tests, through the same helper the load tests use (security/signature.py)."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient

from minishop.security.signature import sign_headers
from tests.conftest import bearer


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def signed_headers(
    data: dict[str, Any], method: str, path: str, body: bytes = b"", query: str = ""
) -> dict[str, str]:
    """Bearer token plus a fresh signature of this exact request with the session's sign_key."""
    return bearer(data) | sign_headers(method, path, query, body, data["sign_key"])


def send_signed(
    client: FlaskClient,
    data: dict[str, Any],
    method: str,
    path: str,
    payload: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """Send `payload` as JSON (or no body when None), signed as the logged-in `data`.

    `path` may carry a query string (`/api/v1/admin/orders?status=paid`): it is signed too.
    """
    body = b"" if payload is None else json_bytes(payload)
    bare_path, _, query = path.partition("?")
    headers = signed_headers(data, method, bare_path, body, query) | (headers or {})
    content_type = None if payload is None else "application/json"
    return client.open(path, method=method, data=body, headers=headers, content_type=content_type)
