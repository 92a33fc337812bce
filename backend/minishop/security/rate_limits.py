"""Rate limits: Flask-Limiter, counts every worker shares (Redis or the embedded store).

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

Strategy (`RATELIMIT_STRATEGY`, default `batched-fixed-window`, batched_limits.py): a limit under
100 per window (login 10/min, orders 30/min, uploads 20/min) is an exact moving window, one
round trip per request as before. A larger one (the default 300/min) is a fixed window that each
worker counts locally and adds to the shared counter in batches of B = floor(1 % of the limit)
hits, or every 0.1 s: no round trip for most requests. Tolerance: a window accepts at most
`limit + workers x (B - 1)` requests (300/min with 4 workers: at most 308); a refused request
still says so with `Retry-After` and `X-RateLimit-*`. The fixed window restarts
a minute after its first hit, so across a window's end a client may get up to twice the limit
within one minute, as with Flask-Limiter's `fixed-window`; `moving-window` has no such edge,
at a round trip per request.

The limiter is built per app by `build_limiter` (extensions.py calls it in create_app).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limit, Limiter, RequestLimit
from limits.strategies import STRATEGIES

from minishop.config import Settings
from minishop.domain.auth import Principal
from minishop.observability import metrics
from minishop.security import batched_limits

View = TypeVar("View", bound=Callable[..., object])

# Flask-Limiter looks its RATELIMIT_STRATEGY up in this table when an app starts.
STRATEGIES[batched_limits.NAME] = batched_limits.BatchedRateLimiter  # type: ignore[assignment]

log = logging.getLogger(__name__)

NAMED_LIMIT = "minishop_named_limit"
NAMED_LIMITS = ("RATELIMIT_LOGIN", "RATELIMIT_ORDERS", "RATELIMIT_UPLOADS")
# Probes and the scrape endpoint answer infrastructure, which must never be throttled; the API
# reference (/docs and its static files) would spend a reader's budget on files that never change.
# WeChat Pay's notifications come from a few WeChat addresses and are verified by signature: a
# 429 would only delay the buyer's order.
EXEMPT_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/docs", "/api/v1/payments/wechat/notify"}
)
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


# Flask-Limiter's default header names; a 429 always carries them.
HEADER_LIMIT = "X-RateLimit-Limit"
HEADER_REMAINING = "X-RateLimit-Remaining"
HEADER_RESET = "X-RateLimit-Reset"
HEADER_RETRY_AFTER = "Retry-After"
HEADERS = (HEADER_LIMIT, HEADER_REMAINING, HEADER_RESET, HEADER_RETRY_AFTER)


def _describe_breach(limiter: Limiter, response: Response) -> Response:
    """A 429 always says which limit and for how long, whatever RATELIMIT_HEADERS_ENABLED says.

    Headers on every response cost a second Redis round trip per request (the window's state),
    so they are off by default; a refused request is the one that needs them. Flask-Limiter
    floors `Retry-After`, and a client that waited exactly that long could be refused again:
    here it is rounded up. Registered before the limiter, so it runs after the limiter's own hook.
    """
    limit = limiter.current_limit
    if response.status_code != 429 or limit is None or not limit.breached:
        return response
    reset_at = limit.window.reset_time
    response.headers[HEADER_LIMIT] = str(limit.limit.amount)
    response.headers[HEADER_REMAINING] = "0"
    response.headers[HEADER_RESET] = str(math.ceil(reset_at))
    response.headers[HEADER_RETRY_AFTER] = str(max(1, math.ceil(reset_at - time.time())))
    return response


def build_limiter(settings: Settings) -> Limiter:
    """One limiter per app (Flask-Limiter keeps its storage on the instance); `install` binds it."""
    defaults: list[str | Callable[[], str] | Limit] = [
        limit for limit in [settings.RATELIMIT_DEFAULT] if limit
    ]
    defaults.append(Limit(_named_limit_value, key_function=_named_limit_key, scope="named"))
    limiter = Limiter(client_ip, default_limits=defaults, on_breach=_count_breach)
    limiter.request_filter(_is_exempt)
    return limiter


def install(app: Flask, limiter: Limiter) -> None:
    """Register the limiter's request hook now: the caller decides where it runs among its own.

    Our 429 headers are registered first, so they run after the limiter's own (Flask runs
    `after_request` functions in reverse).
    """
    app.after_request(partial(_describe_breach, limiter))
    limiter.init_app(app)
