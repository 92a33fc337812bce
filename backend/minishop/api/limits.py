"""Rate limits: Flask-Limiter with a moving window in Redis, so every worker shares the counts.

- `RATELIMIT_DEFAULT` applies to every endpoint, per client IP (the address `TRUSTED_PROXY_COUNT`
  proxies reported, through werkzeug's ProxyFix; `X-Forwarded-For` is never read blindly).
- Named limits tighten one endpoint: `@per_ip("RATELIMIT_LOGIN")` keys on the client IP,
  `@per_user("RATELIMIT_ORDERS")` on the logged-in user (it needs `@login_required`, or `@signed`).
  The value is read from the app config on each request, so tests and deployments tune it.

Every check runs in one `before_request` hook that guards registers after authentication (per-user
keys need the caller) and before the signature and body checks, so even a malformed request
counts. Over a limit: 429/42900 with `Retry-After` and `X-RateLimit-*` (on other responses only
with RATELIMIT_HEADERS_ENABLED, which costs a Redis round trip each). When Redis is down the
limiter lets requests through (`RATELIMIT_SWALLOW_ERRORS`, default on) and logs each failure.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limit, Limiter, RequestLimit
from werkzeug.http import http_date

from minishop.domain.auth import Principal
from minishop.observability import metrics

View = TypeVar("View", bound=Callable[..., object])

log = logging.getLogger(__name__)

NAMED_LIMIT = "minishop_named_limit"
NAMED_LIMITS = ("RATELIMIT_LOGIN", "RATELIMIT_ORDERS", "RATELIMIT_UPLOADS")
# Probes and the scrape endpoint answer infrastructure, which must never be throttled; the API
# reference (/docs and its static files) would spend a reader's budget on files that never change.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs"})
EXEMPT_PREFIXES = ("/docs/",)


def _is_exempt() -> bool:
    return request.path in EXEMPT_PATHS or request.path.startswith(EXEMPT_PREFIXES)


def client_ip() -> str:
    return request.remote_addr or "unknown"


def user_key() -> str:
    principal: Principal = g.principal
    return f"user:{principal.user.id}"


def _mark(config_key: str, key_func: Callable[[], str]) -> Callable[[View], View]:
    if config_key not in NAMED_LIMITS:
        raise ValueError(f"{config_key} is not one of {NAMED_LIMITS}")

    def mark(view: View) -> View:
        setattr(view, NAMED_LIMIT, (config_key, key_func))
        return view

    return mark


def per_ip(config_key: str) -> Callable[[View], View]:
    """Mark a view with the named limit `config_key`, counted per client IP."""
    return _mark(config_key, client_ip)


def per_user(config_key: str) -> Callable[[View], View]:
    """Mark a logged-in view with the named limit `config_key`, counted per user."""
    return _mark(config_key, user_key)


def _named_limit() -> tuple[str, Callable[[], str]] | None:
    view = current_app.view_functions.get(request.endpoint or "")
    marker: tuple[str, Callable[[], str]] | None = getattr(view, NAMED_LIMIT, None)
    return marker


def _named_limit_value() -> str:
    """The limit string for this request's view; empty (no limit) when it has none."""
    marker = _named_limit()
    return str(current_app.config[marker[0]]) if marker else ""


def _named_limit_key() -> str:
    marker = _named_limit()
    return marker[1]() if marker else client_ip()


def _count_breach(limit: RequestLimit) -> None:
    route = metrics.request_route() or metrics.UNMATCHED_ROUTE
    metrics.RATE_LIMITED.labels(route=route).inc()
    log.info("rate limited: %s on %s", limit.limit, route)


def _describe_breach(response: Response) -> Response:
    """A 429 always says which limit and for how long, whatever RATELIMIT_HEADERS_ENABLED says.

    Headers on every response cost a second Redis round trip per request (the window's state),
    so they are off by default; a refused request is the one that needs them. Flask-Limiter
    floors `Retry-After`, and a client that waited exactly that long could be refused again:
    here it is rounded up. Registered before the limiter, so it runs after the limiter's own hook.
    """
    limit = limiter().current_limit
    if response.status_code != 429 or limit is None or not limit.breached:
        return response
    config = current_app.config
    reset_at = limit.window.reset_time
    wait = max(1, math.ceil(reset_at - time.time()))
    response.headers[config["RATELIMIT_HEADER_LIMIT"]] = str(limit.limit.amount)
    response.headers[config["RATELIMIT_HEADER_REMAINING"]] = "0"
    response.headers[config["RATELIMIT_HEADER_RESET"]] = str(math.ceil(reset_at))
    response.headers[config["RATELIMIT_HEADER_RETRY_AFTER"]] = (
        str(wait)
        if config["RATELIMIT_HEADER_RETRY_AFTER_VALUE"] == "delta-seconds"
        else http_date(time.time() + wait)
    )
    return response


def init_app(app: Flask) -> None:
    """One limiter per app: Flask-Limiter keeps its storage on the instance."""
    app.after_request(_describe_breach)
    config = app.config
    defaults: list[str | Callable[[], str] | Limit] = [
        limit for limit in [config["RATELIMIT_DEFAULT"]] if limit
    ]
    defaults.append(Limit(_named_limit_value, key_function=_named_limit_key, scope="named"))
    app_limiter = Limiter(client_ip, default_limits=defaults, on_breach=_count_breach)
    app_limiter.request_filter(_is_exempt)
    app_limiter.init_app(app)
    app.extensions["minishop_limiter"] = app_limiter


def limiter() -> Limiter:
    app_limiter: Limiter = current_app.extensions["minishop_limiter"]
    return app_limiter
