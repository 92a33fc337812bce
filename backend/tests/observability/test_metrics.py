"""Prometheus metrics: in the app, under gunicorn's multiprocess mode, and on production's port."""

from __future__ import annotations

import os
import signal
import string
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import port_for
import requests
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from minishop import create_app
from minishop.config import DEV_SECRETS, Settings
from minishop.extensions import db
from minishop.observability import metrics
from tests.conftest import gunicorn_server
from wechat_emulator.testing import EmulatorControl

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
LOGIN_ROUTE = "/api/v1/auth/login"


def samples(exposition: str) -> Samples:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def test_requests_logins_wechat_calls_and_queries_are_counted(
    client: FlaskClient,
    log_in: Callable[..., dict[str, Any]],
    emulator: EmulatorControl,
    settings: Settings,
) -> None:
    before = scrape(client)
    log_in()
    refused = emulator.new_login_code()
    emulator.faults("jscode2session", errcode=40029)
    assert client.post(LOGIN_ROUTE, json={"code": refused.code}).status_code == 400
    slow_app = create_app(settings.model_copy(update={"WECHAT_TIMEOUT_SECONDS": 0.3}))
    emulator.faults("jscode2session", delay_ms=1500)
    late = emulator.new_login_code()
    assert slow_app.test_client().post(LOGIN_ROUTE, json={"code": late.code}).status_code == 504
    client.get("/api/v1/products/999999")
    metrics.record_order_paid(16800)
    metrics.record_cache("product", hit=True)
    metrics.record_cache("product", hit=False)
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for status in ("200", "400", "504"):
        assert grew("http_requests_total", method="POST", route=LOGIN_ROUTE, status=status) == 1
    product = {"method": "GET", "route": "/api/v1/products/<int:product_id>"}
    assert grew("http_requests_total", **product, status="404") == 1
    assert grew("http_request_duration_seconds_count", **product) == 1
    assert grew("http_request_duration_seconds_bucket", **product, le="5.0") == 1
    assert value(after, "http_requests_in_flight") == 1  # the scrape itself
    assert grew("minishop_logins_total") == 1
    assert grew("minishop_orders_paid_total") == 1
    assert grew("minishop_orders_paid_amount_fen_total") == 16800
    assert grew("minishop_cache_hits_total", cache="product") >= 1
    assert grew("minishop_cache_misses_total", cache="product") >= 1
    for outcome in ("ok", "error", "unavailable"):
        assert grew("minishop_wechat_calls_total", api="jscode2session", outcome=outcome) == 1
    assert grew("minishop_wechat_call_duration_seconds_count", api="jscode2session") == 3
    assert grew("minishop_db_query_duration_seconds_count", operation="INSERT") >= 3
    assert grew("minishop_db_query_duration_seconds_count", operation="SELECT") >= 2
    this_process = {"pid": str(os.getpid()), "role": "worker"}
    assert value(after, "minishop_process_cpu_seconds_total", **this_process) > 0
    assert value(after, "minishop_process_resident_memory_bytes", **this_process) > 0


def test_the_pool_gauges_follow_connections_in_use(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"DB_POOL_SIZE": 1, "DB_MAX_OVERFLOW": 2}))

    def gauge(name: str) -> float | None:
        return REGISTRY.get_sample_value(f"minishop_db_pool_{name}_connections")

    with app.app_context():
        connections = [db.engine.connect() for _ in range(3)]
        for connection in connections:
            connection.execute(text("SELECT 1"))
        assert (gauge("checked_out"), gauge("overflow")) == (3, 2)
        connections.pop().close()
        assert (gauge("checked_out"), gauge("overflow")) == (2, 1)
        for connection in connections:
            connection.close()
        assert (gauge("checked_out"), gauge("overflow")) == (0, 0)
        db.engine.dispose()


def test_the_worker_memory_limit_is_the_setting(settings: Settings) -> None:
    """WorkerMemoryHigh divides each worker's RSS by this gauge: the configured limit wins."""
    app = create_app(settings.model_copy(update={"WORKER_MEMORY_LIMIT_BYTES": 300 * 2**20}))
    try:
        found = scrape(app.test_client())
    finally:
        metrics.PROCESSES.worker_memory_limit = settings.WORKER_MEMORY_LIMIT_BYTES
    assert value(found, "minishop_worker_memory_limit_bytes") == 300 * 2**20


def test_without_the_setting_the_container_limit_is_shared(tmp_path: Path) -> None:
    """cgroup v2 first, then v1; "max" and v1's near-2**63 both mean no limit, so no sample."""
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    assert metrics.cgroup_memory_limit([v2, v1]) is None  # not in a container
    v1.write_text("9223372036854771712\n")
    assert metrics.cgroup_memory_limit([v2, v1]) is None
    v1.write_text("1073741824\n")
    assert metrics.cgroup_memory_limit([v2, v1]) == 2**30
    v2.write_text("max\n")
    assert metrics.cgroup_memory_limit([v2, v1]) is None
    v2.write_text("536870912\n")
    assert metrics.cgroup_memory_limit([v2, v1]) == 2**29
    assert metrics.worker_memory_limit(123, processes=5) == 123
    expected = None if metrics.cgroup_memory_limit() is None else metrics.cgroup_memory_limit() // 5
    assert metrics.worker_memory_limit(None, processes=5) == expected


