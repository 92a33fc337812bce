"""JSON logs: real requests through the app, every captured line checked against docs/logging.md."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Response
from flask.testing import FlaskClient
from flask_openapi3 import APIBlueprint
from gunicorn.config import Config

from minishop import create_app
from minishop.config import Settings
from minishop.envelope import ok
from minishop.observability.log_context import bind_log_fields
from minishop.observability.logs import (
    BUSINESS_FIELDS,
    OPTIONAL_FIELDS,
    SCHEMA_FIELDS,
    GunicornLogger,
    scrub,
)
from tests.conftest import bearer, gunicorn_server
from tests.observability.logcheck import (
    access_lines,
    assert_absent,
    documented_fields,
    parse_lines,
)
from tests.signing import send_signed
from wechat_emulator.testing import EmulatorControl

Capture = Callable[[], list[dict[str, Any]]]
log = logging.getLogger("tests.observability")


@pytest.fixture()
def captured(capsys: pytest.CaptureFixture[str]) -> Iterator[Capture]:
    """Everything written to stdout since the fixture started, as checked log lines."""
    capsys.readouterr()
    seen: list[str] = []

    def read() -> list[dict[str, Any]]:
        seen.append(capsys.readouterr().out)
        return parse_lines("".join(seen))

    yield read


def test_the_documented_schema_is_the_one_the_code_writes() -> None:
    fields = documented_fields()
    assert [name for name, (_, _, always) in fields.items() if always] == list(SCHEMA_FIELDS)
    assert [name for name, (_, _, always) in fields.items() if not always] == list(OPTIONAL_FIELDS)


def test_a_session_of_real_requests_logs_one_schema_and_no_secret(
    client: FlaskClient,
    log_in: Callable[..., dict[str, Any]],
    emulator: EmulatorControl,
    settings: Settings,
    captured: Capture,
) -> None:
    data = log_in()
    phone_code = emulator.new_phone_code("13812341234")
    responses = [
        client.get("/api/v1/users/me", headers=bearer(data)),
        send_signed(client, data, "POST", "/api/v1/users/me/phone", {"code": phone_code}),
        client.post("/api/v1/auth/refresh", json={"refresh_token": data["refresh_token"]}),
        client.get("/api/v1/no/such/thing", headers={"X-Request-ID": "caller-chosen-id-1"}),
        client.get("/api/v1/users/me", headers={"Authorization": "Bearer eyJhbGciOi.forged.x"}),
        client.post("/api/v1/auth/login", data="{not json", content_type="application/json"),
    ]
    refreshed = responses[2].get_json()["data"]
    lines = captured()

    # One access line per request, in order, each telling the route template and the outcome.
    access = access_lines(lines)
    assert [line["status"] for line in access[1:]] == [r.status_code for r in responses]
    for line, response in zip(access[1:], responses, strict=True):
        assert line["request_id"] == response.headers["X-Request-ID"]
        assert line["trace_id"] == response.headers["X-Trace-Id"]
        assert line["duration_ms"] > 0
        assert line["client_ip"] == "127.0.0.1"
    assert access[0]["route"] == "/api/v1/auth/login"
    assert access[0]["user_id"] == data["user"]["id"]  # bound by the login itself
    assert access[1]["route"] == "/api/v1/users/me"
    assert access[1]["user_id"] == data["user"]["id"]
    assert access[4]["route"] is None
    assert access[4]["message"] == "GET /api/v1/no/such/thing 404"
    assert access[4]["request_id"] == "caller-chosen-id-1"
    assert access[5]["user_id"] is None

    session_key = emulator.user(data["openid"])["session_key"]
    recorded = emulator.calls()
    login_code = next(c["query"]["js_code"] for c in recorded if c["api"] == "jscode2session")
    text = "\n".join(map(str, lines))
    assert_absent(
        text,
        [
            data["access_token"],
            data["refresh_token"],
            data["sign_key"],
            refreshed["access_token"],
            refreshed["refresh_token"],
            session_key,
            settings.WECHAT_SECRET,
            login_code,
            phone_code,
            "13812341234",
            responses[1].request.headers["X-Signature"],
        ],
    )


probe = APIBlueprint("log_probe", __name__, url_prefix="/api/v1/log-probe")


@probe.get("/order")
def order_probe() -> Response:
    bind_log_fields(order_no="20261128000000000001", order_status="pending_payment")
    bind_log_fields(payment_status="notpay")
    bind_log_fields(
        out_trade_no="20261128000000000001",
        out_refund_no="20261128000000000001R1",
        refund_status="PROCESSING",
        notification_id="4f7c3a51-0d1e-4b8e-9d55-2f0c8e1f6a10",
        event_type="REFUND.SUCCESS",
    )
    log.warning("order looked at")
    return ok({"seen": True})


@probe.get("/boom")
def boom_probe() -> Response:
    raise RuntimeError("failed with Bearer abc.def.ghi and sign_key=c2VjcmV0 for 13912345678")


@pytest.fixture(scope="module")
def probe_client(settings: Settings) -> FlaskClient:
    app = create_app(settings)
    app.register_api(probe)
    return app.test_client()


def test_business_fields_reach_every_later_line_of_their_request_only(
    probe_client: FlaskClient, captured: Capture
) -> None:
    first = probe_client.get("/api/v1/log-probe/order")
    second = probe_client.get("/healthz")
    app_line, access_line, next_access = captured()
    expected = {
        "order_no": "20261128000000000001",
        "order_status": "pending_payment",
        "payment_status": "notpay",
        "out_trade_no": "20261128000000000001",
        "out_refund_no": "20261128000000000001R1",
        "refund_status": "PROCESSING",
        "notification_id": "4f7c3a51-0d1e-4b8e-9d55-2f0c8e1f6a10",
        "event_type": "REFUND.SUCCESS",
    }
    for line in (app_line, access_line):
        assert {name: line[name] for name in BUSINESS_FIELDS} == expected
        assert line["request_id"] == first.headers["X-Request-ID"]
        assert line["trace_id"] == first.headers["X-Trace-Id"]
        assert line["route"] == "/api/v1/log-probe/order"
    assert app_line["logger"] == "tests.observability"
    assert app_line["span_id"] == access_line["span_id"]
    assert next_access["request_id"] == second.headers["X-Request-ID"]
    assert not set(BUSINESS_FIELDS) & set(next_access)


def test_an_unexpected_error_is_logged_with_its_request_and_scrubbed(
    probe_client: FlaskClient, captured: Capture
) -> None:
    response = probe_client.get("/api/v1/log-probe/boom")
    assert response.status_code == 500
    error_line, access_line = captured()
    assert error_line["level"] == "ERROR"
    assert error_line["request_id"] == response.headers["X-Request-ID"]
    assert error_line["trace_id"] == response.headers["X-Trace-Id"]
    assert "RuntimeError" in error_line["exception"]
    assert "Traceback" in error_line["exception"]
    for secret in ("abc.def.ghi", "c2VjcmV0", "13912345678"):
        assert secret not in error_line["exception"]
    assert "139****5678" in error_line["exception"]
    assert access_line["status"] == 500


def test_outside_a_request_fields_bind_to_the_context(captured: Capture) -> None:
    def job() -> None:
        bind_log_fields(order_no="20261128000000000002", order_status="cancelled")
        log.info("expired")
        bind_log_fields(order_no=None, order_status=None)
        log.info("batch done")

    contextvars.copy_context().run(job)
    log.info("elsewhere")
    expired, done, elsewhere = captured()
    assert expired["order_no"] == "20261128000000000002"
    assert expired["order_status"] == "cancelled"
    assert expired["request_id"] is None
    assert expired["trace_id"] is None
    assert "order_no" not in done
    assert "order_no" not in elsewhere


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("Authorization: Bearer abc.DEF-123", "Authorization: Bearer [REDACTED]"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.sig_n-1 used", "token [REDACTED] used"),
        (
            "GET /sns/jscode2session?appid=wx1&secret=s3cr3t&js_code=0a1",
            "appid=wx1&secret=[REDACTED]",
        ),
        (
            '{"session_key": "tiihtNczf5v6AKRyjwEUhQ==", "openid": "o1"}',
            '"session_key": "[REDACTED]"',
        ),
        ("sign_key=AAAA/BBB+CCC= signature: 0f0f0f", "sign_key=[REDACTED] signature: [REDACTED]"),
        ("api_v3_key=abcd private_key='x'", "api_v3_key=[REDACTED] private_key='[REDACTED]'"),
        ("call +86 13800138000 or 15912345678.", "call +86 138****8000 or 159****5678."),
        ("order 202611281234567890123 costs 16800 fen", "order 202611281234567890123 costs 16800"),
    ],
)
def test_scrub_removes_secrets_and_masks_phones(text: str, scrubbed: str) -> None:
    assert scrubbed in scrub(text)


def test_gunicorn_builds_no_access_line_of_its_own() -> None:
    """Even with an access log configured, gunicorn's logger builds no line (the app writes it);
    gunicorn's own would read the response's status from these arguments and fail."""
    config = Config()
    config.set("accesslog", "-")
    logger = GunicornLogger(config)
    try:
        assert logger.access_log_enabled is False
        logger.access(None, None, {}, None)
    finally:
        for handler in list(logger.access_log.handlers):
            logger.access_log.removeHandler(handler)


def test_gunicorn_workers_write_one_access_line_per_request_in_the_schema(
    settings: Settings, tmp_path: Path
) -> None:
    with gunicorn_server(settings, tmp_path, WEB_CONCURRENCY="2", LOG_LEVEL="INFO") as base_url:
        for _ in range(3):
            assert requests.get(f"{base_url}/api/v1/categories", timeout=10).status_code == 200
    lines = parse_lines((tmp_path / "gunicorn.log").read_text())
    requests_logged = [
        line for line in access_lines(lines) if line["route"] == "/api/v1/categories"
    ]
    assert [line["status"] for line in requests_logged] == [200] * 3
    assert all(len(line["request_id"]) == 32 for line in requests_logged)
    assert not [line for line in lines if line["logger"].startswith("gunicorn.access")]
