"""`X-Request-ID`: honoured when the client sends a sane one, otherwise generated; always echoed."""

from __future__ import annotations

import os
import re

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")


def new_request_id() -> str:
    """32 random hex digits, as uuid4().hex looked, without building a UUID per request."""
    return os.urandom(16).hex()


def request_id_from(sent: str | None) -> str:
    """The id the client sent when it is sane, else a new one (gunicorn's refusals use it too)."""
    return sent if sent and SANE_REQUEST_ID.fullmatch(sent) else new_request_id()


def _assign_request_id() -> None:
    g.request_id = request_id_from(request.headers.get(HEADER))


def _echo_request_id(response: Response) -> Response:
    response.headers[HEADER] = g.get("request_id") or new_request_id()
    return response


def init_app(app: Flask) -> None:
    app.before_request(_assign_request_id)
    app.after_request(_echo_request_id)
