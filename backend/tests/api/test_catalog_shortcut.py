"""The catalog shortcut (api/catalog_shortcut.py) answers a held read exactly as Flask would."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import Client, TestResponse

from minishop.api.catalog_shortcut import CatalogShortcut
from minishop.observability import tracing
from tests.api.test_products import detail
from tests.conftest import ClientWith
from tests.observability.logcheck import access_lines, check_line
from tests.observability.test_metrics import scrape, value
from tests.test_errors import assert_envelope

SHORTCUT_PATHS = ["/api/v1/products", "/api/v1/categories"]
# What differs between any two answers: made per request, or per second.
PER_REQUEST_HEADERS = {"X-Request-ID", "X-Trace-Id", "X-Accel-Expires", "Date"}
PER_REQUEST_FIELDS = {"timestamp", "request_id", "trace_id", "span_id", "duration_ms"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Counted:
    """A client of a fresh app, counting the requests that reached Flask's dispatch."""

    def __init__(self, client: FlaskClient, shortcut: Any = None) -> None:
        self.client = client
        self.app: Flask = client.application
        self.dispatched = 0
        self.app.teardown_request(self._count)
        shortcut = shortcut or self.app.wsgi_app
        assert isinstance(shortcut, CatalogShortcut)
        self.flask_only = Client(shortcut.app)  # the same app without the shortcut in front

    @classmethod
    def behind_proxy(cls, client: FlaskClient) -> Counted:
        proxy_fix = client.application.wsgi_app
        assert isinstance(proxy_fix, ProxyFix)
        return cls(client, proxy_fix.app)

    def _count(self, _exc: BaseException | None) -> None:
        self.dispatched += 1

    def held(self, path: str, **headers: str) -> TestResponse:
        """`path` answered by the shortcut, once the first level holds it (the invalidation
        subscriber empties it once when it starts, on a fresh app's first read)."""
        for _ in range(5):
            before = self.dispatched
            self.client.get(path)
            if self.dispatched == before:
                break
        before = self.dispatched
        response = self.client.get(path, headers=headers)
        assert self.dispatched == before, f"{path} {headers} reached Flask"
        return response

    def by_flask(self, path: str, **headers: str) -> TestResponse:
        before = self.dispatched
        # The client address Flask's test client sends.
        response = self.flask_only.get(
            path, headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}
        )
        assert self.dispatched == before + 1
        return response


@pytest.fixture()
def counted(client_with: ClientWith) -> Counted:
    return Counted(client_with())


def _comparable(response: TestResponse) -> tuple[int, list[tuple[str, str]], Any]:
    headers = sorted((k, v) for k, v in response.headers if k not in PER_REQUEST_HEADERS)
    document = json.loads(response.data) if response.data else None
    if document is not None:
        document.pop("request_id")
    return response.status_code, headers, document


def _access_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    return access_lines(lines)


VARIANTS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer not-a-token"},  # ignored by the catalog, but private
    {"Cookie": "a=b"},
    {"X-Request-ID": "mini-program-42", "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
    {"If-None-Match": "*"},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(v) or "plain")
def test_a_held_read_is_the_answer_and_the_access_line_flask_gives(
    counted: Counted,
    catalog: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    variant: dict[str, str],
) -> None:
    for path in [detail(catalog), *SHORTCUT_PATHS]:
        capsys.readouterr()
        short = counted.held(path, **variant)
        short_line = _access_lines(capsys)[-1]
        by_flask = counted.by_flask(path, **variant)
        flask_line = _access_lines(capsys)[-1]
        assert _comparable(short) == _comparable(by_flask)
        assert short.status_code == (304 if "If-None-Match" in variant else 200)
        for response, line in ((short, short_line), (by_flask, flask_line)):
            check_line(line)
            assert response.headers["X-Request-ID"] == line["request_id"]
            assert response.headers["X-Trace-Id"] == line["trace_id"]
            if response.data:
                assert response.get_json()["request_id"] == line["request_id"]
            if "X-Request-ID" in variant:
                assert line["request_id"] == variant["X-Request-ID"]
                assert line["trace_id"] == TRACE_ID
        for name in PER_REQUEST_FIELDS:
            short_line.pop(name), flask_line.pop(name)
        assert short_line == flask_line
        assert (
            abs(
                int(short.headers.get("X-Accel-Expires", "@0")[1:])
                - int(by_flask.headers.get("X-Accel-Expires", "@0")[1:])
            )
            <= 1
        )


