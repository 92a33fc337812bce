"""Who may call an endpoint. `@login_required` marks a view; a request hook enforces it.

The check runs as a `before_request` hook, ahead of body parsing and validation, so an
anonymous caller learns nothing about an endpoint's schema: it gets 40100 first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g, request

from minishop.domain.auth import Principal, authenticate
from minishop.errors import AppError, ErrorCode
from minishop.models import Role

View = TypeVar("View", bound=Callable[..., object])

BEARER_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
LOGIN_REQUIRED = "minishop_login_required"
ADMIN_REQUIRED = "minishop_admin_required"


def login_required(view: View) -> View:
    setattr(view, LOGIN_REQUIRED, True)
    return view


def admin_required(view: View) -> View:
    """Back office: a logged-in user whose role (read from the database) is admin; else 40300."""
    setattr(view, ADMIN_REQUIRED, True)
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


def init_app(app: Flask) -> None:
    app.before_request(_authenticate_if_required)
