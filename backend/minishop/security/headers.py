"""The HTTP edge: proxy headers we trust on the way in, security headers and CORS on the way out.

- `X-Forwarded-For`/`-Proto` are believed only for `TRUSTED_PROXY_COUNT` hops (werkzeug ProxyFix),
  so a client cannot pick its own IP for the rate limiter or the logs.
- Every response says nosniff, may not be framed, leaks no referrer and, being JSON or a file,
  may not load anything (CSP `default-src 'none'`). A view that sets its own policy keeps it:
  the API reference page (api/docs.py) loads this origin's scripts and styles.
- HSTS only where `HSTS_MAX_AGE_SECONDS` is set (production): on plain-HTTP local runs it would
  pin browsers to HTTPS.
- CORS only for `CORS_ORIGINS`: the mini-program (wx.request) needs none; a web console would.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from minishop.security import rate_limits, signature

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
CORS_ALLOW_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "X-Request-ID",
    *signature.HEADERS,
]


def security_headers(hsts_max_age: int) -> list[tuple[str, str]]:
    """What every response says, with this app's HSTS (the settings do not change at run time)."""
    added = list(SECURITY_HEADERS.items())
    if hsts_max_age:
        added.append(("Strict-Transport-Security", f"max-age={hsts_max_age}; includeSubDomains"))
    return added


def _security_headers_hook(hsts_max_age: int) -> Callable[[Response], Response]:
    added = security_headers(hsts_max_age)

    def add_security_headers(response: Response) -> Response:
        headers = response.headers
        if "Content-Security-Policy" in headers:  # a view with its own policy keeps it
            for name, value in added:
                headers.setdefault(name, value)
        else:
            headers.extend(added)
        return response

    return add_security_headers


def init_app(app: Flask) -> None:
    app.after_request(_security_headers_hook(app.config["HSTS_MAX_AGE_SECONDS"]))
    origins = [origin.strip() for origin in app.config["CORS_ORIGINS"].split(",") if origin.strip()]
    if origins:
        CORS(
            app,
            resources={r"/api/*": {"origins": origins}},
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=["X-Request-ID", *rate_limits.HEADERS],
            max_age=600,
        )


def trust_proxies(app: Flask) -> None:
    """The outermost WSGI layer, so everything inside it (the catalog shortcut included) sees
    the client address the trusted proxies reported: create_app calls it last."""
    proxies = app.config["TRUSTED_PROXY_COUNT"]
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
