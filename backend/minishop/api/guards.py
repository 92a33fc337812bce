"""Who may call an endpoint. `@login_required` marks a view; a request hook enforces it.

The check runs as a `before_request` hook, ahead of body parsing and validation, so an
anonymous caller learns nothing about an endpoint's schema: it gets 40100 first.
`@signed` (which implies `@login_required`) adds the request-signature check, made with the
session's sign_key once the caller is known and before the body is parsed (40102 on failure).
`admin_only(bp)` guards a whole blueprint: every route in it needs the admin role and a
signature, whatever its views are marked with, so a route added there cannot forget them.
The hooks run in this order: authentication, rate limits (per-user limits need the caller),
signature.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flask import Blueprint, Flask, current_app, g, request

from minishop import extensions
from minishop.domain.auth import Principal, authenticate, sign_key
from minishop.errors import AppError, ErrorCode
from minishop.models import Role
from minishop.observability import metrics
from minishop.security import rate_limits, signature

View = TypeVar("View", bound=Callable[..., object])

BEARER_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
LOGIN_REQUIRED = "minishop_login_required"
SIGNED = "minishop_signed"
ADMIN_ONLY = "minishop_admin_only"


@dataclass(frozen=True)
class Requirements:
    login: bool
    admin: bool
    signed: bool


def login_required(view: View) -> View:
    setattr(view, LOGIN_REQUIRED, True)
    return view


def signed(view: View) -> View:
    """Write endpoints the API contract marks "signed": 40102 unless the request carries a valid
    signature (when SIGNATURE_REQUIRED is on)."""
    setattr(view, SIGNED, True)
    return login_required(view)


def admin_only(blueprint: Blueprint) -> None:
    """Every route of `blueprint`: a signed request of a logged-in admin (role read from the
    database), else 40100/40300/40102."""
    setattr(blueprint, ADMIN_ONLY, True)


def requirements(app: Flask, endpoint: str) -> Requirements:
    """What a request to `endpoint` must prove; the url_map test walks every route with it."""
    view = app.view_functions.get(endpoint)
    blueprint = app.blueprints.get(endpoint.rpartition(".")[0]) if "." in endpoint else None
    admin = bool(getattr(blueprint, ADMIN_ONLY, False))
    return Requirements(
        login=admin or bool(getattr(view, LOGIN_REQUIRED, False)),
        admin=admin,
        signed=admin or bool(getattr(view, SIGNED, False)),
    )


def _current_requirements() -> Requirements:
    """Looked up once per request (both hooks ask), kept on `g`."""
    required: Requirements | None = g.get("requirements")
    if required is None:
        required = g.requirements = requirements(current_app, request.endpoint or "")
    return required


def _bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AppError(ErrorCode.NOT_AUTHENTICATED, "missing bearer access token")
    return token.strip()


def _authenticate_if_required() -> None:
    required = _current_requirements()
    if not required.login:
        return
    g.principal = authenticate(extensions.session(), extensions.token_signer.get(), _bearer_token())
    if required.admin and g.principal.user.role != Role.ADMIN:
        raise AppError(ErrorCode.FORBIDDEN, "admin role required")


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


def _verify_signature_if_required() -> None:
    if not _current_requirements().signed or not current_app.config["SIGNATURE_REQUIRED"]:
        return
    principal = current_principal()
    store = extensions.kv_store.get()
    try:
        signature.verify(
            request.method,
            request.path,
            request.query_string.decode("utf-8", "replace"),
            request.get_data(cache=True),
            {name: request.headers.get(name, "") for name in signature.HEADERS},
            sign_key(extensions.field_cipher.get(), principal),
            now=time.time(),
            remember_nonce=lambda nonce: store.set_if_absent(
                f"nonce:{principal.session.id}:{nonce}", "1", signature.NONCE_TTL_SECONDS
            ),
        )
    except signature.SignatureError as rejected:
        metrics.BAD_SIGNATURES.labels(reason=rejected.reason).inc()
        raise


def init_app(app: Flask) -> rate_limits.RequestLimits | None:
    """The hooks, in order; the limiter (built in extensions) registers its own in between.
    Returns the limits (None when RATELIMIT_ENABLED is off): the catalog shortcut counts with
    them too."""
    app.before_request(_authenticate_if_required)
    limits = rate_limits.install(app, extensions.limiter.of(app))
    app.before_request(_verify_signature_if_required)
    return limits
