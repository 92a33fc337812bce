"""API conventions that hold on every endpoint, most of them checked on both databases (MariaDB
and the embedded SQLite default): ids are positive integers below 2^63 and other integers fit
their columns (an out-of-range value is 400/40000 naming the field, never a 500 from the
driver); whatever /openapi.json allows is accepted (every enum value, 3.0 for an integer) and
whatever validation refuses, it says (patches without null, with something to change)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from flask_openapi3 import OpenAPI

from minishop import config, create_app
from minishop.domain.auth import grant_admin
from minishop.extensions import db
from tests.signing import json_bytes, send_signed, signed_headers
from tests.test_errors import assert_envelope
from wechat_emulator.testing import EmulatorControl

MAX_ID = 2**63 - 1
MAX_INT_COLUMN = 2**31 - 1
TOO_BIG = MAX_ID + 1
ADMIN = "/api/v1/admin"


@dataclass(frozen=True)
class Shop:
    """A test client of the app on one database, and a logged-in admin of it."""

    client: FlaskClient
    admin: dict[str, Any]

    def signed(self, method: str, path: str, payload: Any = None, **headers: str) -> Any:
        return send_signed(self.client, self.admin, method, path, payload, headers)


@pytest.fixture(scope="session")
def sqlite_app(sqlite_settings: config.TestingSettings) -> Iterator[OpenAPI]:
    app = create_app(sqlite_settings)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(params=["mariadb", "sqlite"])
def shop(request: pytest.FixtureRequest, emulator: EmulatorControl) -> Shop:
    """The same checks run against MariaDB and against the SQLite default."""
    if request.param == "mariadb":
        return Shop(request.getfixturevalue("client"), request.getfixturevalue("admin"))
    app: OpenAPI = request.getfixturevalue("sqlite_app")
    client = app.test_client()
    login_code = emulator.new_login_code()
    response = client.post("/api/v1/auth/login", json={"code": login_code.code})
    data: dict[str, Any] = assert_envelope(response, 200, 0)["data"]
    with app.app_context():
        grant_admin(db.session(), login_code.openid)
    return Shop(client, data)


def assert_invalid(response: Any, field: str) -> None:
    body = assert_envelope(response, 400, 40000)
    assert field in [error["field"] for error in body["data"]["errors"]], body


@pytest.mark.parametrize(
    ("url", "field"),
    [
        (f"/api/v1/products/{TOO_BIG}", "product_id"),
        ("/api/v1/products/99999999999999999999999", "product_id"),
        (f"/api/v1/products?category_id={TOO_BIG}", "category_id"),
        ("/api/v1/products?category_id=99999999999999999999999", "category_id"),
    ],
)
def test_public_ids_beyond_bigint_are_invalid(shop: Shop, url: str, field: str) -> None:
    assert_invalid(shop.client.get(url), field)


def test_the_largest_id_is_simply_not_found(shop: Shop) -> None:
    assert_envelope(shop.client.get(f"/api/v1/products/{MAX_ID}"), 404, 40400)
    listed = shop.client.get(f"/api/v1/products?category_id={MAX_ID}")
    assert assert_envelope(listed, 200, 0)["data"]["items"] == []
    missing = shop.signed("PUT", f"/api/v1/admin/products/{MAX_ID}/stock", {"stock": 1})
    assert_envelope(missing, 404, 40400)


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("PATCH", f"{ADMIN}/categories/{TOO_BIG}", {"name": "x"}, "category_id"),
        ("DELETE", f"{ADMIN}/categories/{TOO_BIG}", None, "category_id"),
        (
            "POST",
            f"{ADMIN}/products",
            {"category_id": TOO_BIG, "title": "x", "price_fen": 1},
            "category_id",
        ),
        ("PATCH", f"{ADMIN}/products/{TOO_BIG}", {"version": 1, "title": "x"}, "product_id"),
        ("PATCH", f"{ADMIN}/products/1", {"version": 1, "category_id": TOO_BIG}, "category_id"),
        ("PATCH", f"{ADMIN}/products/1", {"version": MAX_INT_COLUMN + 1, "title": "x"}, "version"),
        ("PUT", f"{ADMIN}/products/{TOO_BIG}/stock", {"stock": 1}, "product_id"),
        ("POST", f"{ADMIN}/products/{TOO_BIG}/on-sale", None, "product_id"),
        ("POST", f"{ADMIN}/products/{TOO_BIG}/off-sale", None, "product_id"),
    ],
)
def test_admin_ids_and_versions_beyond_their_columns_are_invalid(
    shop: Shop, method: str, path: str, payload: Any, field: str
) -> None:
    assert_invalid(shop.signed(method, path, payload), field)


def test_order_lines_with_ids_beyond_bigint_are_invalid(shop: Shop) -> None:
    order = {"items": [{"product_id": TOO_BIG, "quantity": 1}]}
    response = shop.signed("POST", "/api/v1/orders", order, **{"Idempotency-Key": "big-id-0001"})
    assert_invalid(response, "items.0.product_id")


def new_product(shop: Shop, price_fen: int, stock: int) -> int:
    """A product on sale in a category of its own (the SQLite database is kept between tests)."""
    category_name = f"Jade {uuid.uuid4().hex[:8]}"
    category = shop.signed("POST", "/api/v1/admin/categories", {"name": category_name})
    product = {
        "category_id": assert_envelope(category, 201, 0)["data"]["id"],
        "title": "Imperial jade teapot",
        "price_fen": price_fen,
        "stock": stock,
    }
    created = shop.signed("POST", "/api/v1/admin/products", product)
    product_id: int = assert_envelope(created, 201, 0)["data"]["id"]
    return product_id


def stock_of(shop: Shop, product_id: int) -> int:
    stock: int = shop.client.get(f"/api/v1/products/{product_id}").get_json()["data"]["stock"]
    return stock


def test_lines_of_one_product_add_up_to_at_most_99(shop: Shop) -> None:
    """Duplicate lines are merged into one order item, whose quantity is 1..99 like a line's."""
    product_id = new_product(shop, price_fen=100, stock=1_000)
    lines = [{"product_id": product_id, "quantity": 60}, {"product_id": product_id, "quantity": 40}]
    response = shop.signed(
        "POST", "/api/v1/orders", {"items": lines}, **{"Idempotency-Key": "merged-0001"}
    )
    assert_invalid(response, "items")
    assert stock_of(shop, product_id) == 1_000


