"""Placing, reading and cancelling orders through the API (MariaDB, Redis, the WeChat emulator)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import event, func, select, update

from minishop.domain import stock
from minishop.extensions import db
from minishop.models import Order, OrderItem, Product
from tests.conftest import bearer
from tests.signing import send_signed
from tests.test_errors import assert_envelope

LogIn = Callable[..., dict[str, Any]]


def place(
    client: FlaskClient, data: dict[str, Any], body: Any, key: str | None = "order-key-0001"
) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return send_signed(client, data, "POST", "/api/v1/orders", body, headers)


def cancel(client: FlaskClient, data: dict[str, Any], order_no: str) -> Any:
    return send_signed(client, data, "POST", f"/api/v1/orders/{order_no}/cancel")


def stock_of(product_id: int) -> int:
    return int(db.session.scalar(select(Product.stock).where(Product.id == product_id)) or 0)


def count(model: Any) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def test_an_order_takes_stock_and_snapshots_prices(
    client: FlaskClient, log_in: LogIn, catalog: dict[str, Any]
) -> None:
    puer, jerky = catalog["puer"], catalog["jerky"]
    body = {
        "items": [
            {"product_id": jerky.id, "quantity": 2},
            {"product_id": puer.id, "quantity": 1},
            {"product_id": jerky.id, "quantity": 1},
        ],
        "remark": "gift wrap",
    }
    order = assert_envelope(place(client, log_in(), body), 201, 0)["data"]
    assert order["status"] == "pending_payment"
    assert order["total_fen"] == 3 * 3900 + 22800
    assert [(i["product_id"], i["quantity"], i["price_fen"]) for i in order["items"]] == sorted(
        [(puer.id, 1, 22800), (jerky.id, 3, 3900)]
    )
    assert order["remark"] == "gift wrap"
    expires_at = datetime.fromisoformat(order["expires_at"])
    assert timedelta(minutes=14) < expires_at - datetime.now(UTC) <= timedelta(minutes=15)
    assert (stock_of(puer.id), stock_of(jerky.id)) == (4, 97)

    # the snapshot stays when the catalog changes
    db.session.get_one(Product, puer.id).price_fen = 1
    db.session.commit()
    assert (
        db.session.scalars(select(OrderItem.price_fen).where(OrderItem.product_id == puer.id)).one()
        == 22800
    )


def test_the_detail_shows_current_stock_right_after_an_order(
    client: FlaskClient, log_in: LogIn, catalog: dict[str, Any]
) -> None:
    puer = catalog["puer"]
    assert client.get(f"/api/v1/products/{puer.id}").get_json()["data"]["stock"] == 5  # cached now
    place(client, log_in(), {"items": [{"product_id": puer.id, "quantity": 2}]})
    assert client.get(f"/api/v1/products/{puer.id}").get_json()["data"]["stock"] == 3


def statements_of(client: FlaskClient, data: dict[str, Any], body: Any, key: str) -> list[str]:
    """The first words of every statement the order's request sent, COMMIT included."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()[:3]))

    def commit(_conn: Any) -> None:
        sent.append("COMMIT")

    event.listen(db.engine, "before_cursor_execute", record)
    event.listen(db.engine, "commit", commit)
    try:
        assert_envelope(place(client, data, body, key), 201, 0)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
        event.remove(db.engine, "commit", commit)
    return sent


@pytest.mark.parametrize("segments", [1, 8])
def test_an_order_takes_four_statements_and_reads_nothing_back(
    segments: int, client: FlaskClient, log_in: LogIn, catalog: dict[str, Any]
) -> None:
    """One read authenticates (the session joined with its user); then one read of the products,
    the order, the stock (a split product's segment last, right before the commit), the items,
    the commit; the answer reads nothing."""
    puer = catalog["puer"]
    db.session.execute(update(Product).where(Product.id == puer.id).values(stock_segments=segments))
    stock.spread(db.session, puer.id, total=None)
    db.session.commit()
    data, body = log_in(), {"items": [{"product_id": puer.id, "quantity": 1}]}
    sent = statements_of(client, data, body, "count-0001")
    take = (
        ["UPDATE products SET", "INSERT INTO order_items"]
        if segments == 1
        else ["INSERT INTO order_items", "UPDATE product_stock_segments SET"]
    )
    assert sent[1:] == [
        "SELECT products.id, products.title,",
        "INSERT INTO orders",
        *take,
        "COMMIT",
    ]
    assert sent[0].startswith("SELECT auth_sessions.id,")
    assert client.get(f"/api/v1/products/{puer.id}").get_json()["data"]["stock"] == 4


