"""Rate limits: our request hook on Flask-Limiter's strategy, counts every worker shares.

- `RATELIMIT_DEFAULT` applies to every endpoint, per client IP (the address `TRUSTED_PROXY_COUNT`
  proxies reported, through werkzeug's ProxyFix; `X-Forwarded-For` is never read blindly).
- Named limits tighten one endpoint: `@per_ip("RATELIMIT_LOGIN")` keys on the client IP,
  `@per_user("RATELIMIT_ORDERS")` on the logged-in user (it needs `@login_required`, or `@signed`).
  The values are read from the app config and parsed once per app, when it starts.

Every check runs in one `before_request` hook (`RequestLimits.check`) that guards registers after
authentication (per-user keys need the caller) and before the signature and body checks, so even
a malformed request counts. Over a limit: 429/42900 with `Retry-After` and `X-RateLimit-*` (on
other responses only with RATELIMIT_HEADERS_ENABLED, which costs a Redis round trip each). When
Redis is down the limiter lets requests through (`RATELIMIT_SWALLOW_ERRORS`, default on) and
logs each failure.

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

Why our own hook (issue 14, round 2): Flask-Limiter builds the storage from the URI
(`RATELIMIT_STORAGE_URI`, `RATELIMIT_STORAGE_OPTIONS`) and the strategy (`RATELIMIT_STRATEGY`)
and honours `RATELIMIT_ENABLED`; its request hook is not used. That hook resolves default,
blueprint and decorated limits, exemption scopes and meta limits on every request and re-parsed
our callable named limit: ~275 µs of the ~324 µs the limiter cost a cached product read (py-spy
under gunicorn; in-process cProfile agreed: 250-415 µs per request with the limiter against none,
180-270 µs with only a static default limit, so cheaper use of Flask-Limiter's API could not
reach 50 µs). Here an endpoint's limits are parsed and sorted once, and a request with only the
default limit costs a path check, the client IP and the strategy's local hit (docs/performance/
profile-request.md, "Round 2"). Keys and scopes are Flask-Limiter's, so counts carry over.
Flask-Limiter's per-request settings (application and meta limits, in-memory fallback, header
names, deduct_when...) therefore do not apply.

The limiter is built per app by `build_limiter` (extensions.py calls it in create_app).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, g, request
from flask_limiter import Limiter
from limits import RateLimitItem, parse_many
from limits.strategies import STRATEGIES
from werkzeug.exceptions import TooManyRequests

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


def _is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


def client_ip() -> str:
    return request.remote_addr or "unknown"


def user_key() -> str:
    principal: Principal = g.principal
    return f"user:{principal.user.id}"


def _mark(config_key: str, per_user: bool) -> Callable[[View], View]:
    if config_key not in NAMED_LIMITS:
        raise ValueError(f"{config_key} is not one of {NAMED_LIMITS}")

    def mark(view: View) -> View:
        setattr(view, NAMED_LIMIT, (config_key, per_user))
        return view

    return mark


def per_ip(config_key: str) -> Callable[[View], View]:
    """Mark a view with the named limit `config_key`, counted per client IP."""
    return _mark(config_key, per_user=False)


def per_user(config_key: str) -> Callable[[View], View]:
    """Mark a logged-in view with the named limit `config_key`, counted per user."""
    return _mark(config_key, per_user=True)


def _limits(text: str) -> list[RateLimitItem]:
    return parse_many(text) if text else []


@dataclass(frozen=True)
class _Rule:
    """One limit of an endpoint, with what its counter is keyed on."""

    item: RateLimitItem
    per_user: bool
    scope: str


class RateLimited(TooManyRequests):
    """429 with the breached limit's headers (errors.py copies `get_headers` into the envelope)."""

    def __init__(self, item: RateLimitItem, limit_headers: dict[str, str]) -> None:
        super().__init__()
        self.item = item
        self.limit_headers = limit_headers

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [*super().get_headers(*args, **kwargs), *self.limit_headers.items()]


# Flask-Limiter's default header names.
HEADER_LIMIT = "X-RateLimit-Limit"
HEADER_REMAINING = "X-RateLimit-Remaining"
HEADER_RESET = "X-RateLimit-Reset"
HEADER_RETRY_AFTER = "Retry-After"
HEADERS = (HEADER_LIMIT, HEADER_REMAINING, HEADER_RESET, HEADER_RETRY_AFTER)
# The WSGI environ key of a refusal the catalog shortcut counted (api/catalog_shortcut.py).
REFUSED_AHEAD = "minishop.rate_limited"


