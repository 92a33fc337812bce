"""Traces, correlated: spans exported to loopback collectors, the headers WeChat received, logs.

The journey is what a shopper's mini-program does first: log in (a WeChat call and SQL), then
place an order (SQL, Redis). The client sends one trace context with both requests, so both
land in one trace: HTTP → SQL, HTTP → WeChat. The same journey runs under OpenTelemetry and
under SkyWalking, each under real gunicorn workers reporting to a receiver on loopback.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from flask.testing import FlaskClient

from minishop.config import Settings
from minishop.models import Product
from minishop.observability.tracing import redact_query, redacted_query
from tests.conftest import gunicorn_server
from tests.observability.logcheck import assert_absent, parse_lines
from tests.observability.receivers import ExportedSpan, OtlpReceiver, SkyWalkingReceiver
from tests.signing import json_bytes, signed_headers
from wechat_emulator.testing import EmulatorControl

LOGIN_ROUTE = "/api/v1/auth/login"
ORDERS_ROUTE = "/api/v1/orders"


@dataclass(frozen=True)
class Journey:
    login: requests.Response
    order: requests.Response
    secrets: list[str]


def shop(
    base_url: str, emulator: EmulatorControl, product: Product, context: dict[str, str]
) -> Journey:
    """Log in, then order one `product`, sending the trace `context` headers with both."""
    login_code = emulator.new_login_code()
    login = requests.post(
        f"{base_url}{LOGIN_ROUTE}", json={"code": login_code.code}, headers=context, timeout=10
    )
    assert login.status_code == 200, login.text
    data = login.json()["data"]
    body = json_bytes({"items": [{"product_id": product.id, "quantity": 1}]})
    headers = context | signed_headers(data, "POST", ORDERS_ROUTE, body)
    headers |= {"Idempotency-Key": secrets.token_hex(8), "Content-Type": "application/json"}
    order = requests.post(f"{base_url}{ORDERS_ROUTE}", data=body, headers=headers, timeout=10)
    assert order.status_code == 201, order.text
    session_key = emulator.user(login_code.openid)["session_key"]
    used = [data["access_token"], data["refresh_token"], data["sign_key"], session_key]
    return Journey(login, order, [*used, login_code.code, headers["X-Signature"]])


def request_lines(log_path: Path, response: requests.Response) -> list[dict[str, Any]]:
    """The log lines written while serving `response` (every line of the file is checked)."""
    request_id = response.headers["X-Request-ID"]
    lines = [line for line in parse_lines(log_path.read_text()) if line["request_id"] == request_id]
    assert lines, f"no log line for {request_id}"
    return lines


def test_otel_one_trace_links_http_sql_and_wechat_to_the_logs(
    settings: Settings, tmp_path: Path, emulator: EmulatorControl, stocked_product: Product
) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    unsampled_trace = secrets.token_hex(16)
    with (
        OtlpReceiver() as receiver,
        gunicorn_server(
            settings,
            tmp_path,
            TRACING_BACKEND="otel",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_HEADERS="x-collector-tenant=minishop",
            OTEL_TRACES_SAMPLER="parentbased_traceidratio",
            OTEL_TRACES_SAMPLER_ARG="1.0",
            OTEL_BSP_SCHEDULE_DELAY="100",
            WEB_CONCURRENCY="2",
        ) as base_url,
    ):
        context = {"traceparent": f"00-{trace_id}-{caller_span}-01", "baggage": "tenant=demo"}
        journey = shop(base_url, emulator, stocked_product, context)
        # The caller decided not to sample: nothing is exported, the id is still echoed.
        unsampled = requests.get(
            f"{base_url}/healthz",
            headers={"traceparent": f"00-{unsampled_trace}-{caller_span}-00"},
            timeout=5,
        )
        # WeChat fails twice (a call and its retry): the 502's span is marked an error.
        emulator.faults("jscode2session", errcode=-1, times=2)
        failed_trace = secrets.token_hex(16)
        failed = requests.post(
            f"{base_url}{LOGIN_ROUTE}",
            json={"code": emulator.new_login_code().code},
            headers={"traceparent": f"00-{failed_trace}-{caller_span}-01"},
            timeout=10,
        )
        assert failed.status_code == 502
        # Product reads, the later ones answered by the catalog shortcut ahead of Flask: the
        # same SERVER span as Flask's, child of the caller's span, its id in the access line.
        read_traces = [secrets.token_hex(16) for _ in range(6)]
        reads = [
            requests.get(
                f"{base_url}/api/v1/products/{stocked_product.id}",
                headers={"traceparent": f"00-{read_trace}-{caller_span}-01"},
                timeout=5,
            )
            for read_trace in read_traces
        ]

        def complete() -> list[ExportedSpan] | None:
            spans = [span for span in receiver.spans if span.trace_id == trace_id]
            servers = [span for span in spans if span.kind == OtlpReceiver.SERVER]
            orders = [s for s in spans if "INSERT INTO orders" in str(s.attributes)]
            return spans if len(servers) == 2 and orders else None

        spans = receiver.wait_for(complete)
        (failed_span,) = receiver.wait_for(
            lambda: [s for s in receiver.trace(failed_trace) if s.kind == OtlpReceiver.SERVER]
        )
        read_spans = [
            receiver.wait_for(
                lambda read_trace=read_trace: [
                    s for s in receiver.trace(read_trace) if s.kind == OtlpReceiver.SERVER
                ]
            )
            for read_trace in read_traces
        ]
    product_route = "/api/v1/products/<int:product_id>"
    for read, (read_span,) in zip(reads, read_spans, strict=True):
        assert read.status_code == 200
        assert read.headers["X-Trace-Id"] == read_span.trace_id
        assert read_span.name == f"GET {product_route}"
        assert read_span.parent_span_id == caller_span
        assert read_span.attributes["http.route"] == product_route
        assert read_span.attributes["http.response.status_code"] == 200
        assert read_span.attributes["url.path"] == f"/api/v1/products/{stocked_product.id}"
        (read_line,) = request_lines(tmp_path / "gunicorn.log", read)
        assert read_line["span_id"] == read_span.span_id
        assert read_line["route"] == product_route
    assert failed_span.status == OtlpReceiver.STATUS_ERROR
    assert failed_span.attributes["http.response.status_code"] == 502
    assert journey.login.headers["X-Trace-Id"] == journey.order.headers["X-Trace-Id"] == trace_id
    assert unsampled.headers["X-Trace-Id"] == unsampled_trace
    assert not receiver.trace(unsampled_trace)
    assert receiver.request_headers[0]["x-collector-tenant"] == "minishop"

    by_name = {span.name: span for span in spans if span.kind == OtlpReceiver.SERVER}
    login_span, order_span = by_name[f"POST {LOGIN_ROUTE}"], by_name[f"POST {ORDERS_ROUTE}"]
    assert {login_span.parent_span_id, order_span.parent_span_id} == {caller_span}
    assert login_span.service == "minishop"
    assert login_span.status == OtlpReceiver.STATUS_UNSET
    assert login_span.attributes["http.route"] == LOGIN_ROUTE
    assert login_span.attributes["http.response.status_code"] == 200

    def children(parent: ExportedSpan) -> list[ExportedSpan]:
        return [span for span in spans if span.parent_span_id == parent.span_id]

    wechat = [
        s
        for s in children(login_span)
        if s.kind == OtlpReceiver.CLIENT and "http.url" in s.attributes
    ]
    assert len(wechat) == 1
    assert "/sns/jscode2session" in wechat[0].attributes["http.url"]
    assert "secret=REDACTED" in wechat[0].attributes["http.url"]
    login_sql = [s for s in children(login_span) if s.attributes.get("db.system") == "mysql"]
    assert any(
        "INSERT INTO auth_sessions" in s.attributes.get("db.statement", "") for s in login_sql
    )
    order_sql = [s for s in children(order_span) if s.attributes.get("db.system") == "mysql"]
    assert any("INSERT INTO orders" in s.attributes.get("db.statement", "") for s in order_sql)
    assert any(s.attributes.get("db.system") == "redis" for s in spans)

    # WeChat saw the trace context: this trace, the client span as parent, and the baggage.
    (call,) = [
        call
        for call in emulator.calls("jscode2session")
        if trace_id in call["headers"].get("traceparent", "")
    ]
    assert call["headers"]["traceparent"] == f"00-{trace_id}-{wechat[0].span_id}-01"
    assert "tenant=demo" in call["headers"]["baggage"]

    # The logs of both requests carry the same ids, down to the server span.
    log_path = tmp_path / "gunicorn.log"
    for response, server_span in ((journey.login, login_span), (journey.order, order_span)):
        lines = request_lines(log_path, response)
        assert {line["trace_id"] for line in lines} == {trace_id}
        (access,) = [line for line in lines if line["logger"] == "minishop.access"]
        assert access["span_id"] == server_span.span_id
    exported = "\n".join(str(span) for span in spans)
    assert_absent(log_path.read_text() + exported, [*journey.secrets, settings.WECHAT_SECRET])


def sw8(trace_id: str) -> str:
    """The header a SkyWalking-instrumented caller would send (its segment, span 0)."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    parts = [trace_id, "caller-segment", "mini-program", "instance", "/pages/shop", "127.0.0.1"]
    encoded = [b64(part) for part in parts]
    return "-".join(["1", *encoded[:2], "0", *encoded[2:]])


