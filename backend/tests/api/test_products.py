from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.test_errors import assert_envelope


def titles(response: Any) -> list[str]:
    return [item["title"] for item in response.get_json()["data"]["items"]]


def test_categories_are_listed_in_sort_order(client: FlaskClient, catalog: dict[str, Any]) -> None:
    body = assert_envelope(client.get("/api/v1/categories"), 200, 0)
    assert [c["name"] for c in body["data"]["items"]] == ["Tea", "Snacks"]


def test_categories_are_a_page_like_every_list(
    client: FlaskClient, catalog: dict[str, Any]
) -> None:
    """data: {items, page, page_size, total}, sliced from the one cached document."""
    body = assert_envelope(client.get("/api/v1/categories"), 200, 0)
    assert {k: v for k, v in body["data"].items() if k != "items"} == {
        "page": 1,
        "page_size": 100,  # all of them by default, as before paging existed
        "total": 2,
    }
    second = assert_envelope(client.get("/api/v1/categories?page=2&page_size=1"), 200, 0)["data"]
    assert [c["name"] for c in second["items"]] == ["Snacks"]
    assert (second["page"], second["page_size"], second["total"]) == (2, 1, 2)
    beyond = client.get("/api/v1/categories?page=3&page_size=1").get_json()["data"]
    assert (beyond["items"], beyond["total"]) == ([], 2)
    for query in ["page_size=101", "page_size=0", "page=0", "page=abc"]:
        assert_envelope(client.get(f"/api/v1/categories?{query}"), 400, 40000)


def test_products_are_on_sale_only_newest_first_and_paginated(
    client: FlaskClient, catalog: dict[str, Any]
) -> None:
    response = client.get("/api/v1/products?page=1&page_size=2")
    body = assert_envelope(response, 200, 0)
    assert body["data"]["total"] == 3
    assert (body["data"]["page"], body["data"]["page_size"]) == (1, 2)
    assert titles(response) == ["Beef jerky", "Pu'er cake"]
    assert titles(client.get("/api/v1/products?page=2&page_size=2")) == ["Longjing 100% spring"]
    assert titles(client.get("/api/v1/products?page=3&page_size=2")) == []
    item = body["data"]["items"][0]
    assert set(item) == {
        "id",
        "category_id",
        "title",
        "price_fen",
        "stock",
        "status",
        "cover_url",
        "version",
        "created_at",
    }
    assert item["created_at"].endswith("Z")


def test_products_filter_by_category_and_title(
    client: FlaskClient, catalog: dict[str, Any]
) -> None:
    tea_id = catalog["tea"].id
    assert titles(client.get(f"/api/v1/products?category_id={tea_id}")) == [
        "Pu'er cake",
        "Longjing 100% spring",
    ]
    assert titles(client.get("/api/v1/products?q=jerky")) == ["Beef jerky"]
    # LIKE wildcards in q are matched literally, not as patterns.
    assert titles(client.get("/api/v1/products?q=100%25")) == ["Longjing 100% spring"]
    assert titles(client.get("/api/v1/products?q=_")) == []
    assert titles(client.get("/api/v1/products?q=%25")) == ["Longjing 100% spring"]


def test_product_query_is_validated(client: FlaskClient, catalog: dict[str, Any]) -> None:
    for query in [
        "page_size=101",
        "page_size=0",
        "page=0",
        "page=abc",
        "category_id=-1",
        "q=" + "x" * 65,
    ]:
        body = assert_envelope(client.get(f"/api/v1/products?{query}"), 400, 40000)
        assert body["data"]["errors"], query


def test_product_detail_and_unknown_or_off_sale_ids(
    client: FlaskClient, catalog: dict[str, Any]
) -> None:
    body = assert_envelope(client.get(f"/api/v1/products/{catalog['puer'].id}"), 200, 0)
    assert body["data"]["title"] == "Pu'er cake"
    assert body["data"]["stock"] == 5
    assert "description" in body["data"]
    assert_envelope(client.get(f"/api/v1/products/{catalog['retired'].id}"), 404, 40400)
    assert_envelope(client.get("/api/v1/products/999999"), 404, 40400)
    assert_envelope(client.get("/api/v1/products/not-a-number"), 404, 40400)


def test_openapi_document_describes_the_endpoints(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    assert {"/healthz", "/readyz", "/api/v1/products", "/api/v1/products/{product_id}"} <= set(
        document["paths"]
    )
    parameters = {p["name"]: p for p in document["paths"]["/api/v1/products"]["get"]["parameters"]}
    assert parameters["page_size"]["schema"]["maximum"] == 100