def test_metrics_off_means_no_endpoint(settings: Settings) -> None:
    client = create_app(settings.model_copy(update={"METRICS_ENABLED": False})).test_client()
    assert client.get("/metrics").status_code == 404


def test_a_thousand_unknown_urls_add_no_series(live_server: str) -> None:
    """Labels are bounded: unknown paths and odd methods all land in the same few series."""

    def series() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
        return set(samples(requests.get(f"{live_server}/metrics", timeout=10).text))

    def probe(n: int) -> int:
        alphabet = string.ascii_lowercase + string.digits
        path = "/".join(alphabet[(n * 7 + i) % len(alphabet)] * (1 + i) for i in range(3))
        method = "BREW" if n % 50 == 0 else "GET"
        return requests.request(method, f"{live_server}/x{n}/{path}?id={n}", timeout=10).status_code

    wait_for_processes(f"{live_server}/metrics", lambda found: len(found) == 1 + 4)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(probe, range(8)))  # the unknown-URL series exists
        series()  # and /metrics has been answered once, so it has its own series
        baseline = series()
        statuses = list(pool.map(probe, range(8, 1008)))
    assert set(statuses) <= {404, 405}
    after = series()
    assert after == baseline, sorted(after ^ baseline)[:10]
    routes = {dict(labels).get("route") for name, labels in after if name == "http_requests_total"}
    assert not any(route and route.startswith("/x") for route in routes)


def wait_for_processes(metrics_url: str, ready: Callable[[dict[str, str]], bool]) -> dict[str, str]:
    """pid → role of the server's processes, once `ready` accepts them."""
    deadline = time.monotonic() + 20
    while True:
        found = samples(requests.get(metrics_url, timeout=5).text)
        processes = {
            dict(labels)["pid"]: dict(labels)["role"]
            for name, labels in found
            if name == "minishop_process_resident_memory_bytes"
        }
        if ready(processes):
            return processes
        assert time.monotonic() < deadline, processes
        time.sleep(0.2)


def _stale_sample(directory: Path) -> None:
    """What a previous run left: a worker's file claiming a million /healthz requests."""
    directory.mkdir()
    stale = MmapedDict(str(directory / "counter_424242.db"))
    key = mmap_key(
        "http_requests_total",
        "http_requests_total",
        ["method", "route", "status"],
        ["GET", "/healthz", "200"],
        "HTTP requests answered",
    )
    stale.write_value(key, 1_000_000.0, 0.0)
    stale.close()


def test_production_serves_metrics_on_its_own_port_only(settings: Settings, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    _stale_sample(metrics_dir)
    metrics_port = port_for.select_random()
    env = {name: "p" * 40 for name in DEV_SECRETS} | {
        "WECHATPAY_APIV3_KEY": "p" * 32,
        "WECHATPAY_NOTIFY_URL": "https://shop.example.com/api/v1/payments/wechat/notify",
        "APP_ENV": "production",
        "METRICS_PORT": str(metrics_port),
        "METRICS_HOST": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "TRACING_BACKEND": "none",
        "WEB_CONCURRENCY": "2",
        "WORKER_MEMORY_LIMIT_BYTES": str(256 * 2**20),
    }
    with gunicorn_server(settings, tmp_path, **env) as base_url:
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        public = requests.get(f"{base_url}/metrics", timeout=5)
        assert public.status_code == 404
        assert public.json()["code"] == 40400
        assert "Server" not in public.headers
        for _ in range(5):
            requests.get(f"{base_url}/healthz", timeout=5)
        healthz = {"method": "GET", "route": "/healthz", "status": "200"}
        unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
        found = samples(requests.get(metrics_url, timeout=5).text)
        # the stale file was cleared at start: only this run's requests (and the wait for
        # the server to come up) are counted
        assert 5 <= value(found, "http_requests_total", **healthz) < 100
        assert value(found, "http_requests_total", **unmatched) == 1
        processes = wait_for_processes(metrics_url, lambda found: len(found) == 3)
        assert sorted(processes.values()) == ["master", "worker", "worker"]
        # served by the master, which read the setting too
        assert value(found, "minishop_worker_memory_limit_bytes") == 256 * 2**20

        # A worker dies: its live gauges go, its counts stay, the new worker is reported.
        dead = next(pid for pid, role in processes.items() if role == "worker")
        os.kill(int(dead), signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (metrics_dir / f"gauge_livesum_{dead}.db").exists():
            assert time.monotonic() < deadline, "child_exit did not mark the worker dead"
            time.sleep(0.1)
        assert (metrics_dir / f"counter_{dead}.db").exists()
        wait_for_processes(metrics_url, lambda found: len(found) == 3 and dead not in found)
        found = samples(requests.get(metrics_url, timeout=5).text)
        assert value(found, "http_requests_total", **healthz) >= 5
    assert not metrics_dir.joinpath("counter_424242.db").exists()
