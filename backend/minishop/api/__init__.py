"""HTTP layer: one blueprint per resource, plus the request checks every endpoint shares."""

from __future__ import annotations

from functools import cache
from typing import Any, get_type_hints

from flask import Response, current_app, jsonify, request
from flask_openapi3 import OpenAPI
from werkzeug.exceptions import BadRequest

from minishop.api import (
    admin,
    auth,
    catalog_shortcut,
    docs,
    files,
    guards,
    health,
    http_cache,
    openapi_doc,
    orders,
    payments,
    products,
    users,
)
from minishop.api.body_limit import Request
from minishop.errors import AppError, ErrorCode

BLUEPRINTS = (
    health.bp,
    auth.bp,
    users.bp,
    products.bp,
    orders.bp,
    payments.bp,
    admin.bp,
    files.bp,
)


@cache
def _expects_json_body(view: Any) -> bool:
    """flask-openapi3 views declare their JSON body as a parameter annotated `body`."""
    return "body" in get_type_hints(view)


def _require_json_body() -> None:
    """A JSON endpoint gets 40001 for a non-JSON content type or a body that does not parse.

    flask-openapi3 would read such a body as "missing" and answer 40000; the contract tells the
    client precisely that the body itself is unusable.
    """
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or not _expects_json_body(view):
        return
    if request.mimetype != "application/json":
        raise AppError(ErrorCode.INVALID_JSON)
    try:
        request.get_json()
    except BadRequest:
        raise AppError(ErrorCode.INVALID_JSON) from None


def _openapi_document() -> Response:
    app: OpenAPI = current_app  # type: ignore[assignment]
    return jsonify(openapi_doc.document(app))


def init_app(app: OpenAPI) -> None:
    app.request_class = Request
    limits = guards.init_app(app)
    http_cache.init_app(app)
    app.before_request(_require_json_body)
    for blueprint in BLUEPRINTS:
        app.register_api(blueprint)
    app.add_url_rule("/openapi.json", "openapi_document", _openapi_document)
    app.register_blueprint(docs.bp)  # HTML for people: outside the API and its document
    catalog_shortcut.install(app, limits)
