from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from flask.testing import FlaskClient
from redis import Redis

from minishop import extensions
from minishop.api import http_cache
from minishop.domain import catalog_admin
from minishop.extensions import db
from tests.conftest import ClientWith
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


CATALOG_READS = ["/api/v1/products?page_size=2", "/api/v1/categories"]


def detail(catalog: dict[str, Any]) -> str:
    return f"/api/v1/products/{catalog['puer'].id}"


def test_cached_bodies_are_compact_utf8_json_like_every_answer(
    client: FlaskClient, catalog: dict[str, Any]
) -> None:
    for path in [detail(catalog), *CATALOG_READS]:
        for _ in range(2):  # built, then from the cache
            response = client.get(path)
            assert (
                response.data
                == json.dumps(
                    response.get_json(), separators=(",", ":"), ensure_ascii=False
                ).encode()
                + b"\n"
            )
            assert response.content_type == "application/json"


def test_anonymous_catalog_reads_are_public_for_a_second_with_a_strong_etag(
    client: FlaskClient, catalog: dict[str, Any]
) -> None:
    for path in [detail(catalog), *CATALOG_READS]:
        margin = http_cache.EDGE_REFRESH_SECONDS
        before = int(time.time() - margin)
        first, again = client.get(path), client.get(path)
        assert first.headers["Cache-Control"] == "public, max-age=1"
        # For nginx (the edge): fresh to the end of the second EDGE_REFRESH_SECONDS ago.
        expires = first.headers["X-Accel-Expires"]
        assert expires.startswith("@") and before <= int(expires[1:]) <= time.time() - margin
        etag = first.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10  # strong
        assert again.headers["ETag"] == etag


def test_a_read_the_first_level_holds_is_answered_before_flask(
    client_with: ClientWith, catalog: dict[str, Any]
) -> None:
    """The first read of each loads from the database; once the worker's first level holds it,
    the catalog shortcut answers ahead of Flask: no request context, no database session.
    (A read between the two may reach Flask while the invalidation subscriber starts, which
    empties the first level once; it reads Redis, without a session.)"""
    fresh = client_with()
    opened: list[bool] = []

    def record(_exc: BaseException | None) -> None:  # runs before flask-sqlalchemy's removal
        opened.append(db.session.registry.has())

    fresh.application.teardown_request(record)
    paths = [detail(catalog), "/api/v1/products", "/api/v1/categories"]
    answers = [fresh.get(path) for _ in range(3) for path in paths]
    for answer in answers:
        assert_envelope(answer, 200, 0)
    assert opened[:3] == [True] * 3
    assert not any(opened[3:])
    dispatched = len(opened)
    held = [fresh.get(path) for path in paths]
    assert len(opened) == dispatched  # none of them reached Flask
    assert [answer.get_json()["data"] for answer in held] == [
        answer.get_json()["data"] for answer in answers[:3]
    ]


def test_if_none_match_answers_304_without_a_body(
    client: FlaskClient, catalog: dict[str, Any]
) -> None:
    for path in [detail(catalog), *CATALOG_READS]:
        etag = client.get(path).headers["ETag"]
        for header in [etag, f"W/{etag}", f'"other", {etag}', "*"]:
            response = client.get(path, headers={"If-None-Match": header})
            assert response.status_code == 304, (path, header)
            assert response.data == b""
            assert response.headers["ETag"] == etag
            assert response.headers["Cache-Control"] == "public, max-age=1"
            assert response.headers["X-Accel-Expires"].startswith("@")
            assert response.headers["X-Request-ID"]
        other = client.get(path, headers={"If-None-Match": '"other", W/"else"'})
        assert other.status_code == 200 and other.get_json()["code"] == 0


def test_a_changed_product_never_answers_304_for_its_old_etag(
    client: FlaskClient, catalog: dict[str, Any]
) -> None:
    path, product = detail(catalog), catalog["puer"]
    old = client.get(path).headers["ETag"]
    old_list = client.get("/api/v1/products").headers["ETag"]
    catalog_admin.update_product(
        db.session, extensions.catalog_cache.get(), product.id, product.version, {"price_fen": 1}
    )
    changed = client.get(path, headers={"If-None-Match": old})
    assert changed.status_code == 200 and changed.get_json()["data"]["price_fen"] == 1
    assert changed.headers["ETag"] != old
    listed = client.get("/api/v1/products", headers={"If-None-Match": old_list})
    assert listed.status_code == 200 and listed.headers["ETag"] != old_list


def test_catalog_reads_with_credentials_are_private(
    app: Any, client: FlaskClient, catalog: dict[str, Any]
) -> None:
    with_cookie = app.test_client()
    with_cookie.set_cookie("session", "1")  # the test client sends its own jar as `Cookie`
    callers = [(client, {"Authorization": "Bearer x"}), (with_cookie, {})]
    for path in [detail(catalog), *CATALOG_READS]:
        etag = client.get(path).headers["ETag"]
        for caller, headers in callers:
            response = caller.get(path, headers=headers)
            assert response.status_code == 200
            assert response.headers["Cache-Control"] == "private, no-cache"
            assert "X-Accel-Expires" not in response.headers
            assert response.headers["ETag"] == etag
            revalidated = caller.get(path, headers=headers | {"If-None-Match": etag})
            assert revalidated.status_code == 304
            assert revalidated.headers["Cache-Control"] == "private, no-cache"


def test_every_other_api_response_is_no_store(client: FlaskClient, catalog: dict[str, Any]) -> None:
    for method, path in [
        ("GET", "/api/v1/products/999999"),  # a 404 of the catalog itself
        ("GET", "/api/v1/products?page=0"),
        ("GET", "/api/v1/users/me"),
        ("GET", "/api/v1/orders"),
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/nowhere"),
    ]:
        response = client.open(path, method=method)
        assert response.status_code >= 400, path
        assert response.headers["Cache-Control"] == "no-store", path
        assert "ETag" not in response.headers, path


def test_the_etag_is_the_same_on_every_gunicorn_worker(
    live_server: str, catalog: dict[str, Any], redis_url: str
) -> None:
    """It is a hash of the bytes: a body rebuilt by another worker after a flush has the same."""
    url = live_server + detail(catalog)

    def etags() -> set[str]:
        with ThreadPoolExecutor(8) as pool:
            found = pool.map(lambda _: requests.get(url, timeout=10).headers["ETag"], range(32))
            return set(found)

    before = etags()
    Redis.from_url(redis_url).flushall()
    time.sleep(1.2)  # and every worker's first level has let go
    assert len(before) == 1 and etags() == before
