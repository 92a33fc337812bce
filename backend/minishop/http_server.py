"""MiniShop's gunicorn workers: gunicorn's own refusals in the envelope, refused bodies readable.

gunicorn refuses some requests before the app sees them (a request line over
`limit_request_line`, a header over `limit_request_field_size`, too many headers, bytes that are
not HTTP/1.1) and answered those with an HTML page. `handle_error` writes the envelope instead,
with a request id, and logs one JSON line naming the kind of refusal, never the request's bytes
(header values may be credentials).

A body the app refuses without reading it (41300 from its Content-Length, 40100 before an upload
is read) was left on the socket: gunicorn closed the connection with it unread, the kernel reset
the connection under the client still sending, and the client (urllib, `wx.uploadFile`) saw a
broken pipe instead of the answer. Now, per request (`BodyGuard`):
- `Expect: 100-continue` is answered with `100 Continue` when the app first reads the body, not
  before the app runs. A request refused without reading it gets its answer with
  `Connection: close`, and its body is never asked for.
- Otherwise what the app left of the body is read and thrown away after the answer, up to
  DRAIN_FACTOR times the larger body limit (MAX_CONTENT_LENGTH, UPLOAD_MAX_BYTES) and for at
  most DRAIN_SECONDS, so the client finishes sending and reads the answer. A longer body still
  gets the answer (a client reading while it sends sees it), then the connection is closed.

gunicorn.conf.py runs these for GUNICORN_WORKER_CLASS=gthread (the default) and sync.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import time
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.http import errors as parse_errors
from gunicorn.http.body import LengthReader
from gunicorn.workers import gthread, sync

from minishop.config import load_settings
from minishop.envelope import envelope
from minishop.errors import ErrorCode
from minishop.observability.request_id import HEADER as REQUEST_ID_HEADER
from minishop.observability.request_id import request_id_from
from minishop.security.headers import SECURITY_HEADERS

log = logging.getLogger(__name__)

DRAIN_FACTOR = 4
DRAIN_SECONDS = 10.0
DRAIN_STEP = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

MALFORMED_HEADER = "malformed header field"
MALFORMED_CHUNKED_BODY = "malformed chunked body"
MALFORMED_PROXY_HEADER = "malformed PROXY protocol header"

# What gunicorn raises while reading a request (gunicorn/http/errors.py, and what
# Worker.handle_error makes of it) and what the client is told instead; the first match wins.
REFUSALS: tuple[tuple[type[BaseException], ErrorCode, str], ...] = (
    # A header the app tried to send: the app's fault, not the client's.
    (parse_errors.InvalidResponseHeader, ErrorCode.INTERNAL, ErrorCode.INTERNAL.default_message),
    (
        parse_errors.InvalidResponseHeaderName,
        ErrorCode.INTERNAL,
        ErrorCode.INTERNAL.default_message,
    ),
    (parse_errors.ConfigurationProblem, ErrorCode.INTERNAL, ErrorCode.INTERNAL.default_message),
    (parse_errors.LimitRequestLine, ErrorCode.URI_TOO_LONG, "request line (URL) too long"),
    (
        parse_errors.LimitRequestHeaders,
        ErrorCode.HEADERS_TOO_LARGE,
        "request header fields too large or too many",
    ),
    (parse_errors.InvalidRequestLine, ErrorCode.INVALID_PARAMS, "malformed request line"),
    (parse_errors.InvalidRequestMethod, ErrorCode.INVALID_PARAMS, "malformed request method"),
    (parse_errors.InvalidHTTPVersion, ErrorCode.INVALID_PARAMS, "unsupported HTTP version"),
    (parse_errors.InvalidHeaderName, ErrorCode.INVALID_PARAMS, MALFORMED_HEADER),
    (parse_errors.InvalidHeader, ErrorCode.INVALID_PARAMS, MALFORMED_HEADER),
    (parse_errors.ObsoleteFolding, ErrorCode.INVALID_PARAMS, MALFORMED_HEADER),
    (parse_errors.InvalidSchemeHeaders, ErrorCode.INVALID_PARAMS, "contradictory scheme headers"),
    (parse_errors.InvalidChunkSize, ErrorCode.INVALID_PARAMS, MALFORMED_CHUNKED_BODY),
    (parse_errors.ChunkMissingTerminator, ErrorCode.INVALID_PARAMS, MALFORMED_CHUNKED_BODY),
    (parse_errors.InvalidChunkExtension, ErrorCode.INVALID_PARAMS, MALFORMED_CHUNKED_BODY),
    (parse_errors.InvalidProxyLine, ErrorCode.INVALID_PARAMS, MALFORMED_PROXY_HEADER),
    (parse_errors.InvalidProxyHeader, ErrorCode.INVALID_PARAMS, MALFORMED_PROXY_HEADER),
    (parse_errors.InvalidH2CPreface, ErrorCode.INVALID_PARAMS, "not an HTTP/2 preface"),
    (parse_errors.ForbiddenProxyRequest, ErrorCode.FORBIDDEN, "proxy not allowed"),
    (
        parse_errors.UnsupportedTransferCoding,
        ErrorCode.NOT_IMPLEMENTED,
        "unsupported transfer coding",
    ),
    (
        parse_errors.ExpectationFailed,
        ErrorCode.EXPECTATION_FAILED,
        "only Expect: 100-continue is supported",
    ),
    (parse_errors.ParseException, ErrorCode.INVALID_PARAMS, "malformed request"),
    (ssl.SSLError, ErrorCode.INVALID_PARAMS, "TLS error"),
)


def refusal_for(exc: BaseException) -> tuple[ErrorCode, str]:
    """The code and message the client gets for `exc`; 50000 for anything unexpected."""
    for exc_class, code, message in REFUSALS:
        if isinstance(exc, exc_class):
            return code, message
    return ErrorCode.INTERNAL, ErrorCode.INTERNAL.default_message


def refusal_response(
    code: ErrorCode, message: str, request_id: str, extra_headers: dict[str, str]
) -> bytes:
    """A complete HTTP/1.1 response carrying the envelope; the connection closes after it."""
    fields = envelope(None, code=code.value, message=message, request_id=request_id)
    body = json.dumps(fields, separators=(",", ":")).encode() + b"\n"  # as Flask's jsonify
    headers = {
        "Date": util.http_date(),
        "Connection": "close",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        REQUEST_ID_HEADER: request_id,
        **SECURITY_HEADERS,
        **extra_headers,
    }
    head = f"HTTP/1.1 {code.http_status} {HTTPStatus(code.http_status).phrase}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return f"{head}\r\n".encode("latin-1") + body


def _sent_request_id(req: Any) -> str | None:
    """The X-Request-ID of a request parsed far enough to have headers."""
    for name, value in getattr(req, "headers", None) or ():
        if name == REQUEST_ID_HEADER.upper():
            return str(value)
    return None


class MalformedBodyError(ValueError):
    """gunicorn could not parse a chunked body the app was reading.

    werkzeug turns an error from `wsgi.input` into a 400 (its ClientDisconnected); gunicorn's own
    parse errors would reach the app's catch-all as a 500.
    """


class BodyGuard:
    """One request's body: `100 Continue` only when the app reads it, the unread rest drained.

    Made before gunicorn builds the WSGI environ (which would send `100 Continue` at once), it
    stands in front of gunicorn's body reader; `finish` runs after the answer was written.
    """

    def __init__(self, req: Any, sock: Any, drain_limit: int) -> None:
        self.req = req
        self.sock = sock
        self.drain_limit = drain_limit
        self.reader = req.body.reader
        if self.too_long_to_drain():
            req.force_close()  # the app will refuse it, and it will not be read through
        # gunicorn's own flag: set, its WSGI environ would send `100 Continue` before the app runs.
        self.continue_pending = bool(req._expected_100_continue)
        self.closes_anyway = req.must_close
        if self.continue_pending:
            req._expected_100_continue = False
            req.must_close = True  # until the client is asked for the body, the answer says so
        req.body.reader = self  # gunicorn's body now reads through `read` below

    def too_long_to_drain(self) -> bool:
        return isinstance(self.reader, LengthReader) and self.reader.length > self.drain_limit

    def read(self, size: int) -> bytes:
        if self.continue_pending:
            self.continue_pending = False
            self.req.must_close = self.closes_anyway
            util.write(self.sock, CONTINUE)
        try:
            data: bytes = self.reader.read(size)
        except parse_errors.ParseException as exc:
            raise MalformedBodyError(type(exc).__name__) from None  # its text quotes the body
        return data

    def finish(self) -> bool:
        """Read what the app left of the body, if that is reasonable; whether to keep alive."""
        if self.continue_pending:  # refused without asking for the body: nothing to read
            self.continue_pending = False
            return False
        if self.too_long_to_drain():
            return False
        body = self.req.body
        prior_timeout = self.sock.gettimeout()
        deadline = time.monotonic() + DRAIN_SECONDS
        drained = 0
        try:
            while drained <= self.drain_limit and not body.failed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.sock.settimeout(remaining)
                data = body.read(DRAIN_STEP)
                if not data:
                    return True
                drained += len(data)
            return False
        except (OSError, ValueError):
            return False
        finally:
            with contextlib.suppress(OSError):  # the socket may be gone
                self.sock.settimeout(prior_timeout)


class EnvelopeWorkerMixin:
    """What MiniShop's gthread and sync workers add to gunicorn's; see the module docstring."""

    drain_limit: int
    extra_headers: dict[str, str]

    def init_process(self) -> None:
        settings = load_settings()
        self.drain_limit = DRAIN_FACTOR * max(
            settings.MAX_CONTENT_LENGTH, settings.UPLOAD_MAX_BYTES
        )
        self.extra_headers = {}
        if settings.HSTS_MAX_AGE_SECONDS:
            self.extra_headers["Strict-Transport-Security"] = (
                f"max-age={settings.HSTS_MAX_AGE_SECONDS}; includeSubDomains"
            )
        super().init_process()  # type: ignore[misc]  # runs the worker's loop; never returns

    def body_guard(self, req: Any, sock: Any) -> BodyGuard:
        return BodyGuard(req, sock, self.drain_limit)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn could not read the request, or failed around the app: answer the envelope."""
        req = req or getattr(exc, "req", None)
        code, message = refusal_for(exc)
        request_id = request_id_from(_sent_request_id(req))
        fields = {
            "status": code.http_status,
            "request_id": request_id,
            "client_ip": addr[0] if isinstance(addr, tuple) else None,
        }
        if code is ErrorCode.INTERNAL:
            log.error("error serving a request", exc_info=exc, extra=fields)
        else:
            # The exception's own text may quote the request line or a header line: not logged.
            log.warning(
                "request refused before the app: %s (%s)",
                type(exc).__name__,
                message,
                extra=fields,
            )
        try:
            util.write_nonblock(
                client, refusal_response(code, message, request_id, self.extra_headers)
            )
        except OSError:
            log.debug("could not send the refusal", extra=fields)


class ThreadWorker(EnvelopeWorkerMixin, gthread.ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker, MiniShop's default."""

    def handle_request(self, req: Any, conn: Any) -> bool:
        guard = self.body_guard(req, conn.sock)
        keepalive: bool = super().handle_request(req, conn)
        drained = guard.finish()
        return keepalive and drained


class SyncWorker(EnvelopeWorkerMixin, sync.SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker (one request per connection)."""

    def handle_request(self, listener: Any, req: Any, client: Any, addr: Any) -> None:
        guard = self.body_guard(req, client)
        super().handle_request(listener, req, client, addr)
        guard.finish()