def test_skywalking_one_trace_links_http_sql_and_wechat_to_the_logs(
    settings: Settings, tmp_path: Path, emulator: EmulatorControl, stocked_product: Product
) -> None:
    trace_id = f"caller.{secrets.token_hex(8)}"
    with (
        SkyWalkingReceiver() as receiver,
        gunicorn_server(
            settings,
            tmp_path,
            TRACING_BACKEND="skywalking",
            SW_AGENT_COLLECTOR_BACKEND_SERVICES=receiver.address,
            WEB_CONCURRENCY="2",
        ) as base_url,
    ):
        journey = shop(base_url, emulator, stocked_product, {"sw8": sw8(trace_id)})
        segments = receiver.wait_for(lambda: len(receiver.trace(trace_id)) == 2 or None)
        segments = receiver.trace(trace_id)
    assert journey.login.headers["X-Trace-Id"] == journey.order.headers["X-Trace-Id"] == trace_id
    by_endpoint = {segment["spans"][-1]["operationName"]: segment for segment in segments}
    login_segment = by_endpoint[f"POST:{LOGIN_ROUTE}"]
    order_segment = by_endpoint[f"POST:{ORDERS_ROUTE}"]
    for segment in segments:
        entry = segment["spans"][-1]
        assert entry["spanType"] == "Entry"
        assert entry["refs"][0]["parentTraceSegmentId"] == "caller-segment"
        assert segment["service"] == "minishop"

    def exits(segment: dict[str, Any], layer: str) -> list[dict[str, Any]]:
        return [s for s in segment["spans"] if s["spanType"] == "Exit" and s["spanLayer"] == layer]

    (wechat,) = exits(login_segment, "Http")
    tags = {tag["key"]: tag["value"] for tag in wechat["tags"]}
    assert tags["http.url"].endswith("/sns/jscode2session")  # the query is not recorded
    assert wechat["parentSpanId"] == 0
    assert exits(login_segment, "Database")
    order_statements = [
        tag["value"] for span in exits(order_segment, "Database") for tag in span["tags"]
    ]
    assert any("INSERT INTO orders" in statement for statement in order_statements)

    (call,) = emulator.calls("jscode2session")
    carried = call["headers"]["sw8"].split("-")
    assert base64.b64decode(carried[1]).decode() == trace_id
    assert base64.b64decode(carried[2]).decode() == login_segment["traceSegmentId"]
    assert carried[3] == str(wechat["spanId"])

    log_path = tmp_path / "gunicorn.log"
    for response, segment in ((journey.login, login_segment), (journey.order, order_segment)):
        lines = request_lines(log_path, response)
        assert {line["trace_id"] for line in lines} == {trace_id}
        assert {line["span_id"].split(".")[0] for line in lines} == {segment["traceSegmentId"]}
    assert_absent(log_path.read_text() + str(segments), [*journey.secrets, settings.WECHAT_SECRET])


