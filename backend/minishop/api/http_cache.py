"""HTTP caching (docs/api.md, "HTTP caching").

Anonymous catalog reads may be kept by shared caches (the edge, a CDN) for a second; the same
reads from a request carrying `Authorization` or `Cookie` only by the client itself, revalidated
each time. Every catalog read has a strong ETag (computed once, when its body was cached) and
answers `If-None-Match` with 304. Every other /api/ response: `no-store`.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

from minishop.cache import Body
from minishop.envelope import raw_ok

PUBLIC = "public, max-age=1"
PRIVATE = "private, no-cache"
NO_STORE = "no-store"


def catalog_response(body: Body) -> Response:
    """`body` as a 200, or a 304 when the client's `If-None-Match` (weak comparison, `*`, lists,
    RFC 9110 13.1.2) already names it. Read straight from the WSGI environ: this is every
    catalog read's path, and most carry neither a validator nor credentials."""
    if body.data is None:
        raise ValueError("a negative cache entry has no response body")
    environ = request.environ
    anonymous = "HTTP_AUTHORIZATION" not in environ and "HTTP_COOKIE" not in environ
    headers = {"ETag": body.etag, "Cache-Control": PUBLIC if anonymous else PRIVATE}
    if "HTTP_IF_NONE_MATCH" in environ and request.if_none_match.contains_weak(
        body.etag.strip('"')
    ):
        return current_app.response_class(status=304, headers=headers)
    return raw_ok(body.data, headers)


def _no_store_by_default(response: Response) -> Response:
    if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = NO_STORE
    return response


def init_app(app: Flask) -> None:
    app.after_request(_no_store_by_default)
