"""The response envelope every `/api/` response uses: `{code, message, data, request_id}`."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import orjson
from flask import Response, current_app, g
from flask.json.provider import DefaultJSONProvider
from pydantic import BaseModel, Field

T = TypeVar("T")

# What Flask's jsonify does here (keys in their order, create_app says so; dates through Flask's
# `default`), by orjson: the envelope is encoded on every request, in a fraction of json's time.
ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


class Envelope(BaseModel, Generic[T]):
    """OpenAPI description of a successful response; `data` holds the resource."""

    code: int = Field(0, description="0 on success, else an error code from the table")
    message: str = "ok"
    data: T
    request_id: str


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorData(BaseModel):
    errors: list[ErrorDetail] | None = None


class ErrorEnvelope(BaseModel):
    """OpenAPI description of every error response."""

    code: int = Field(..., description="non-zero error code; see the README's table")
    message: str
    data: ErrorData | None = None
    request_id: str


def current_request_id() -> str:
    return str(g.get("request_id", ""))


def envelope(data: Any, *, code: int, message: str, request_id: str) -> dict[str, Any]:
    """The envelope's fields: what the app answers, and what gunicorn's refusals answer too."""
    return {"code": code, "message": message, "data": data, "request_id": request_id}


def encode_json(value: Any) -> bytes:
    """`value` as compact JSON, the one encoding of every body (cached ones too)."""
    return orjson.dumps(value, default=DefaultJSONProvider.default, option=ORJSON_OPTIONS)


def encode(document: Any) -> bytes:
    """`document` as jsonify would write it (a trailing newline too)."""
    return encode_json(document) + b"\n"


def envelope_response(
    data: Any = None, *, code: int = 0, message: str = "ok", status: int = 200
) -> Response:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    body = encode(envelope(data, code=code, message=message, request_id=current_request_id()))
    return current_app.response_class(body, status=status, mimetype="application/json")


def ok(data: Any = None, status: int = 200) -> Response:
    return envelope_response(data, status=status)


def raw_ok_body(data_json: bytes, request_id: str) -> bytes:
    """The success envelope around `data` that is already JSON (a cached body,
    minishop/cache.py), spliced in as bytes, not decoded and encoded again: byte for byte what
    `ok` answers."""
    return b'{"code":0,"message":"ok","data":%b,"request_id":%b}\n' % (
        data_json,
        encode_json(request_id),
    )


def raw_ok(data_json: bytes, headers: dict[str, str] | None = None) -> Response:
    body = raw_ok_body(data_json, current_request_id())
    return current_app.response_class(body, headers=headers, mimetype="application/json")