def test_an_order_no_single_segment_can_serve_locks_them_all_at_once(
    client: FlaskClient, log_in: LogIn, catalog: dict[str, Any]
) -> None:
    """5 over 8 segments is 1 in each of five: 2 are taken across two, with no retry."""
    puer = catalog["puer"]
    db.session.execute(update(Product).where(Product.id == puer.id).values(stock_segments=8))
    stock.spread(db.session, puer.id, total=None)
    db.session.commit()
    body = {"items": [{"product_id": puer.id, "quantity": 2}]}
    sent = statements_of(client, log_in(), body, "across-0001")
    assert sent[1:] == [
        "SELECT products.id, products.title,",
        "INSERT INTO orders",
        "SELECT products.category_id, products.title,",  # FOR UPDATE
        "SELECT product_stock_segments.segment, product_stock_segments.stock",  # FOR UPDATE
        "UPDATE product_stock_segments SET",
        "UPDATE product_stock_segments SET",
        "INSERT INTO order_items",
        "COMMIT",
    ]
    assert client.get(f"/api/v1/products/{puer.id}").get_json()["data"]["stock"] == 3


def test_the_same_key_and_body_return_the_same_order(
    client: FlaskClient, log_in: LogIn, catalog: dict[str, Any]
) -> None:
    data, body = log_in(), {"items": [{"product_id": catalog["puer"].id, "quantity": 1}]}
    first = assert_envelope(place(client, data, body), 201, 0)["data"]
    again = assert_envelope(place(client, data, body), 200, 0)["data"]
    assert again["order_no"] == first["order_no"]
    assert stock_of(catalog["puer"].id) == 4

    other_body = {"items": [{"product_id": catalog["puer"].id, "quantity": 2}]}
    assert_envelope(place(client, data, other_body), 409, 40900)
    # another user may use the same key: keys are per user
    assert_envelope(place(client, log_in(), body), 201, 0)


def test_a_shortage_writes_nothing_at_all(
    client: FlaskClient, log_in: LogIn, catalog: dict[str, Any]
) -> None:
    body = {
        "items": [
            {"product_id": catalog["longjing"].id, "quantity": 3},
            {"product_id": catalog["jerky"].id, "quantity": 3},
            {"product_id": catalog["puer"].id, "quantity": 6},
        ]
    }
    stock_outs = REGISTRY.get_sample_value("minishop_orders_out_of_stock_total") or 0.0
    response = assert_envelope(place(client, log_in(), body), 409, 40901)
    assert response["data"] == {"product_id": catalog["puer"].id}
    assert REGISTRY.get_sample_value("minishop_orders_out_of_stock_total") == stock_outs + 1
    assert (stock_of(catalog["longjing"].id), stock_of(catalog["jerky"].id)) == (10, 100)
    assert stock_of(catalog["puer"].id) == 5
    assert (count(Order), count(OrderItem)) == (0, 0)


@pytest.mark.parametrize("which", ["retired", "unknown"])
def test_products_not_on_sale_cannot_be_ordered(
    client: FlaskClient, log_in: LogIn, catalog: dict[str, Any], which: str
) -> None:
    product_id = catalog["retired"].id if which == "retired" else 999_999
    body = {
        "items": [
            {"product_id": catalog["jerky"].id, "quantity": 1},
            {"product_id": product_id, "quantity": 1},
        ]
    }
    assert_envelope(place(client, log_in(), body), 400, 40000)
    assert stock_of(catalog["jerky"].id) == 100
    assert count(Order) == 0


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"items": []}, "order-key-0001"),
        ({"items": [{"product_id": 1, "quantity": 0}]}, "order-key-0001"),
        ({"items": [{"product_id": 1, "quantity": 100}]}, "order-key-0001"),
        ({"items": [{"product_id": i, "quantity": 1} for i in range(1, 22)]}, "order-key-0001"),
        ({"items": [{"product_id": 1, "quantity": "1"}]}, "order-key-0001"),
        ({"items": [{"product_id": 1, "quantity": 1}], "coupon": "FREE"}, "order-key-0001"),
        ({"items": [{"product_id": 1, "quantity": 1}], "remark": "x" * 201}, "order-key-0001"),
        ({"items": [{"product_id": 1, "quantity": 1}]}, None),
        ({"items": [{"product_id": 1, "quantity": 1}]}, "short"),
        ({"items": [{"product_id": 1, "quantity": 1}]}, "bad key with spaces"),
    ],
    ids=[
        "no-lines",
        "zero",
        "hundred",
        "21-lines",
        "string-qty",
        "unknown-field",
        "long-remark",
        "no-key",
        "short-key",
        "bad-key",
    ],
)
def test_order_requests_are_validated(
    client: FlaskClient, log_in: LogIn, catalog: dict[str, Any], body: Any, key: str | None
) -> None:
    assert_envelope(place(client, log_in(), body, key=key), 400, 40000)
    assert count(Order) == 0