class RequestLimits:
    """The request hook: every limit of the endpoint, parsed once, hit on Flask-Limiter's strategy.

    An endpoint's rules (the default limit per IP, scoped to the endpoint, plus its named limit
    if the view is marked) are built on its first request and kept. Keys and scopes are the ones
    Flask-Limiter used, limits are evaluated in its order (smallest window first), and the first
    one breached refuses the request.
    """

    def __init__(self, app: Flask, limiter: Limiter) -> None:
        config = app.config
        self.strategy = limiter.limiter
        self.logger = limiter.logger
        self.prefix: tuple[str, ...] = (
            (config["RATELIMIT_KEY_PREFIX"],) if config.get("RATELIMIT_KEY_PREFIX") else ()
        )
        self.swallow_errors = bool(config.get("RATELIMIT_SWALLOW_ERRORS"))
        self.headers_enabled = bool(config.get("RATELIMIT_HEADERS_ENABLED"))
        self.default = _limits(config.get("RATELIMIT_DEFAULT") or "")
        self.named = {name: _limits(str(config[name])) for name in NAMED_LIMITS}
        self.view_functions = app.view_functions
        self.rules: dict[str, tuple[_Rule, ...]] = {}

    def _rules_of(self, endpoint: str) -> tuple[_Rule, ...]:
        rules = [_Rule(item, False, endpoint) for item in self.default]
        marker = getattr(self.view_functions.get(endpoint), NAMED_LIMIT, None)
        if marker is not None:
            name, per_user = marker
            rules += [_Rule(item, per_user, f"{endpoint}:named") for item in self.named[name]]
        return tuple(sorted(rules, key=lambda rule: rule.item))

    def check(self) -> None:
        """The request hook. A request the catalog shortcut refused has been counted there and
        arrives with its refusal (REFUSED_AHEAD), answered here like any other."""
        refused: RateLimited | None = request.environ.pop(REFUSED_AHEAD, None)
        if refused is None:
            endpoint = request.endpoint
            if not endpoint or _is_exempt(request.path):
                return
            refused, first = self.hit(endpoint, client_ip(), user_key)
            if self.headers_enabled and first is not None:
                g.rate_limit = first
        if refused is not None:
            _count_breach(refused.item)
            raise refused

    def hit(
        self, endpoint: str, ip: str, user: Callable[[], str]
    ) -> tuple[RateLimited | None, tuple[RateLimitItem, tuple[str, ...]] | None]:
        """Count this request against every limit of `endpoint`, per `ip` or per `user()`: the
        refusal of the first one breached (or None), and the first limit with its key."""
        rules = self.rules.get(endpoint)
        if rules is None:
            rules = self.rules[endpoint] = self._rules_of(endpoint)
        first = None
        for rule in rules:
            args = (*self.prefix, user() if rule.per_user else ip, rule.scope)
            if first is None:
                first = (rule.item, args)
            try:
                allowed = self.strategy.hit(rule.item, *args)
            except Exception:
                if not self.swallow_errors:
                    raise
                self.logger.exception("Failed to rate limit. Swallowing error")
                return None, first
            if not allowed:
                return RateLimited(rule.item, self.limit_headers(rule.item, args, True)), first
        return None, first

    def limit_headers(
        self, item: RateLimitItem, args: tuple[str, ...], breached: bool = False
    ) -> dict[str, str]:
        """`X-RateLimit-*` and `Retry-After` (rounded up: waiting that long is enough)."""
        window = self.strategy.get_window_stats(item, *args)
        return {
            HEADER_LIMIT: str(item.amount),
            HEADER_REMAINING: "0" if breached else str(window.remaining),
            HEADER_RESET: str(math.ceil(window.reset_time)),
            HEADER_RETRY_AFTER: str(max(1, math.ceil(window.reset_time - time.time()))),
        }

    def add_headers(self, response: Response) -> Response:
        """With RATELIMIT_HEADERS_ENABLED: the first limit's headers on every other response."""
        checked = g.pop("rate_limit", None)
        if checked is not None and response.status_code != 429:
            try:
                response.headers.update(self.limit_headers(*checked))
            except Exception:
                if not self.swallow_errors:
                    raise
                self.logger.exception("Failed to add rate limit headers. Swallowing error")
        return response


def _count_breach(item: RateLimitItem) -> None:
    route = metrics.request_route() or metrics.UNMATCHED_ROUTE
    metrics.RATE_LIMITED.labels(route=route).inc()
    log.info("rate limited: %s on %s", item, route)


def build_limiter() -> Limiter:
    """One limiter per app (Flask-Limiter keeps its storage on the instance); `install` binds it.

    It holds no limits: RequestLimits reads them from the app config.
    """
    return Limiter(client_ip)


def install(app: Flask, limiter: Limiter) -> RequestLimits | None:
    """Register the limits' request hook now: the caller decides where it runs among its own.

    Flask-Limiter builds the storage and the strategy from the app config; marking the app as
    already holding the limiter keeps `init_app` from registering its own request hooks.
    """
    app.extensions.setdefault("limiter", set()).add(limiter)
    limiter.init_app(app)
    if not limiter.enabled:
        return None
    limits = RequestLimits(app, limiter)
    app.before_request(limits.check)
    if limits.headers_enabled:
        app.after_request(limits.add_headers)
    return limits
