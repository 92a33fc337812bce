"""The catalog shortcut: a WSGI layer that answers the catalog reads this worker's first-level
cache holds before Flask sees them (issue 14, docs/performance/profile-catalog.md).

A held read's body is already the response (cache.py keeps it serialised, with its ETag), so
inside Flask a hit cost mostly Flask itself: the request context, routing, werkzeug's request and
response objects and a dozen hooks. Here it costs a dict lookup plus what every request must do,
each done by the function the Flask path calls, so the answer, its access line and its metrics
are the ones Flask would have made: the request id (`request_id_from`), the trace
(`tracing.shortcut_tracing`), the rate limits (`RequestLimits.hit`), the caching headers and the
304 (`http_cache`), the envelope (`raw_ok_body`), the security headers (`security_headers`), the
access line (`write_access_line`) and the HTTP metrics (`observe_request`).

It answers only what it can answer exactly as Flask would, and hands everything else to Flask
untouched: a GET without a body of `/api/v1/products/<id>` (the id in canonical digits), or of
`/api/v1/products` or `/api/v1/categories` without a query string (the default first page), whose
body this worker's first level holds. A miss, a negative entry (an unknown product: Flask answers
the 40400) and any other request go to Flask. A read the limits refuse goes to Flask with its
refusal (`rate_limits.REFUSED_AHEAD`): counted once, answered by the error handler like every
429; if the limits' store fails, Flask counts the read again and answers as it decides.

Not installed (Flask answers every read) under SkyWalking (its agent traces only Flask's own
dispatch), with CORS_ORIGINS (flask-cors adds its headers inside Flask) or
RATELIMIT_HEADERS_ENABLED (Flask adds those headers), or with the cache off.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from minishop import extensions
from minishop.api import http_cache, products
from minishop.api.common import PageQuery
from minishop.domain import catalog
from minishop.domain.catalog import CatalogCache
from minishop.envelope import raw_ok_body
from minishop.observability import metrics, tracing
from minishop.observability.access import write_access_line
from minishop.observability.request_id import HEADER as REQUEST_ID_HEADER
from minishop.observability.request_id import request_id_from
from minishop.security import rate_limits
from minishop.security.headers import security_headers

PRODUCT_ENDPOINT = "products.get_product"
PRODUCTS_ENDPOINT = "products.list_products"
CATEGORIES_ENDPOINT = "products.list_categories"
CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")
STATUS_LINES = {status: f"{status} {HTTP_STATUS_CODES[status].upper()}" for status in (200, 304)}


@dataclass(frozen=True)
class HeldRead:
    """A catalog read the shortcut may answer: its endpoint, route template and cache entry."""

    endpoint: str
    route: str
    cache: str
    key: str


def _default_page_size(query: type[PageQuery]) -> int:
    """The page size a request without a query string is answered with."""
    size: int = query.model_fields["page_size"].default
    return size


def _no_user() -> str:
    """The shortcut only serves endpoints without login, which have no per-user limit."""
    raise LookupError("a catalog read has no user")


class CatalogShortcut:
    """The WSGI layer (see the module docstring); `app` is Flask's own `wsgi_app`."""

    def __init__(
        self,
        app: WSGIApplication,
        *,
        catalog_cache: CatalogCache,
        routes: dict[str, str],
        limits: rate_limits.RequestLimits | None,
        trace: tracing.NoTracing | tracing.OpenTelemetryTracing,
        with_metrics: bool,
        hsts_max_age: int,
    ) -> None:
        self.app = app
        self.catalog_cache = catalog_cache
        self.limits = limits
        self.trace = trace
        self.with_metrics = with_metrics
        self.security_headers = security_headers(hsts_max_age)
        self.product_route = routes[PRODUCT_ENDPOINT]
        self.product_prefix = self.product_route.partition("<")[0]
        self.first_pages = {
            routes[PRODUCTS_ENDPOINT]: HeldRead(
                PRODUCTS_ENDPOINT,
                routes[PRODUCTS_ENDPOINT],
                catalog.PRODUCTS_CACHE,
                catalog.products_key(None, 1, _default_page_size(products.ProductQuery)),
            ),
            routes[CATEGORIES_ENDPOINT]: HeldRead(
                CATEGORIES_ENDPOINT,
                routes[CATEGORIES_ENDPOINT],
                catalog.CATEGORIES_CACHE,
                catalog.categories_key(1, _default_page_size(products.CategoryQuery)),
            ),
        }

    def _read_of(self, environ: WSGIEnvironment) -> HeldRead | None:
        if (
            environ["REQUEST_METHOD"] != "GET"
            or environ.get("QUERY_STRING")
            or environ.get("CONTENT_LENGTH", "0") not in ("", "0")
            or "HTTP_TRANSFER_ENCODING" in environ
        ):
            return None
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(self.product_prefix):
            product_id = path[len(self.product_prefix) :]
            if not CANONICAL_ID.fullmatch(product_id):
                return None
            return HeldRead(PRODUCT_ENDPOINT, self.product_route, catalog.PRODUCT_CACHE, product_id)
        return self.first_pages.get(path)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        read = self._read_of(environ)
        held = None if read is None else catalog.held_body(self.catalog_cache, read.cache, read.key)
        if read is None or held is None or held.data is None:
            return self.app(environ, start_response)
        client_ip = environ.get("REMOTE_ADDR") or "unknown"
        if self.limits is not None:
            try:
                refused, _ = self.limits.hit(read.endpoint, client_ip, _no_user)
            except Exception:  # the store failed and the limits fail closed: Flask decides
                return self.app(environ, start_response)
            if refused is not None:
                environ[rate_limits.REFUSED_AHEAD] = refused
                return self.app(environ, start_response)
        return self._answer(environ, start_response, read, held.data, held.etag, client_ip)

    def _answer(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        read: HeldRead,
        data: bytes,
        etag: str,
        client_ip: str,
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        if self.with_metrics:
            metrics.HTTP_IN_FLIGHT.inc()
        request_trace = self.trace.trace(environ, read.route, environ["PATH_INFO"])
        status = 500  # what the trace records if answering fails (gunicorn answers 50000)
        try:
            request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
            headers = list(http_cache.catalog_headers(environ, etag).items())
            if http_cache.is_not_modified(environ, etag):
                status, body = 304, b""
            else:
                status, body = 200, raw_ok_body(data, request_id)
                headers[:0] = [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                ]
            trace_id, span_id = request_trace.ids
            if trace_id is not None:
                headers.append((tracing.TRACE_ID_HEADER, trace_id))
            headers.append((REQUEST_ID_HEADER, request_id))
            headers += self.security_headers
            seconds = time.perf_counter() - started
            if self.with_metrics:
                metrics.observe_request("GET", read.route, status, seconds)
            write_access_line(
                "GET",
                environ["PATH_INFO"],
                status,
                seconds,
                {
                    "request_id": request_id,
                    "trace_id": trace_id,
                    "span_id": span_id,
                    "user_id": None,
                    "method": "GET",
                    "route": read.route,
                    "client_ip": client_ip,
                },
            )
        finally:
            request_trace.finish(status)
            if self.with_metrics:
                metrics.HTTP_IN_FLIGHT.dec()
        start_response(STATUS_LINES[status], headers)
        return [body]


def install(app: Flask, limits: rate_limits.RequestLimits | None) -> None:
    """Put the shortcut in front of Flask where it can answer exactly as Flask would."""
    config = app.config
    trace = tracing.shortcut_tracing()
    catalog_cache = extensions.catalog_cache.of(app)
    if (
        trace is None
        or config["CORS_ORIGINS"].strip()
        or (limits is not None and limits.headers_enabled)
        or not catalog_cache.cache.policy.enabled
    ):
        return
    routes = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    app.wsgi_app = CatalogShortcut(  # type: ignore[method-assign]
        app.wsgi_app,
        catalog_cache=catalog_cache,
        routes=routes,
        limits=limits,
        trace=trace,
        with_metrics=config["METRICS_ENABLED"],
        hsts_max_age=config["HSTS_MAX_AGE_SECONDS"],
    )
