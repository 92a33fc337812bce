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

from flask import Flask, Response, current_app
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


def _add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    max_age = current_app.config["HSTS_MAX_AGE_SECONDS"]
    if max_age:
        response.headers["Strict-Transport-Security"] = f"max-age={max_age}; includeSubDomains"
    return response


def init_app(app: Flask) -> None:
    proxies = app.config["TRUSTED_PROXY_COUNT"]
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    app.after_request(_add_security_headers)
    origins = [origin.strip() for origin in app.config["CORS_ORIGINS"].split(",") if origin.strip()]
    if origins:
        CORS(
            app,
            resources={r"/api/*": {"origins": origins}},
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=["X-Request-ID", *rate_limits.HEADERS],
            max_age=600,
        )
