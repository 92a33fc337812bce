"""Trace collection as shipped in observability/: the real Collector and Jaeger, our configs.

The binaries come from `pipelines/build-jaeger.sh` (Jaeger v2 and otelcol-minishop, a Collector
holding exactly our config's components); `make test` runs it first. The configs run unchanged
except for their listen addresses, moved to free loopback ports with the Collector's `--set`
(and JAEGER_OTLP_ENDPOINT, the collector config's own knob for where Jaeger is).

The journey is a shopper's first one: log in (a WeChat call, SQL, Redis), then a signed order.
Both requests carry one caller's `traceparent`, so Jaeger must return them as one trace.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from minishop.config import Settings
from minishop.models import Product
from tests.ci import unavailable
from tests.conftest import gunicorn_server
from tests.observability.test_tracing import LOGIN_ROUTE, ORDERS_ROUTE, shop
from tests.platform.processes import free_port, serving
from wechat_emulator.testing import EmulatorControl

REPO = Path(__file__).resolve().parents[3]
COLLECTOR_CONFIG = REPO / "observability" / "otel-collector" / "config.yaml"
JAEGER_CONFIG = REPO / "observability" / "jaeger" / "config.yaml"
# Where pipelines/build-jaeger.sh puts them (the same default and variable).
TOOLS_DIR = Path(
    os.environ.get("TRACE_TOOLS_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minishop/trace-tools"
)
T = TypeVar("T")


def tool(name: str) -> Path:
    """A binary of pipelines/build-jaeger.sh: a failure under CI, a skip elsewhere, if absent."""
    path = TOOLS_DIR / "bin" / name
    if not os.access(path, os.X_OK):
        unavailable(f"missing {path}: build it with pipelines/build-jaeger.sh (make test does)")
    return path


def wait_for(found: Callable[[], T | None], what: str, timeout: float = 40.0) -> T:
    """Poll `found` until it returns something; spans cross two batchers (~5 s) on the way."""
    deadline = time.monotonic() + timeout
    while True:
        result = found()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def free_address() -> str:
    return f"127.0.0.1:{free_port()}"


@dataclass(frozen=True)
class Jaeger:
    otlp_grpc: str
    otlp_http: str
    query: str

    def traces(self, service: str) -> list[dict[str, Any]]:
        """Jaeger's search API: the service's traces of the last hour."""
        response = requests.get(
            f"http://{self.query}/api/traces",
            params={"service": service, "lookback": "1h", "limit": "100"},
            timeout=10,
        )
        if response.status_code != 200:  # 404 (no such service) until its first span is stored
            return []
        data: list[dict[str, Any]] = response.json()["data"]
        return data


@pytest.fixture()
def jaeger(tmp_path: Path) -> Iterator[Jaeger]:
    """Jaeger v2 on observability/jaeger/config.yaml, its listeners on free loopback ports."""
    binary = tool("jaeger")
    found = Jaeger(otlp_grpc=free_address(), otlp_http=free_address(), query=free_address())
    health = free_address()
    overrides = {
        "receivers::otlp::protocols::grpc::endpoint": found.otlp_grpc,
        "receivers::otlp::protocols::http::endpoint": found.otlp_http,
        "extensions::jaeger_query::http::endpoint": found.query,
        "extensions::jaeger_query::grpc::endpoint": free_address(),
        "extensions::healthcheckv2::http::endpoint": health,
        "service::telemetry::metrics::level": "none",
    }
    command = [str(binary), f"--config={JAEGER_CONFIG}"]
    command += [f"--set={key}={value}" for key, value in overrides.items()]
    with serving(command, tmp_path / "jaeger.log", f"http://{health}/status"):
        yield found


@contextmanager
def collector(tmp_path: Path, jaeger: Jaeger) -> Iterator[str]:
    """The Collector on observability/otel-collector/config.yaml; yields its OTLP/HTTP URL."""
    binary = tool("otelcol-minishop")
    grpc, http, health = free_address(), free_address(), free_address()
    overrides = {
        "receivers::otlp::protocols::grpc::endpoint": grpc,
        "receivers::otlp::protocols::http::endpoint": http,
        "extensions::health_check::endpoint": health,
        "service::telemetry::metrics::level": "none",
    }
    command = [str(binary), f"--config={COLLECTOR_CONFIG}"]
    command += [f"--set={key}={value}" for key, value in overrides.items()]
    env = {"JAEGER_OTLP_ENDPOINT": jaeger.otlp_grpc}
    with serving(command, tmp_path / "otelcol.log", f"http://{health}/", env=env):
        yield f"http://{http}"


def validate(binary: Path, config: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    command = [str(binary), "validate", f"--config={config}", *overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_collector_config_validates() -> None:
    checked = validate(tool("otelcol-minishop"), COLLECTOR_CONFIG)
    assert checked.returncode == 0, checked.stderr
    # The check can fail: a setting the otlp exporter does not have is refused.
    broken = validate(
        tool("otelcol-minishop"), COLLECTOR_CONFIG, "--set=exporters::otlp/jaeger::compresion=gzip"
    )
    assert broken.returncode != 0
    assert "compresion" in broken.stderr


def test_the_jaeger_config_validates() -> None:
    checked = validate(tool("jaeger"), JAEGER_CONFIG)
    assert checked.returncode == 0, checked.stderr
    broken = validate(
        tool("jaeger"),
        JAEGER_CONFIG,
        "--set=extensions::jaeger_query::enable_tracin=false",
    )
    assert broken.returncode != 0
    assert "enable_tracin" in broken.stderr


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


def parent_id(span: dict[str, Any]) -> str | None:
    parents = [ref["spanID"] for ref in span["references"] if ref["refType"] == "CHILD_OF"]
    return parents[0] if parents else None


@contextmanager
def exporter_endpoint(route: str, tmp_path: Path, jaeger: Jaeger) -> Iterator[str]:
    """The OTLP/HTTP endpoint the app exports to: Jaeger's own, or the Collector's."""
    if route == "direct":
        yield f"http://{jaeger.otlp_http}"
    else:
        with collector(tmp_path, jaeger) as endpoint:
            yield endpoint


@pytest.mark.parametrize("route", ["direct", "through the collector"])
def test_a_login_and_an_order_are_one_trace_in_jaeger(
    route: str,
    jaeger: Jaeger,
    settings: Settings,
    tmp_path: Path,
    emulator: EmulatorControl,
    stocked_product: Product,
) -> None:
    """App → (Collector →) Jaeger over OTLP; Jaeger's query API returns the journey's trace."""
    service = f"minishop-{secrets.token_hex(4)}"  # this run's traces alone
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    with exporter_endpoint(route, tmp_path, jaeger) as endpoint:
        with gunicorn_server(
            settings,
            tmp_path,
            TRACING_BACKEND="otel",
            SERVICE_NAME=service,
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_TRACES_SAMPLER="always_on",
            OTEL_BSP_SCHEDULE_DELAY="200",
            WEB_CONCURRENCY="2",
        ) as base_url:
            context = {"traceparent": f"00-{trace_id}-{caller_span}-01"}
            journey = shop(base_url, emulator, stocked_product, context)
            assert journey.order.headers["X-Trace-Id"] == trace_id

        def complete() -> dict[str, Any] | None:
            """The journey's trace once both requests' spans, down to the order's SQL, arrived."""
            for trace in jaeger.traces(service):
                spans = trace["spans"]
                names = {span["operationName"] for span in spans}
                statements = " ".join(str(tags(span).get("db.statement")) for span in spans)
                done = {f"POST {LOGIN_ROUTE}", f"POST {ORDERS_ROUTE}"} <= names
                if trace["traceID"] == trace_id and done and "INSERT INTO orders" in statements:
                    return trace
            return None

        trace = wait_for(complete, f"trace {trace_id} in Jaeger")
    # One trace: no other trace of this service holds either request (its others are the
    # readiness polls of /healthz).
    journey_names = {f"POST {LOGIN_ROUTE}", f"POST {ORDERS_ROUTE}"}
    holding = [
        t["traceID"]
        for t in jaeger.traces(service)
        if journey_names & {span["operationName"] for span in t["spans"]}
    ]
    assert holding == [trace_id]
    spans = trace["spans"]
    assert {trace["processes"][span["processID"]]["serviceName"] for span in spans} == {service}

    def scope(span: dict[str, Any]) -> str:
        return str(tags(span).get("otel.scope.name"))

    servers = {
        span["operationName"]: span for span in spans if tags(span).get("span.kind") == "server"
    }
    login, order = servers[f"POST {LOGIN_ROUTE}"], servers[f"POST {ORDERS_ROUTE}"]
    assert {parent_id(login), parent_id(order)} == {caller_span}
    assert scope(login) == scope(order) == "minishop"
    assert tags(login)["http.response.status_code"] == 200
    assert tags(order)["http.response.status_code"] == 201

    def under(parent: dict[str, Any], library: str) -> list[dict[str, Any]]:
        """`parent`'s direct children recorded by the instrumentation `library`."""
        return [s for s in spans if parent_id(s) == parent["spanID"] and library in scope(s)]

    # The WeChat call happens at login: requests' CLIENT span, its query values redacted.
    (wechat,) = under(login, "instrumentation.requests")
    assert tags(wechat)["span.kind"] == "client"
    assert "/sns/jscode2session" in tags(wechat)["http.url"]
    assert "secret=REDACTED" in tags(wechat)["http.url"]
    login_sql = [tags(s).get("db.statement", "") for s in under(login, "sqlalchemy")]
    assert any("INSERT INTO auth_sessions" in statement for statement in login_sql)
    order_sql = [tags(s).get("db.statement", "") for s in under(order, "sqlalchemy")]
    assert any("INSERT INTO orders" in statement for statement in order_sql)
    # The signed order's nonce is claimed in Redis (SET NX) while it is served.
    redis = [tags(s) for s in under(order, "instrumentation.redis")]
    assert any(span.get("db.system") == "redis" for span in redis), [scope(s) for s in spans]
