"""Who may call an endpoint. `@login_required` marks a view; a request hook enforces it.

The check runs as a `before_request` hook, ahead of body parsing and validation, so an
anonymous caller learns nothing about an endpoint's schema: it gets 40100 first.
`@signed` (which implies `@login_required`) adds the request-signature check, made with the
session's sign_key once the caller is known and before the body is parsed (40102 on failure).
The hooks run in this order: authentication, rate limits (per-user limits need the caller),
signature.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g, request

from minishop.api import limits
from minishop.domain.auth import SIGN_KEY_PURPOSE, Principal, authenticate
from minishop.errors import AppError, ErrorCode
from minishop.kvstore import kv
from minishop.models import Role
from minishop.observability import metrics
from minishop.security import signature
from minishop.security.keys import field_cipher

View = TypeVar("View", bound=Callable[..., object])

BEARER_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
LOGIN_REQUIRED = "minishop_login_required"
ADMIN_REQUIRED = "minishop_admin_required"
SIGNED = "minishop_signed"


def login_required(view: View) -> View:
    setattr(view, LOGIN_REQUIRED, True)
    return view


def admin_required(view: View) -> View:
    """Back office: a logged-in user whose role (read from the database) is admin; else 40300."""
    setattr(view, ADMIN_REQUIRED, True)
    return login_required(view)


def signed(view: View) -> View:
    """Write endpoints DESIGN.md marks "signed": 40102 unless the request carries a valid
    signature (when SIGNATURE_REQUIRED is on)."""
    setattr(view, SIGNED, True)
    return login_required(view)


def _bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AppError(ErrorCode.NOT_AUTHENTICATED, "missing bearer access token")
    return token.strip()


def _authenticate_if_required() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, LOGIN_REQUIRED, False):
        g.principal = authenticate(_bearer_token())
        if getattr(view, ADMIN_REQUIRED, False) and g.principal.user.role != Role.ADMIN:
            raise AppError(ErrorCode.FORBIDDEN, "admin role required")


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


def _verify_signature_if_required() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    if not getattr(view, SIGNED, False) or not current_app.config["SIGNATURE_REQUIRED"]:
        return
    session = current_principal().session
    try:
        signature.verify(
            request.method,
            request.path,
            request.query_string.decode("utf-8", "replace"),
            request.get_data(cache=True),
            {name: request.headers.get(name, "") for name in signature.HEADERS},
            field_cipher().decrypt(session.sign_key_encrypted, SIGN_KEY_PURPOSE),
            now=time.time(),
            remember_nonce=lambda nonce: kv().set_if_absent(
                f"nonce:{session.id}:{nonce}", "1", signature.NONCE_TTL_SECONDS
            ),
        )
    except signature.SignatureError as rejected:
        metrics.BAD_SIGNATURES.labels(reason=rejected.reason).inc()
        raise


def init_app(app: Flask) -> None:
    app.before_request(_authenticate_if_required)
    limits.init_app(app)
    app.before_request(_verify_signature_if_required)
