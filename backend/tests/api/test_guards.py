"""Every route's guard, read off the url_map: admin routes, signed writes, who may call what."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minishop.api.guards import requirements
from tests.conftest import bearer
from tests.test_errors import assert_envelope

# The API contract's "signed" column: write requests of a logged-in user.
SIGNED_ROUTES = {
    ("POST", "/api/v1/auth/logout"),
    ("PATCH", "/api/v1/users/me"),
    ("POST", "/api/v1/users/me/phone"),
    ("POST", "/api/v1/orders"),
    ("POST", "/api/v1/orders/<order_no>/cancel"),
    ("POST", "/api/v1/orders/<order_no>/confirm"),
    ("POST", "/api/v1/orders/<order_no>/pay"),
}
# Logged-in writes the contract leaves unsigned: a multipart upload (wx.uploadFile cannot sign).
UNSIGNED_WRITES = {("POST", "/api/v1/files")}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
SAMPLE_ARGUMENTS = {"order_no": "20260101000000123", "key": "0" * 64 + ".png"}


def routes(app: Flask) -> list[tuple[str, str, str]]:
    """(method, rule, endpoint) for every route, HEAD and OPTIONS aside."""
    return sorted(
        (method, rule.rule, rule.endpoint)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    )


def concrete(rule: str) -> str:
    """A path that matches `rule`, with sample values for its arguments."""
    return re.sub(
        r"<(?:(\w+):)?(\w+)>",
        lambda m: "1" if m[1] == "int" else SAMPLE_ARGUMENTS.get(m[2], "x"),
        rule,
    )


def admin_routes(app: Flask) -> list[tuple[str, str, str]]:
    return [route for route in routes(app) if route[1].startswith("/api/v1/admin/")]


def test_every_admin_route_requires_the_admin_role_and_a_signature(app: Any) -> None:
    found = admin_routes(app)
    assert len(found) >= 10
    for method, rule, endpoint in found:
        required = requirements(app, endpoint)
        assert required.login and required.admin and required.signed, (method, rule)


def test_every_contract_signed_route_requires_a_signature(app: Any) -> None:
    by_route = {(method, rule): endpoint for method, rule, endpoint in routes(app)}
    for route in SIGNED_ROUTES:
        assert route in by_route, route
        assert requirements(app, by_route[route]).signed, route


def test_every_logged_in_write_is_signed_but_the_upload(app: Any) -> None:
    unsigned = {
        (method, rule)
        for method, rule, endpoint in routes(app)
        if method in WRITE_METHODS
        and requirements(app, endpoint).login
        and not requirements(app, endpoint).signed
    }
    assert unsigned == UNSIGNED_WRITES


def test_admin_routes_refuse_anonymous_shoppers_and_unsigned_admins(
    client: FlaskClient, app: Any, log_in: Any, admin: dict[str, Any]
) -> None:
    """Behaviour, not markers: each admin route answers 40100, 40300, 40102 in that order."""
    shopper = log_in()
    for method, rule, _endpoint in admin_routes(app):
        path = concrete(rule)
        anonymous = client.open(path, method=method, json={})
        assert_envelope(anonymous, 401, 40100)
        refused = client.open(path, method=method, json={}, headers=bearer(shopper))
        assert_envelope(refused, 403, 40300)
        unsigned = client.open(path, method=method, json={}, headers=bearer(admin))
        assert_envelope(unsigned, 401, 40102)


@pytest.mark.parametrize(("method", "rule"), sorted(SIGNED_ROUTES))
def test_signed_routes_refuse_an_unsigned_request(
    client: FlaskClient, log_in: Any, method: str, rule: str
) -> None:
    shopper = log_in()
    response = client.open(concrete(rule), method=method, json={}, headers=bearer(shopper))
    assert_envelope(response, 401, 40102)
