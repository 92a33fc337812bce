"""Error codes (DESIGN.md's table) and the handlers that turn every exception into the envelope.

Business code raises `AppError(ErrorCode.X, "what went wrong")`; nothing else needs to know about
HTTP statuses. Unexpected exceptions are logged with their traceback and answered with 50000,
never with the exception text.
"""

from __future__ import annotations

import logging
from enum import IntEnum
from typing import Any, NoReturn

import redis.exceptions
import sqlalchemy.exc
from flask import Flask, Response
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from minishop.envelope import envelope_response

log = logging.getLogger(__name__)


class ErrorCode(IntEnum):
    """Each member: envelope code, HTTP status, default message."""

    http_status: int
    default_message: str

    def __new__(cls, code: int, http_status: int, default_message: str) -> ErrorCode:
        member = int.__new__(cls, code)
        member._value_ = code
        member.http_status = http_status
        member.default_message = default_message
        return member

    OK = (0, 200, "ok")
    INVALID_PARAMS = (40000, 400, "invalid parameters")
    INVALID_JSON = (40001, 400, "request body must be a JSON object sent as application/json")
    NOT_AUTHENTICATED = (40100, 401, "not authenticated")
    TOKEN_EXPIRED = (40101, 401, "access token expired")
    BAD_SIGNATURE = (40102, 401, "bad request signature")
    FORBIDDEN = (40300, 403, "forbidden")
    NOT_FOUND = (40400, 404, "not found")
    METHOD_NOT_ALLOWED = (40500, 405, "method not allowed")
    CONFLICT = (40900, 409, "conflict")
    OUT_OF_STOCK = (40901, 409, "out of stock")
    INVALID_STATE = (40902, 409, "invalid state transition")
    PAYLOAD_TOO_LARGE = (41300, 413, "payload too large")
    URI_TOO_LONG = (41400, 414, "request URI too long")
    UNSUPPORTED_MEDIA_TYPE = (41500, 415, "unsupported media type")
    EXPECTATION_FAILED = (41700, 417, "expectation failed")
    CONTENT_REJECTED = (42200, 422, "content rejected by content security")
    RATE_LIMITED = (42900, 429, "too many requests")
    HEADERS_TOO_LARGE = (43100, 431, "request header fields too large")
    INTERNAL = (50000, 500, "internal error")
    NOT_IMPLEMENTED = (50100, 501, "not implemented")
    WECHAT_ERROR = (50200, 502, "WeChat answered with an error")
    DEPENDENCY_UNAVAILABLE = (50300, 503, "a dependency is unavailable")
    WECHAT_TIMEOUT = (50400, 504, "WeChat did not answer in time")


class AppError(Exception):
    """An error the client is told about: code, a safe message, optional details."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.default_message
        self.data = data
        self.headers = headers or {}
        super().__init__(self.message)


def validation_error(exc: ValidationError, location: str = "body") -> AppError:
    """40000 with `data.errors` naming each bad field; input values are never echoed back."""
    errors = [
        {"field": ".".join(str(part) for part in err["loc"]) or location, "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    return AppError(ErrorCode.INVALID_PARAMS, data={"errors": errors})


def raise_validation_error(exc: ValidationError) -> NoReturn:
    """flask-openapi3's validation_error_callback: hand the error to our handler."""
    raise validation_error(exc)


HTTP_STATUS_TO_CODE = {code.http_status: code for code in reversed(ErrorCode) if code.value}

DEPENDENCY_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def _app_error_response(exc: AppError) -> Response:
    response = envelope_response(
        exc.data, code=exc.code, message=exc.message, status=exc.code.http_status
    )
    response.headers.update(exc.headers)
    return response


def _http_error_response(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = HTTP_STATUS_TO_CODE.get(status)
    if code is None:
        code = ErrorCode.INTERNAL if status >= 500 else ErrorCode.INVALID_PARAMS
    response = envelope_response(code=code, message=code.default_message, status=code.http_status)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _dependency_error_response(exc: Exception) -> Response:
    log.warning("dependency unavailable: %s", type(exc).__name__)
    return _app_error_response(AppError(ErrorCode.DEPENDENCY_UNAVAILABLE))


def _unexpected_error_response(exc: Exception) -> Response:
    log.exception("unhandled exception")
    return _app_error_response(AppError(ErrorCode.INTERNAL))


def init_app(app: Flask) -> None:
    app.register_error_handler(AppError, _app_error_response)
    app.register_error_handler(HTTPException, _http_error_response)
    app.register_error_handler(
        ValidationError, lambda exc: _app_error_response(validation_error(exc))
    )
    for exc_class in DEPENDENCY_ERRORS:
        app.register_error_handler(exc_class, _dependency_error_response)
    app.register_error_handler(Exception, _unexpected_error_response)
