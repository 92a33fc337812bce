"""The back office: only admins, optimistic concurrency, and the cache follows every write."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select, update

from minishop.extensions import db
from minishop.models import Order, OrderStatus, Product, ProductStockSegment
from tests.api.test_orders import place
from tests.conftest import bearer
from tests.signing import send_signed, signed_headers
from tests.test_errors import assert_envelope

LogIn = Callable[..., dict[str, Any]]


def test_only_admins_get_in(client: FlaskClient, log_in: LogIn) -> None:
    assert_envelope(client.get("/api/v1/admin/orders"), 401, 40100)
    shopper = log_in()
    assert_envelope(client.get("/api/v1/admin/orders", headers=bearer(shopper)), 403, 40300)
    forbidden = client.post(
        "/api/v1/admin/categories", json={"name": "Hack"}, headers=bearer(shopper)
    )
    assert_envelope(forbidden, 403, 40300)


def test_categories_crud_and_the_cached_list_follows(
    client: FlaskClient, admin: dict[str, Any]
) -> None:
    assert client.get("/api/v1/categories").get_json()["data"]["items"] == []  # now cached
    created = send_signed(
        client, admin, "POST", "/api/v1/admin/categories", {"name": "Tea", "sort": 2}
    )
    tea = assert_envelope(created, 201, 0)["data"]
    assert [c["name"] for c in client.get("/api/v1/categories").get_json()["data"]["items"]] == [
        "Tea"
    ]
    duplicate = send_signed(client, admin, "POST", "/api/v1/admin/categories", {"name": "Tea"})
    assert_envelope(duplicate, 409, 40900)
    renamed = send_signed(
        client, admin, "PATCH", f"/api/v1/admin/categories/{tea['id']}", {"name": "Green tea"}
    )
    assert assert_envelope(renamed, 200, 0)["data"]["name"] == "Green tea"
    assert client.get("/api/v1/categories").get_json()["data"]["items"][0]["name"] == "Green tea"
    deleted = send_signed(client, admin, "DELETE", f"/api/v1/admin/categories/{tea['id']}")
    assert_envelope(deleted, 200, 0)
    assert client.get("/api/v1/categories").get_json()["data"]["items"] == []
    missing = send_signed(client, admin, "DELETE", f"/api/v1/admin/categories/{tea['id']}")
    assert_envelope(missing, 404, 40400)


def test_a_category_with_products_cannot_be_deleted(
    client: FlaskClient, admin: dict[str, Any], catalog: dict[str, Any]
) -> None:
    response = send_signed(client, admin, "DELETE", f"/api/v1/admin/categories/{catalog['tea'].id}")
    assert_envelope(response, 409, 40900)


def test_product_lifecycle_through_the_cache(
    client: FlaskClient, admin: dict[str, Any], catalog: dict[str, Any]
) -> None:
    next_id = catalog["retired"].id + 1
    assert_envelope(client.get(f"/api/v1/products/{next_id}"), 404, 40400)  # cached as missing
    body = {"category_id": catalog["tea"].id, "title": "Oolong", "price_fen": 5000, "stock": 7}
    created = assert_envelope(
        send_signed(client, admin, "POST", "/api/v1/admin/products", body), 201, 0
    )["data"]
    assert created["id"] == next_id
    detail = assert_envelope(client.get(f"/api/v1/products/{next_id}"), 200, 0)["data"]
    assert (detail["title"], detail["stock"], detail["version"]) == ("Oolong", 7, 1)

    patch = {"version": 1, "title": "Tieguanyin oolong", "price_fen": 5500}
    updated = send_signed(client, admin, "PATCH", f"/api/v1/admin/products/{next_id}", patch)
    assert assert_envelope(updated, 200, 0)["data"]["version"] == 2
    assert client.get(f"/api/v1/products/{next_id}").get_json()["data"]["title"] == (
        "Tieguanyin oolong"
    )
    stale = send_signed(client, admin, "PATCH", f"/api/v1/admin/products/{next_id}", patch)
    assert "version 2" in assert_envelope(stale, 409, 40900)["message"]

    stock = send_signed(
        client, admin, "PUT", f"/api/v1/admin/products/{next_id}/stock", {"stock": 3}
    )
    assert assert_envelope(stock, 200, 0)["data"]["stock"] == 3
    assert client.get(f"/api/v1/products/{next_id}").get_json()["data"]["stock"] == 3

    off = send_signed(client, admin, "POST", f"/api/v1/admin/products/{next_id}/off-sale")
    assert assert_envelope(off, 200, 0)["data"]["status"] == "off_sale"
    assert_envelope(client.get(f"/api/v1/products/{next_id}"), 404, 40400)
    on = send_signed(client, admin, "POST", f"/api/v1/admin/products/{next_id}/on-sale")
    assert assert_envelope(on, 200, 0)["data"]["status"] == "on_sale"
    assert_envelope(client.get(f"/api/v1/products/{next_id}"), 200, 0)


def test_product_writes_are_validated(
    client: FlaskClient, admin: dict[str, Any], catalog: dict[str, Any]
) -> None:
    product_id, tea_id = catalog["puer"].id, catalog["tea"].id
    bad_creates = [
        {"category_id": tea_id, "title": "x", "price_fen": -1},
        {"category_id": tea_id, "title": "", "price_fen": 1},
        {"category_id": tea_id, "title": "x", "price_fen": 1, "cover_url": "javascript:x"},
        {"category_id": tea_id, "title": "x", "price_fen": 1, "status": "hidden"},
        {"category_id": tea_id, "title": "x", "price_fen": 1, "id": 5},
    ]
    for body in bad_creates:
        response = send_signed(client, admin, "POST", "/api/v1/admin/products", body)
        assert_envelope(response, 400, 40000)
    no_category = {"category_id": 999_999, "title": "x", "price_fen": 1}
    response = send_signed(client, admin, "POST", "/api/v1/admin/products", no_category)
    assert_envelope(response, 404, 40400)
    for patch in [{"title": "no version"}, {"version": 1}, {"version": 1, "stock": 5}]:
        response = send_signed(
            client, admin, "PATCH", f"/api/v1/admin/products/{product_id}", patch
        )
        assert_envelope(response, 400, 40000)
    negative = send_signed(
        client, admin, "PUT", f"/api/v1/admin/products/{product_id}/stock", {"stock": -1}
    )
    assert_envelope(negative, 400, 40000)
    missing = send_signed(client, admin, "PUT", "/api/v1/admin/products/999999/stock", {"stock": 1})
    assert_envelope(missing, 404, 40400)


def test_admin_lists_orders_by_status_and_time_and_ships_paid_ones(
    client: FlaskClient, admin: dict[str, Any], log_in: LogIn, catalog: dict[str, Any]
) -> None:
    shopper = log_in()
    line = {"items": [{"product_id": catalog["jerky"].id, "quantity": 1}]}
    unpaid = place(client, shopper, line, key="admin-list-01").get_json()["data"]["order_no"]
    paid = place(client, shopper, line, key="admin-list-02").get_json()["data"]["order_no"]
    db.session.execute(
        update(Order)
        .where(Order.order_no == paid)
        .values(status=OrderStatus.PAID, paid_at=datetime.now(UTC))
    )
    db.session.commit()

    def listed(query: str) -> list[str]:
        headers = signed_headers(admin, "GET", "/api/v1/admin/orders", query=query)
        response = client.get(f"/api/v1/admin/orders?{query}", headers=headers)
        return [o["order_no"] for o in assert_envelope(response, 200, 0)["data"]["items"]]

    assert listed("") == [paid, unpaid]
    assert listed("status=paid") == [paid]
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert listed(f"created_from={later}") == []
    assert listed(f"created_to={later}&status=pending_payment") == [unpaid]

    shipped = send_signed(client, admin, "POST", f"/api/v1/admin/orders/{paid}/ship")
    assert assert_envelope(shipped, 200, 0)["data"]["status"] == "shipped"
    not_paid = send_signed(client, admin, "POST", f"/api/v1/admin/orders/{unpaid}/ship")
    assert_envelope(not_paid, 409, 40902)
    unknown = send_signed(client, admin, "POST", "/api/v1/admin/orders/20260101000000123/ship")
    assert_envelope(unknown, 404, 40400)


def test_admin_writes_must_be_signed(client: FlaskClient, admin: dict[str, Any]) -> None:
    unsigned = client.post(
        "/api/v1/admin/categories", json={"name": "Unsigned"}, headers=bearer(admin)
    )
    assert_envelope(unsigned, 401, 40102)
    assert client.get("/api/v1/categories").get_json()["data"]["items"] == []


def test_splitting_a_product_keeps_its_stock_and_a_stocktake_spreads_over_the_segments(
    client: FlaskClient, admin: dict[str, Any], catalog: dict[str, Any]
) -> None:
    jerky = catalog["jerky"]
    path = f"/api/v1/admin/products/{jerky.id}"
    for bad in (0, 65, "8"):
        response = send_signed(client, admin, "PATCH", path, {"version": 1, "stock_segments": bad})
        assert_envelope(response, 400, 40000)
    assert client.get(f"/api/v1/products/{jerky.id}").get_json()["data"]["stock"] == 100  # cached

    split = send_signed(client, admin, "PATCH", path, {"version": 1, "stock_segments": 8})
    data = assert_envelope(split, 200, 0)["data"]
    assert (data["stock_segments"], data["stock"], data["version"]) == (8, 100, 2)
    assert segment_stocks(jerky.id) == [13] * 4 + [12] * 4
    assert client.get(f"/api/v1/products/{jerky.id}").get_json()["data"]["stock"] == 100
    listed = client.get("/api/v1/products?q=jerky").get_json()["data"]["items"]
    assert [item["stock"] for item in listed] == [100]

    stocktake = send_signed(client, admin, "PUT", f"{path}/stock", {"stock": 10})
    assert assert_envelope(stocktake, 200, 0)["data"]["stock"] == 10
    assert segment_stocks(jerky.id) == [2, 2] + [1] * 6

    merged = send_signed(client, admin, "PATCH", path, {"version": 2, "stock_segments": 1})
    data = assert_envelope(merged, 200, 0)["data"]
    assert (data["stock_segments"], data["stock"]) == (1, 10)
    assert segment_stocks(jerky.id) == []
    db.session.rollback()
    assert db.session.scalar(select(Product.stock).where(Product.id == jerky.id)) == 10


def segment_stocks(product_id: int) -> list[int]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(ProductStockSegment.stock)
            .where(ProductStockSegment.product_id == product_id)
            .order_by(ProductStockSegment.segment)
        )
    )
