"""The envelope and the error-code table, driven through a small test-only blueprint."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Response
from flask.testing import FlaskClient
from flask_openapi3 import APIBlueprint
from pydantic import Field
from sqlalchemy.exc import OperationalError

from minishop import config, create_app
from minishop.api.common import StrictBody
from minishop.envelope import ok
from minishop.errors import AppError, ErrorCode

API_CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "api.md"


class EchoBody(StrictBody):
    name: str = Field(max_length=8)
    count: int = Field(ge=1, le=99)
    tags: list[str] = Field(default_factory=list, max_length=3)


probe = APIBlueprint("probe", __name__, url_prefix="/api/v1/probe")


@probe.post("/echo")
def echo(body: EchoBody) -> Response:
    return ok(body, status=201)


@probe.get("/boom")
def boom() -> Response:
    raise RuntimeError("secret detail: password=hunter2")


@probe.get("/db-down")
def db_down() -> Response:
    raise OperationalError("SELECT secret", {}, Exception("Can't connect to MySQL server"))


@probe.get("/conflict")
def conflict() -> Response:
    raise AppError(ErrorCode.OUT_OF_STOCK, "only 2 left", headers={"X-Extra": "1"})


@pytest.fixture(scope="module")
def probe_client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    """Without Redis: the embedded store in a temporary folder, not the instance folder's."""
    store = tmp_path_factory.mktemp("probe") / "minishop-kv.db"
    app = create_app(
        config.TestingSettings(MAX_CONTENT_LENGTH=1024, EMBEDDED_STORE_PATH=str(store))
    )
    app.register_api(probe)
    return app.test_client()


def assert_envelope(response: Any, status: int, code: int) -> dict[str, Any]:
    body: dict[str, Any] = response.get_json()
    assert response.status_code == status, body
    assert body["code"] == code, body
    assert set(body) == {"code", "message", "data", "request_id"}
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_valid_body_is_accepted(probe_client: FlaskClient) -> None:
    response = probe_client.post("/api/v1/probe/echo", json={"name": "tea", "count": 2})
    body = assert_envelope(response, 201, 0)
    assert body["data"] == {"name": "tea", "count": 2, "tags": []}
    assert body["message"] == "ok"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b'{"name": "tea",', "application/json"),
        (b"name=tea&count=2", "application/x-www-form-urlencoded"),
        (b'{"name": "tea", "count": 2}', "text/plain"),
        (b"", "application/json"),
        (b"\xff\xfe\x00", "application/json"),
    ],
    ids=["truncated", "form", "text-plain", "empty", "not-utf8"],
)
def test_a_body_that_is_not_json_gets_40001(
    probe_client: FlaskClient, data: bytes, content_type: str
) -> None:
    response = probe_client.post("/api/v1/probe/echo", data=data, content_type=content_type)
    body = assert_envelope(response, 400, 40001)
    assert "JSON" in body["message"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "tea", "count": "2"}, "count"),
        ({"name": 5, "count": 2}, "name"),
        ({"name": "tea", "count": 2, "admin": True}, "admin"),
        ({"name": "tea-and-coffee", "count": 2}, "name"),
        ({"name": "tea", "count": 0}, "count"),
        ({"name": "tea", "count": 2, "tags": ["a", "b", "c", "d"]}, "tags"),
        ({"count": 2}, "name"),
        ([1, 2], "body"),
        ("just a string", "body"),
    ],
    ids=[
        "int-as-string",
        "wrong-type",
        "unknown-field",
        "too-long",
        "out-of-range",
        "list-too-long",
        "missing",
        "array",
        "string",
    ],
)
def test_invalid_fields_get_40000_naming_the_field(
    probe_client: FlaskClient, payload: Any, field: str
) -> None:
    response = probe_client.post("/api/v1/probe/echo", json=payload)
    body = assert_envelope(response, 400, 40000)
    assert field in [error["field"] for error in body["data"]["errors"]]


def test_validation_errors_never_echo_the_input(probe_client: FlaskClient) -> None:
    response = probe_client.post("/api/v1/probe/echo", json={"name": "s3cr3t-value", "count": 2})
    assert "s3cr3t-value" not in response.get_data(as_text=True)


def test_a_body_over_the_limit_gets_41300(probe_client: FlaskClient) -> None:
    payload = b'{"name": "' + b"a" * 4096 + b'", "count": 1}'
    response = probe_client.post(
        "/api/v1/probe/echo", data=payload, content_type="application/json"
    )
    assert_envelope(response, 413, 41300)


def test_unknown_route_and_wrong_method(probe_client: FlaskClient) -> None:
    assert_envelope(probe_client.get("/api/v1/nothing-here"), 404, 40400)
    assert_envelope(probe_client.get("/definitely/not/here"), 404, 40400)
    response = probe_client.delete("/api/v1/probe/echo")
    assert_envelope(response, 405, 40500)
    assert "POST" in response.headers["Allow"]


def test_unexpected_exception_is_logged_but_never_shown(
    probe_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = probe_client.get("/api/v1/probe/boom")
    body = assert_envelope(response, 500, 50000)
    assert "hunter2" not in response.get_data(as_text=True)
    assert body["message"] == "internal error"
    assert any(
        record.exc_info and "hunter2" in str(record.exc_info[1]) for record in caplog.records
    )


def test_database_unavailable_gets_50300_without_sql(probe_client: FlaskClient) -> None:
    response = probe_client.get("/api/v1/probe/db-down")
    assert_envelope(response, 503, 50300)
    assert "SELECT" not in response.get_data(as_text=True)


def test_app_error_carries_its_code_message_and_headers(probe_client: FlaskClient) -> None:
    response = probe_client.get("/api/v1/probe/conflict")
    body = assert_envelope(response, 409, 40901)
    assert body["message"] == "only 2 left"
    assert response.headers["X-Extra"] == "1"


def test_request_id_is_echoed_when_sane_and_generated_otherwise(probe_client: FlaskClient) -> None:
    sane = "req-12345678.abc"
    assert (
        probe_client.get("/healthz", headers={"X-Request-ID": sane}).headers["X-Request-ID"] == sane
    )
    for hostile in ["<script>alert(1)</script>", "a" * 300, "short", "x\ty"]:
        echoed = probe_client.get("/healthz", headers={"X-Request-ID": hostile}).headers[
            "X-Request-ID"
        ]
        assert echoed != hostile
        assert re.fullmatch(r"[0-9a-f]{32}", echoed)
    generated = probe_client.get("/api/v1/nope").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


def test_error_codes_match_the_documented_table() -> None:
    """ErrorCode must be exactly the table of docs/api.md: nothing missing or extra."""
    rows = re.findall(r"^\| (\d+) \| (\d+)(?:/\d+)? \| (.+?) \|$", API_CONTRACT.read_text(), re.M)
    documented = {int(code): int(status) for code, status, _ in rows}
    assert documented == {code.value: code.http_status for code in ErrorCode}