def test_without_a_backend_every_response_still_has_a_trace_id(client: FlaskClient) -> None:
    caller_trace = secrets.token_hex(16)
    responses = [
        client.get("/healthz"),
        client.get("/healthz"),
        client.get("/api/v1/nowhere"),
        client.delete("/healthz"),
        client.get("/api/v1/users/me"),
        client.get("/healthz", headers={"traceparent": f"00-{'0' * 32}-{'1' * 16}-01"}),
    ]
    ids = [response.headers["X-Trace-Id"] for response in responses]
    assert [response.status_code for response in responses] == [200, 200, 404, 405, 401, 200]
    assert all(len(trace_id) == 32 and int(trace_id, 16) for trace_id in ids)
    assert len(set(ids)) == len(ids)
    sent = client.get("/healthz", headers={"traceparent": f"00-{caller_trace}-{'1' * 16}-01"})
    assert sent.headers["X-Trace-Id"] == caller_trace


def test_recorded_urls_keep_query_names_but_not_values() -> None:
    url = "http://wx.example/sns/jscode2session?appid=wx1&secret=s3&js_code=c0de&grant_type="
    assert redact_query(url) == (
        "http://wx.example/sns/jscode2session"
        "?appid=REDACTED&secret=REDACTED&js_code=REDACTED&grant_type=REDACTED"
    )
    assert redact_query("http://wx.example/healthz") == "http://wx.example/healthz"
    assert redacted_query("expires=1&signature=ab%2Fc") == "expires=REDACTED&signature=REDACTED"
