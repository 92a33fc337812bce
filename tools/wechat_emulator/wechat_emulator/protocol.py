"""WeChat's wire conventions shared by the mini-program and WeCom families.

Both answer every failure as HTTP 200 with `{"errcode": N, "errmsg": "..."}` and take
`?access_token=` on business calls; they differ in the errmsg suffix and in some errcodes,
which each family supplies.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import request

from .state import TokenStatus, TokenTable


class WeChatError(Exception):
    """An errcode answer; the family's error handler renders it (errmsg from its catalogue)."""

    def __init__(self, errcode: int, errmsg: str | None = None) -> None:
        super().__init__(errcode, errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


def request_id(now: float) -> str:
    """An id shaped like WeChat's rid / trace_id: hex seconds, then two random hex groups."""
    return f"{int(now):08x}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


def error_body(error: WeChatError, catalogue: Mapping[int, str], suffix: str) -> dict[str, Any]:
    message = error.errmsg or catalogue.get(error.errcode, "emulated error")
    return {"errcode": error.errcode, "errmsg": f"{message}{suffix}"}


def json_object(bad_body_errcode: int) -> dict[str, Any]:
    """The request body as a JSON object, whatever the Content-Type (WeChat ignores it)."""
    try:
        body = json.loads(request.get_data(cache=True))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeChatError(bad_body_errcode) from error
    if not isinstance(body, dict):
        raise WeChatError(bad_body_errcode)
    return body


@dataclass(frozen=True)
class TokenErrcodes:
    """What a family answers for a missing, unknown, expired or superseded access_token."""

    missing: int
    unknown: int
    expired: int
    superseded: int


def check_access_token(tables: Sequence[TokenTable], now: float, errcodes: TokenErrcodes) -> None:
    """Reject the call unless `?access_token=` is still valid in one of `tables`.

    The caller holds the state lock.
    """
    token = request.args.get("access_token", "")
    if not token:
        raise WeChatError(errcodes.missing)
    statuses = [table.status(token, now) for table in tables]
    status = next((s for s in statuses if s is not TokenStatus.UNKNOWN), TokenStatus.UNKNOWN)
    if status is TokenStatus.VALID:
        return
    raise WeChatError(
        {
            TokenStatus.UNKNOWN: errcodes.unknown,
            TokenStatus.EXPIRED: errcodes.expired,
            TokenStatus.SUPERSEDED: errcodes.superseded,
        }[status]
    )