def test_an_order_total_beyond_its_column_is_invalid(shop: Shop) -> None:
    """99 of the most expensive product: 9.9e9 fen does not fit the INT total and subtotal."""
    product_id = new_product(shop, price_fen=100_000_000, stock=1_000)
    order = {"items": [{"product_id": product_id, "quantity": 99}]}
    response = shop.signed("POST", "/api/v1/orders", order, **{"Idempotency-Key": "jade-0001"})
    assert_invalid(response, "items")
    assert stock_of(shop, product_id) == 1_000  # the stock taken before the total was known


@dataclass(frozen=True)
class RequestField:
    """One value a request carries, as /openapi.json describes it."""

    method: str
    path: str
    location: str  # path, query, header or body
    name: tuple[str | int, ...]  # body fields: the keys down to it (0 for an array's items)
    schema: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method} {self.path} {self.location} {'.'.join(map(str, self.name))}"


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with $ref followed and a nullable anyOf reduced to its non-null branch."""
    while True:
        if "$ref" in schema:
            name = schema["$ref"].removeprefix("#/components/schemas/")
            schema = {**document["components"]["schemas"][name], **schema}
            del schema["$ref"]
            continue
        branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:
            schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **branches[0]}
            continue
        return schema


def body_fields(
    document: dict[str, Any], schema: dict[str, Any], prefix: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    schema = resolve(document, schema)
    if schema.get("type") == "object":
        for name, child in schema.get("properties", {}).items():
            yield from body_fields(document, child, (*prefix, name))
    elif schema.get("type") == "array" and "items" in schema:
        yield from body_fields(document, schema["items"], (*prefix, 0))
    else:
        yield prefix, schema


def request_fields(document: dict[str, Any]) -> Iterator[RequestField]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schema = resolve(document, parameter["schema"])
                yield RequestField(
                    method.upper(), path, parameter["in"], (parameter["name"],), schema
                )
            for content in operation.get("requestBody", {}).get("content", {}).values():
                for name, schema in body_fields(document, content["schema"], ()):
                    yield RequestField(method.upper(), path, "body", name, schema)


@pytest.fixture()
def document(client: FlaskClient) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/openapi.json").get_json()
    return body


def test_every_id_in_the_openapi_document_is_bounded_to_bigint(document: dict[str, Any]) -> None:
    ids = [
        field
        for field in request_fields(document)
        if field.schema.get("type") == "integer" and str(field.name[-1]).endswith("id")
    ]
    assert len(ids) >= 10, [field.label for field in ids]
    unbounded = [
        field.label
        for field in ids
        if (field.schema.get("minimum"), field.schema.get("maximum")) != (1, MAX_ID)
    ]
    assert unbounded == []


def otherwise_valid_requests(catalog: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per operation, what a valid request needs besides the field under test."""
    return {
        f"POST {ADMIN}/products": {
            "body": {"category_id": catalog["tea"].id, "title": "Enum probe", "price_fen": 100}
        },
    }


def set_at(target: Any, name: tuple[str | int, ...], value: Any) -> None:
    for key in name[:-1]:
        target = target[key]
    target[name[-1]] = value


