"""Security headers on every response, HSTS only in production, CORS only for listed origins."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from tests.conftest import ClientWith

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


@pytest.mark.parametrize(
    "path", ["/healthz", "/api/v1/categories", "/api/v1/nowhere", "/openapi.json"]
)
def test_every_response_carries_the_security_headers(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    for name, value in EXPECTED.items():
        assert response.headers[name] == value
    assert "Strict-Transport-Security" not in response.headers
    assert "Access-Control-Allow-Origin" not in response.headers


def test_hsts_when_configured_as_in_production(client_with: ClientWith) -> None:
    response = client_with(HSTS_MAX_AGE_SECONDS=31536000).get("/healthz")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_cors_answers_only_listed_origins(client_with: ClientWith) -> None:
    client = client_with(CORS_ORIGINS="https://admin.example.com, https://ops.example.com")
    preflight = client.options(
        "/api/v1/orders",
        headers={
            "Origin": "https://admin.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, x-signature, x-nonce, x-timestamp",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://admin.example.com"
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "x-signature", "x-nonce", "x-timestamp"} <= set(allowed.split(", "))
    simple = client.get("/api/v1/categories", headers={"Origin": "https://ops.example.com"})
    assert simple.headers["Access-Control-Allow-Origin"] == "https://ops.example.com"
    assert "Retry-After" in simple.headers["Access-Control-Expose-Headers"]
    stranger = client.get("/api/v1/categories", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in stranger.headers


def test_gunicorn_sends_no_version_banner(live_server: str, app: Any) -> None:
    response = requests.get(f"{live_server}/healthz", timeout=5)
    assert response.headers.get("Server", "") in ("", "gunicorn")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
