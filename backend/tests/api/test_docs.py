"""GET /docs: the human API reference, Swagger UI rendering /openapi.json from our own assets.

Every asset comes from the app (no CDN), the page's CSP allows nothing but this origin, and a
headless Chromium against real gunicorn shows that the page really renders the endpoints.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.ci import binary, require_binaries
from tests.conftest import ClientWith
from tests.test_errors import assert_envelope

ASSET_REFERENCE = re.compile(r'(?:src|href)="([^"]+)"')
CONTENT_TYPES = {
    ".css": {"text/css"},
    ".js": {"text/javascript", "application/javascript"},
    ".svg": {"image/svg+xml"},
}


def referenced_assets(html: str) -> list[str]:
    return ASSET_REFERENCE.findall(html)


def csp_directives(policy: str) -> dict[str, list[str]]:
    parts = (directive.split() for directive in policy.split(";") if directive.strip())
    return {name: values for name, *values in parts}


def test_the_page_is_html_that_loads_only_our_assets(client: FlaskClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert not re.search(r"https?://|//[a-z0-9]", html, re.IGNORECASE)  # nothing from other hosts
    assets = referenced_assets(html)
    assert {Path(asset).suffix for asset in assets} == {".css", ".js", ".svg"}
    assert all(asset.startswith("/docs/static/") for asset in assets)
    assert 'data-openapi-url="/openapi.json"' in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # no inline script
    assert "<style" not in html and "style=" not in html


def test_every_asset_is_served_with_its_type(client: FlaskClient) -> None:
    assets = referenced_assets(client.get("/docs").get_data(as_text=True))
    assert len(assets) == 4  # Swagger UI's script and stylesheet, our initializer, the icon
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.mimetype in CONTENT_TYPES[Path(asset).suffix], asset
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert len(response.data) > 100, asset


def test_the_page_allows_only_same_origin_scripts_styles_and_fetches(client: FlaskClient) -> None:
    response = client.get("/docs")
    directives = csp_directives(response.headers["Content-Security-Policy"])
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["img-src"] == ["'self'", "data:"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_api_keeps_its_strict_policy(client: FlaskClient) -> None:
    policy = client.get("/api/v1/categories").headers["Content-Security-Policy"]
    assert policy == "default-src 'none'; frame-ancestors 'none'"


@pytest.mark.parametrize(
    "path", ["/docs/static/nothing.js", "/docs/static/../__init__.py", "/docs/static/"]
)
def test_unknown_assets_are_404_envelopes(client: FlaskClient, path: str) -> None:
    assert_envelope(client.get(path), 404, 40400)


def test_the_page_is_not_an_api_operation(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not [path for path in paths if path.startswith("/docs")]


def test_the_page_and_its_assets_are_not_rate_limited(client_with: ClientWith) -> None:
    client = client_with(RATELIMIT_DEFAULT="2 per minute")
    assets = referenced_assets(client.get("/docs").get_data(as_text=True))
    assert assets
    for _ in range(3):
        assert client.get("/docs").status_code == 200
        for asset in assets:
            assert client.get(asset).status_code == 200, asset
    assert client.get("/api/v1/categories").status_code == 200
    assert client.get("/api/v1/categories").status_code == 200
    assert client.get("/api/v1/categories").status_code == 429  # the limit does apply elsewhere


def render_in_chromium(url: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """The DOM after the page's scripts ran (stdout), and the browser's console (stderr)."""
    return subprocess.run(
        [
            binary("chromium"),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            "--dump-dom",
            "--virtual-time-budget=10000",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_a_browser_renders_every_endpoint(live_server: str, app: Any, tmp_path: Path) -> None:
    require_binaries("chromium")
    document = app.test_client().get("/openapi.json").get_json()
    rendered = render_in_chromium(f"{live_server}/docs", tmp_path / "chromium")
    dom, console = rendered.stdout, rendered.stderr
    assert re.search(r'class="title">MiniShop API<', dom), console
    assert 'data-path="/api/v1/orders"' in dom
    assert set(re.findall(r'data-path="([^"]+)"', dom)) == set(document["paths"])
    assert "Content Security Policy" not in console  # the page's own policy blocked nothing