def test_every_enum_value_in_the_openapi_document_is_accepted(
    client: FlaskClient, admin: dict[str, Any], catalog: dict[str, Any], document: dict[str, Any]
) -> None:
    """Each value the document allows for an enum, sent as JSON or in a query: never a 400.

    The request may still fail for other reasons (a 404 for an id that does not exist), but
    validation must accept the value: strict bodies once refused every enum sent as JSON.
    """
    valid = otherwise_valid_requests(catalog)
    path_values = {"product_id": catalog["puer"].id, "category_id": catalog["tea"].id}
    enums = [field for field in request_fields(document) if "enum" in field.schema]
    assert {f.label for f in enums} >= {
        f"POST {ADMIN}/products body status",
        "GET /api/v1/orders query status",
        f"GET {ADMIN}/orders query status",
    }
    for field in enums:
        operation = f"{field.method} {field.path}"
        for value in field.schema["enum"]:
            request = copy.deepcopy(valid.get(operation, {}))
            request.setdefault(field.location, {})
            set_at(request[field.location], field.name, value)
            path = field.path.format(**path_values, **request.get("path", {}))
            query = urlencode(request.get("query", {}))
            body = b"" if "body" not in request else json_bytes(request["body"])
            headers = signed_headers(admin, field.method, path, body, query)
            response = client.open(
                f"{path}?{query}" if query else path,
                method=field.method,
                data=body,
                headers=headers | request.get("header", {}),
                content_type="application/json" if body else None,
            )
            assert response.status_code != 400, (field.label, value, response.get_json())


def test_json_numbers_with_a_zero_fraction_are_integers(shop: Shop) -> None:
    """JSON has one number type and JSON Schema's `integer` includes 3.0; strings stay refused."""
    created = shop.signed("POST", f"{ADMIN}/categories", {"name": uuid.uuid4().hex, "sort": 3.0})
    assert assert_envelope(created, 201, 0)["data"]["sort"] == 3
    product_id = new_product(shop, price_fen=100, stock=1)
    stock = shop.signed("PUT", f"{ADMIN}/products/{product_id}/stock", {"stock": 5.0})
    assert assert_envelope(stock, 200, 0)["data"]["stock"] == 5
    for refused in [5.5, "5", True, 1e300, None]:
        response = shop.signed("PUT", f"{ADMIN}/products/{product_id}/stock", {"stock": refused})
        assert_invalid(response, "stock")


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/products/{product}", {"version": 1, "title": None}, "title"),
        ("/products/{product}", {"version": 1, "price_fen": None, "title": "x"}, "price_fen"),
        ("/categories/{category}", {"name": None}, "name"),
    ],
)
def test_null_in_a_patch_is_refused_not_stored(
    shop: Shop, path: str, payload: dict[str, Any], field: str
) -> None:
    """A field left out keeps its value; null is not a value of these NOT NULL columns."""
    product_id = new_product(shop, price_fen=100, stock=1)
    category_id = shop.client.get(f"/api/v1/products/{product_id}").get_json()["data"][
        "category_id"
    ]
    target = ADMIN + path.format(product=product_id, category=category_id)
    assert_invalid(shop.signed("PATCH", target, payload), field)


def test_a_nickname_patch_refuses_null_too(client: FlaskClient, admin: dict[str, Any]) -> None:
    payload = {"nickname": None, "avatar_url": "https://example.com/a.png"}
    assert_invalid(send_signed(client, admin, "PATCH", "/api/v1/users/me", payload), "nickname")


def test_the_document_describes_what_a_body_needs(document: dict[str, Any]) -> None:
    """What validation refuses, the document says, so that schema-valid requests are accepted."""
    schemas = document["components"]["schemas"]
    assert schemas["ProductPatch"]["minProperties"] == 2  # the version and a change
    assert schemas["ProfilePatch"]["minProperties"] == 1
    assert schemas["CategoryPatch"]["minProperties"] == 1
    for name in ["ProductPatch", "ProfilePatch", "CategoryPatch"]:
        for field, schema in schemas[name]["properties"].items():
            assert "anyOf" not in schema and schema.get("type") != "null", (name, field)
    assert schemas["UploadForm"]["properties"]["file"]["minLength"] == 1


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("created_from=2026-01-01T00:00:00Z", 200),
        ("created_from=0001-01-01T00:00:00Z&created_to=9999-12-31T23:59:59.999999Z", 200),
        ("created_from=2026-01-01T08:00:00%2B08:00", 200),
        ("created_from=2026-01-01T00:00:00", 400),  # no offset: not RFC 3339
        ("created_from=0001-01-01T00:00:00%2B01:00", 400),  # before year 1 in UTC
        ("created_to=9999-12-31T23:59:59-01:00", 400),  # after year 9999 in UTC
    ],
)
def test_order_time_filters_are_rfc3339_and_representable_in_utc(
    shop: Shop, query: str, status: int
) -> None:
    response = shop.signed("GET", f"{ADMIN}/orders?{query}")
    assert_envelope(response, status, 0 if status == 200 else 40000)
