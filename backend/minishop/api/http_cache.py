"""HTTP caching (docs/api.md, "HTTP caching").

Anonymous catalog reads may be kept by shared caches (the edge, a CDN) for a second; the same
reads from a request carrying `Authorization` or `Cookie` only by the client itself, revalidated
each time. Every catalog read has a strong ETag (computed once, when its body was cached) and
answers `If-None-Match` with 304. Every other /api/ response: `no-store`.

nginx (the edge, deploy/edge/nginx.conf) counts `max-age` in whole seconds from the second it
stored an answer, so `max-age=1` alone would keep it for 1-2 s. The anonymous answers therefore
also say `X-Accel-Expires: @<unix second>` (nginx keeps the entry while its clock is in that
second or before, and does not pass the header on): the second EDGE_REFRESH_SECONDS before this
answer. An entry then never outlives its answer by more than 1 s - EDGE_REFRESH_SECONDS, which
leaves that long for the refresh (the one request nginx sends when it expires) within the 1 s
bound; an answer made in the first EDGE_REFRESH_SECONDS of a second is stored already expired, so
nginx refreshes it again on the next request (a few refreshes a second, one at a time).
"""

from __future__ import annotations

import time
from wsgiref.types import WSGIEnvironment

from flask import Flask, Response, current_app, request
from werkzeug.http import parse_etags

from minishop.cache import Body
from minishop.envelope import raw_ok

PUBLIC = "public, max-age=1"
PRIVATE = "private, no-cache"
NO_STORE = "no-store"
EDGE_REFRESH_SECONDS = 0.1


def catalog_headers(environ: WSGIEnvironment, etag: str) -> dict[str, str]:
    """The caching headers of a catalog read, read straight from the WSGI environ: this is
    every catalog read's path, and most carry neither a validator nor credentials."""
    headers = {"ETag": etag}
    if "HTTP_AUTHORIZATION" in environ or "HTTP_COOKIE" in environ:
        headers["Cache-Control"] = PRIVATE
    else:
        headers["Cache-Control"] = PUBLIC
        headers["X-Accel-Expires"] = f"@{int(time.time() - EDGE_REFRESH_SECONDS)}"
    return headers


def is_not_modified(environ: WSGIEnvironment, etag: str) -> bool:
    """Whether the client's `If-None-Match` already names `etag` (weak comparison, `*`, lists;
    RFC 9110 13.1.2)."""
    sent = environ.get("HTTP_IF_NONE_MATCH")
    return sent is not None and parse_etags(sent).contains_weak(etag.strip('"'))


def catalog_response(body: Body) -> Response:
    """`body` as a 200, or a 304 when the client's `If-None-Match` already names it."""
    if body.data is None:
        raise ValueError("a negative cache entry has no response body")
    environ = request.environ
    headers = catalog_headers(environ, body.etag)
    if is_not_modified(environ, body.etag):
        return current_app.response_class(status=304, headers=headers)
    return raw_ok(body.data, headers)


def _no_store_by_default(response: Response) -> Response:
    if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = NO_STORE
    return response


def init_app(app: Flask) -> None:
    app.after_request(_no_store_by_default)