def test_held_reads_are_counted_in_the_http_metrics(
    counted: Counted, catalog: dict[str, Any]
) -> None:
    route = "/api/v1/products/<int:product_id>"
    counted.held(detail(catalog))
    before = scrape(counted.client)
    dispatched = counted.dispatched
    for _ in range(3):
        assert counted.client.get(detail(catalog)).status_code == 200
    assert counted.client.get(detail(catalog), headers={"If-None-Match": "*"}).status_code == 304
    assert counted.dispatched == dispatched
    after = scrape(counted.client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("http_requests_total", method="GET", route=route, status="200") == 3
    assert grew("http_requests_total", method="GET", route=route, status="304") == 1
    assert grew("http_request_duration_seconds_count", method="GET", route=route) == 4
    assert grew("minishop_cache_hits_total", cache="product") == 4
    assert value(after, "http_requests_in_flight") == 1  # the scrape itself


def test_a_held_read_counts_against_the_limit_once_and_flask_refuses_it(
    client_with: ClientWith, catalog: dict[str, Any]
) -> None:
    counted = Counted(client_with(RATELIMIT_DEFAULT="5/minute"))
    path = detail(catalog)
    before = scrape(counted.client)
    answers = [counted.client.get(path) for _ in range(5)]
    for answer in answers:
        assert_envelope(answer, 200, 0)
    dispatched = counted.dispatched
    refused = counted.client.get(path)
    assert_envelope(refused, 429, 42900)
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Limit"] == "5"
    assert counted.dispatched == dispatched + 1  # answered by Flask's error handler
    after = scrape(counted.client)
    route = "/api/v1/products/<int:product_id>"
    refusals = value(after, "minishop_rate_limited_total", route=route) - value(
        before, "minishop_rate_limited_total", route=route
    )
    assert refusals == 1


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/api/v1/products/{id}?x=1", {}),  # a query string: Flask validates it
        ("/api/v1/products/0{id}", {}),  # not canonical digits
        ("/api/v1/products?page=1", {}),
        ("/api/v1/products/{id}/", {}),
        ("/api/v1/products/{id}", {"Content-Length": "2"}),  # a GET with a body
    ],
)
def test_anything_else_goes_to_flask(
    counted: Counted, catalog: dict[str, Any], path: str, headers: dict[str, str]
) -> None:
    path = path.format(id=catalog["puer"].id)
    counted.client.get(detail(catalog))
    counted.client.get("/api/v1/products")
    before = counted.dispatched
    counted.client.get(path, headers=headers, data=b"{}" if headers else None)
    counted.client.head(detail(catalog))
    assert counted.dispatched == before + 2


def test_an_unknown_product_is_flasks_40400(counted: Counted) -> None:
    for _ in range(2):
        before = counted.dispatched
        assert_envelope(counted.client.get("/api/v1/products/999999"), 404, 40400)
        assert counted.dispatched == before + 1


@pytest.mark.parametrize(
    "overrides",
    [{"CORS_ORIGINS": "https://console.example.com"}, {"CACHE_ENABLED": False}],
    ids=["cors", "cache-off"],
)
def test_not_installed_where_flask_must_answer(
    client_with: ClientWith, overrides: dict[str, Any]
) -> None:
    app = client_with(**overrides).application
    assert not isinstance(app.wsgi_app, CatalogShortcut)


def test_not_installed_under_skywalking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its agent traces only Flask's dispatch; checked on the backend choice alone."""
    monkeypatch.setattr(tracing, "_active", object.__new__(tracing.SkyWalkingTracing))
    assert tracing.shortcut_tracing() is None
    monkeypatch.setattr(tracing, "_active", tracing.NoTracing())
    assert isinstance(tracing.shortcut_tracing(), tracing.NoTracing)


def test_a_held_read_sees_the_client_address_the_trusted_proxy_reported(
    client_with: ClientWith, catalog: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """ProxyFix is the outermost layer, so the shortcut's limits and access line use the
    address the one trusted proxy reported, never a hop the client made up before it."""
    counted = Counted.behind_proxy(client_with(TRUSTED_PROXY_COUNT=1))
    forwarded = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
    capsys.readouterr()
    counted.held(detail(catalog), **forwarded)
    assert _access_lines(capsys)[-1]["client_ip"] == "203.0.113.9"