def test_users_see_only_their_own_orders(
    client: FlaskClient, log_in: LogIn, catalog: dict[str, Any]
) -> None:
    alice, bob = log_in(), log_in()
    line = {"items": [{"product_id": catalog["jerky"].id, "quantity": 1}]}
    first = place(client, alice, line, key="alice-key-001").get_json()["data"]
    second = place(client, alice, line, key="alice-key-002").get_json()["data"]
    bobs = place(client, bob, line, key="bob-key-0001").get_json()["data"]

    listing = assert_envelope(client.get("/api/v1/orders", headers=bearer(alice)), 200, 0)["data"]
    assert [o["order_no"] for o in listing["items"]] == [second["order_no"], first["order_no"]]
    assert listing["total"] == 2
    one = client.get(f"/api/v1/orders/{first['order_no']}", headers=bearer(alice))
    assert assert_envelope(one, 200, 0)["data"]["order_no"] == first["order_no"]
    theirs = client.get(f"/api/v1/orders/{bobs['order_no']}", headers=bearer(alice))
    assert_envelope(theirs, 404, 40400)

    cancelled = client.get("/api/v1/orders?status=cancelled", headers=bearer(alice))
    assert assert_envelope(cancelled, 200, 0)["data"]["total"] == 0
    assert_envelope(client.get("/api/v1/orders?status=lost", headers=bearer(alice)), 400, 40000)
    assert_envelope(client.get("/api/v1/orders"), 401, 40100)


def test_cancel_returns_stock_once(
    client: FlaskClient, log_in: LogIn, catalog: dict[str, Any]
) -> None:
    data, bob = log_in(), log_in()
    body = {"items": [{"product_id": catalog["puer"].id, "quantity": 2}]}
    order_no = place(client, data, body).get_json()["data"]["order_no"]
    assert stock_of(catalog["puer"].id) == 3
    assert_envelope(cancel(client, bob, order_no), 404, 40400)
    cancelled = cancel(client, data, order_no)
    assert assert_envelope(cancelled, 200, 0)["data"]["status"] == "cancelled"
    assert stock_of(catalog["puer"].id) == 5
    again = cancel(client, data, order_no)
    assert_envelope(again, 409, 40902)
    assert stock_of(catalog["puer"].id) == 5


def test_the_expiry_job_cancels_only_expired_orders(
    app: Any, client: FlaskClient, log_in: LogIn, catalog: dict[str, Any]
) -> None:
    data = log_in()
    line = {"items": [{"product_id": catalog["puer"].id, "quantity": 1}]}
    old = place(client, data, line, key="expire-key-01").get_json()["data"]["order_no"]
    fresh = place(client, data, line, key="expire-key-02").get_json()["data"]["order_no"]
    db.session.execute(
        Order.__table__.update()
        .where(Order.order_no == old)
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["orders", "expire"])
    assert result.exit_code == 0, result.output
    assert "1 orders expired" in result.output
    statuses = dict(db.session.execute(select(Order.order_no, Order.status)).all())
    assert statuses == {old: "cancelled", fresh: "pending_payment"}
    assert stock_of(catalog["puer"].id) == 4
    assert "0 orders expired" in app.test_cli_runner().invoke(args=["orders", "expire"]).output


def test_order_writes_must_be_signed(
    client: FlaskClient, log_in: LogIn, catalog: dict[str, Any]
) -> None:
    data = log_in()
    body = {"items": [{"product_id": catalog["puer"].id, "quantity": 1}]}
    unsigned = client.post(
        "/api/v1/orders", json=body, headers=bearer(data) | {"Idempotency-Key": "unsigned-01"}
    )
    assert_envelope(unsigned, 401, 40102)
    assert count(Order) == 0
    order_no = place(client, data, body).get_json()["data"]["order_no"]
    unsigned_cancel = client.post(f"/api/v1/orders/{order_no}/cancel", headers=bearer(data))
    assert_envelope(unsigned_cancel, 401, 40102)
    assert stock_of(catalog["puer"].id) == 4


def test_order_events_are_counted_and_logged(
    client: FlaskClient, log_in: LogIn, catalog: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(f"minishop_orders_{name}_total") or 0.0

    created, cancelled = sample("created"), sample("cancelled")
    data = log_in()
    with caplog.at_level(logging.INFO, logger="minishop.domain.orders"):
        body = {"items": [{"product_id": catalog["puer"].id, "quantity": 1}]}
        order_no = place(client, data, body).get_json()["data"]["order_no"]
        cancel(client, data, order_no)
    assert (sample("created"), sample("cancelled")) == (created + 1, cancelled + 1)
    logged = [r for r in caplog.records if r.name == "minishop.domain.orders"]
    assert [r.getMessage() for r in logged] == ["order placed", "order cancelled"]
