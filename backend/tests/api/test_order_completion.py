"""The buyer confirms receipt: `POST /api/v1/orders/{order_no}/confirm` (MariaDB, Redis, emulator).

Orders reach `shipped` through tests/shipping.py (marked paid in the database, then shipped), not
through payments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from minishop.extensions import db
from minishop.models import Order
from tests.api.test_orders import place
from tests.conftest import bearer
from tests.shipping import mark_paid, ship
from tests.signing import send_signed
from tests.test_errors import assert_envelope

LogIn = Callable[..., dict[str, Any]]


def confirm(client: FlaskClient, data: dict[str, Any], order_no: str) -> Any:
    return send_signed(client, data, "POST", f"/api/v1/orders/{order_no}/confirm")


def stored(order_no: str) -> tuple[str, int]:
    db.session.rollback()
    row = db.session.execute(
        select(Order.status, Order.version).where(Order.order_no == order_no)
    ).one()
    return row.status, row.version


def completed_by(by: str) -> float:
    return REGISTRY.get_sample_value("minishop_orders_completed_total", {"by": by}) or 0.0


@pytest.fixture()
def buyer(log_in: LogIn) -> dict[str, Any]:
    return log_in()


@pytest.fixture()
def order_no(client: FlaskClient, buyer: dict[str, Any], catalog: dict[str, Any]) -> str:
    """A pending order of `buyer`."""
    line = {"items": [{"product_id": catalog["jerky"].id, "quantity": 2}]}
    placed: str = place(client, buyer, line).get_json()["data"]["order_no"]
    return placed


def test_the_buyer_confirms_a_shipped_order_once(
    client: FlaskClient, buyer: dict[str, Any], order_no: str, caplog: pytest.LogCaptureFixture
) -> None:
    ship(order_no)
    before = completed_by("buyer")
    with caplog.at_level(logging.INFO, logger="minishop.domain.completion"):
        answer = assert_envelope(confirm(client, buyer, order_no), 200, 0)["data"]
    assert answer["order_no"] == order_no
    assert answer["status"] == "completed"
    completed_at = datetime.fromisoformat(answer["completed_at"])
    shipped_at = datetime.fromisoformat(answer["shipped_at"])
    assert shipped_at <= completed_at <= datetime.now(UTC)
    assert datetime.now(UTC) - completed_at < timedelta(minutes=1)
    assert answer["refunded_fen"] == 0
    assert completed_by("buyer") == before + 1
    logged = [r for r in caplog.records if r.name == "minishop.domain.completion"]
    assert [r.getMessage() for r in logged] == ["order completed by its buyer"]

    read = client.get(f"/api/v1/orders/{order_no}", headers=bearer(buyer))
    assert assert_envelope(read, 200, 0)["data"] == answer
    assert_envelope(confirm(client, buyer, order_no), 409, 40902)
    assert stored(order_no)[0] == "completed"
    assert completed_by("buyer") == before + 1


def test_another_users_order_is_not_found(
    client: FlaskClient, log_in: LogIn, order_no: str
) -> None:
    ship(order_no)
    version = stored(order_no)[1]
    assert_envelope(confirm(client, log_in(), order_no), 404, 40400)
    assert stored(order_no) == ("shipped", version)
    assert_envelope(confirm(client, log_in(), "20260101000000123"), 404, 40400)


@pytest.mark.parametrize("status", ["pending_payment", "paid", "cancelled"])
def test_only_a_shipped_order_can_be_confirmed(
    client: FlaskClient, buyer: dict[str, Any], order_no: str, status: str
) -> None:
    if status == "paid":
        mark_paid(order_no)
    elif status == "cancelled":
        send_signed(client, buyer, "POST", f"/api/v1/orders/{order_no}/cancel")
    version = stored(order_no)[1]
    assert stored(order_no)[0] == status
    assert_envelope(confirm(client, buyer, order_no), 409, 40902)
    assert stored(order_no) == (status, version)


def test_confirm_needs_a_login_and_a_signature(
    client: FlaskClient, buyer: dict[str, Any], order_no: str
) -> None:
    ship(order_no)
    path = f"/api/v1/orders/{order_no}/confirm"
    assert_envelope(client.post(path), 401, 40100)
    assert_envelope(client.post(path, headers=bearer(buyer)), 401, 40102)
    assert stored(order_no)[0] == "shipped"


def test_orders_show_shipping_completion_and_refunds(
    client: FlaskClient, buyer: dict[str, Any], order_no: str
) -> None:
    pending = client.get(f"/api/v1/orders/{order_no}", headers=bearer(buyer)).get_json()["data"]
    assert (pending["shipped_at"], pending["completed_at"], pending["refunded_fen"]) == (
        None,
        None,
        0,
    )
    ship(order_no)
    listed = client.get("/api/v1/orders", headers=bearer(buyer)).get_json()["data"]["items"]
    assert listed[0]["shipped_at"] is not None
    assert listed[0]["completed_at"] is None

    schema = client.get("/openapi.json").get_json()["components"]["schemas"]["OrderOut"]
    assert {"shipped_at", "completed_at", "refunded_fen"} <= set(schema["required"])
    assert schema["properties"]["refunded_fen"]["type"] == "integer"
