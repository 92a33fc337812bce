"""Prometheus metrics. Their names and labels are a contract with the dashboards and alerts.

Under gunicorn every worker writes its samples to files in PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode, chosen at import time from that variable, which
gunicorn.conf.py sets before anything imports this module) and a scrape merges them. The
exposition is served by the public app at /metrics, or, when METRICS_PORT is set (production),
only on that port, from gunicorn's master.

Labels are bounded: routes are URL rules (`<unmatched>` for any unknown URL), methods outside the
standard set become OTHER, cache names and WeChat api names are constants in the code.

What the business code calls (see docs/logging.md for the full list):

- `LOGINS.inc()`; `ORDERS_CREATED.inc()`, `ORDERS_CANCELLED.inc()`, `ORDERS_EXPIRED.inc(n)`;
  `record_order_paid(amount_fen)`; `ORDERS_COMPLETED.labels(by).inc(n)` (by: buyer | auto)
- `record_cache(cache, hit)` on every lookup, `CACHE_FALLBACKS.labels(cache).inc()` when Redis
  is down and the database answered instead
- `RATE_LIMITED.labels(route).inc()`, `BAD_SIGNATURES.labels(reason).inc()`
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from flask import Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from minishop.errors import AppError, ErrorCode

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# API-sized: 5 ms to 5 s.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
WECHAT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
SQL_OPERATIONS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
# The container's memory limit: cgroup v2, then v1 (which writes "no limit" as ~2**63).
CGROUP_MEMORY_LIMIT_FILES = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)
CGROUP_UNLIMITED = 1 << 62

# The *_created series would double the exposition under `make run`; multiprocess mode has none.
disable_created_metrics()  # type: ignore[no-untyped-call]

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "http_requests_in_flight", "HTTP requests being answered now", multiprocess_mode="livesum"
)
DB_POOL_CHECKED_OUT = Gauge(
    "minishop_db_pool_checked_out_connections",
    "Database connections in use",
    multiprocess_mode="livesum",
)
DB_POOL_OVERFLOW = Gauge(
    "minishop_db_pool_overflow_connections",
    "Database connections open beyond the pool size",
    multiprocess_mode="livesum",
)
DB_QUERY_DURATION = Histogram(
    "minishop_db_query_duration_seconds",
    "Time the database took for one statement",
    ["operation"],
    buckets=DB_BUCKETS,
)
CACHE_HITS = Counter("minishop_cache_hits_total", "Cache lookups answered by the cache", ["cache"])
CACHE_MISSES = Counter(
    "minishop_cache_misses_total", "Cache lookups that went on to the database", ["cache"]
)
CACHE_FALLBACKS = Counter(
    "minishop_cache_fallbacks_total",
    "Lookups answered by the database because Redis was unavailable",
    ["cache"],
)
WECHAT_CALLS = Counter(
    "minishop_wechat_calls_total",
    "Calls to WeChat's API by outcome: ok, error (an errcode) or unavailable (timeout)",
    ["api", "outcome"],
)
WECHAT_DURATION = Histogram(
    "minishop_wechat_call_duration_seconds",
    "Time of one WeChat call, its retry included",
    ["api"],
    buckets=WECHAT_BUCKETS,
)
RATE_LIMITED = Counter(
    "minishop_rate_limited_total", "Requests refused with 42900 by our rate limits", ["route"]
)
BAD_SIGNATURES = Counter(
    "minishop_bad_signatures_total",
    "Requests refused with 40102: missing, stale, replayed or mismatch",
    ["reason"],
)
LOGINS = Counter("minishop_logins_total", "Successful logins")
ORDERS_CREATED = Counter("minishop_orders_created_total", "Orders placed")
ORDERS_OUT_OF_STOCK = Counter(
    "minishop_orders_out_of_stock_total", "Orders refused because a product had too little stock"
)
ORDERS_CANCELLED = Counter("minishop_orders_cancelled_total", "Orders cancelled by their buyer")
ORDERS_EXPIRED = Counter("minishop_orders_expired_total", "Unpaid orders cancelled on expiry")
ORDERS_COMPLETED = Counter(
    "minishop_orders_completed_total",
    "Shipped orders completed: confirmed by their buyer, or automatically after some days",
    ["by"],
)
ORDERS_PAID = Counter("minishop_orders_paid_total", "Orders paid (confirmed by WeChat Pay)")
ORDERS_PAID_AMOUNT = Counter(
    "minishop_orders_paid_amount_fen_total", "Money received for paid orders, in fen"
)
# Payments (docs/payments.md). `result` of a WeChat Pay transaction outcome we applied:
# paid, duplicate, paid_after_cancel, closed, failed.
PAYMENTS = Counter("minishop_payments_total", "Payment outcomes applied to orders", ["result"])
PAYMENT_NOTIFICATIONS = Counter(
    "minishop_payment_notifications_total",
    "WeChat Pay notifications answered, by event type and answer (ok, duplicate, rejected)",
    ["event_type", "result"],
)
PAYMENT_NOTIFY_VERIFICATION_FAILURES = Counter(
    "minishop_payment_notify_verification_failures_total",
    "WeChat Pay notifications refused: signature, malformed, mismatch, unknown",
    ["reason"],
)
PAID_AFTER_CANCEL_REFUNDS = Counter(
    "minishop_paid_after_cancel_refunds_total",
    "Payments for orders already cancelled or paid, refunded in full automatically",
)
REFUNDS = Counter(
    "minishop_refunds_total",
    "Refunds by outcome: requested, succeeded, abnormal, closed",
    ["result"],
)
RECONCILIATION_REPAIRS = Counter(
    "minishop_payment_reconciliation_repairs_total",
    "Payments and refunds whose outcome reconciliation applied because no notification did",
    ["kind"],
)


def is_multiprocess() -> bool:
    return MULTIPROC_ENV in os.environ


def record_cache(cache: str, hit: bool) -> None:
    """One lookup in the cache named `cache` (a constant such as "product")."""
    (CACHE_HITS if hit else CACHE_MISSES).labels(cache).inc()


def record_order_paid(amount_fen: int) -> None:
    ORDERS_PAID.inc()
    ORDERS_PAID_AMOUNT.inc(amount_fen)


def request_route() -> str | None:
    """The current request's URL rule (a template, never the raw path); None for unknown URLs."""
    rule = request.url_rule
    return rule.rule if rule is not None else None


# The children of HTTP_REQUESTS and HTTP_DURATION per (method, route, status): `.labels()` takes
# a lock and validates the labels on every call, and the set is bounded (see the docstring).
_http_children: dict[tuple[str, str | None, int], tuple[Counter, Histogram]] = {}


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    children = _http_children.get((method, route, status))
    if children is None:
        label_method = method if method in METHODS else "OTHER"
        label_route = route or UNMATCHED_ROUTE
        children = (
            HTTP_REQUESTS.labels(label_method, label_route, str(status)),
            HTTP_DURATION.labels(label_method, label_route),
        )
        if method in METHODS:  # an odd method is an attacker's choice: not a key to keep
            _http_children[(method, route, status)] = children
    children[0].inc()
    children[1].observe(seconds)


@contextmanager
def wechat_call(api: str) -> Iterator[None]:
    """Count and time one WeChat call (its retry included) by how it ended."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    except AppError as exc:
        if exc.code == ErrorCode.WECHAT_TIMEOUT:
            outcome = "unavailable"
        raise
    finally:
        WECHAT_CALLS.labels(api, outcome).inc()
        WECHAT_DURATION.labels(api).observe(time.perf_counter() - started)


class WorkerProcessCollector(Collector):
    """CPU and memory of gunicorn's master and of each worker, read at scrape time.

    Multiprocess mode drops prometheus_client's process collector (it would describe only the
    process that happens to answer the scrape), so this reads every process of the server from
    /proc instead. Outside gunicorn it describes the current process.

    It also reports the memory one worker may use, which the WorkerMemoryHigh alert compares
    each worker's RSS with (helm/minishop/files/prometheus-rules/alerts.yml).
    """

    def __init__(self) -> None:
        self.master_pid: int | None = None
        # WORKER_MEMORY_LIMIT_BYTES; None: a share of the container's cgroup limit, if any.
        self.worker_memory_limit: int | None = None

    def _processes(self) -> Iterable[tuple[str, psutil.Process]]:
        if self.master_pid is None:
            yield "worker", psutil.Process()
            return
        master = psutil.Process(self.master_pid)
        yield "master", master
        for child in master.children():
            yield "worker", child

    def collect(self) -> Iterable[Metric]:
        cpu = CounterMetricFamily(
            "minishop_process_cpu_seconds",
            "CPU time (user + system) of each server process",
            labels=["pid", "role"],
        )
        memory = GaugeMetricFamily(
            "minishop_process_resident_memory_bytes",
            "Resident memory of each server process",
            labels=["pid", "role"],
        )
        limit = GaugeMetricFamily(
            "minishop_worker_memory_limit_bytes",
            "Memory one worker may use: WORKER_MEMORY_LIMIT_BYTES, else an equal share of the "
            "container's memory limit among the server's processes",
        )
        read = 0
        for role, process in self._processes():
            try:
                with process.oneshot():
                    times, rss = process.cpu_times(), process.memory_info().rss
            except psutil.Error:  # it exited between listing and reading
                continue
            read += 1
            labels = [str(process.pid), role]
            cpu.add_metric(labels, times.user + times.system)
            memory.add_metric(labels, rss)
        per_worker = worker_memory_limit(self.worker_memory_limit, max(read, 1))
        if per_worker is not None:
            limit.add_metric([], per_worker)
        yield cpu
        yield memory
        yield limit


def cgroup_memory_limit(files: Iterable[Path] = CGROUP_MEMORY_LIMIT_FILES) -> int | None:
    """The container's memory limit in bytes; None when it has none (or this is no container)."""
    for path in files:
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if not raw.isdigit() or int(raw) >= CGROUP_UNLIMITED:  # v2 writes "max"
            return None
        return int(raw)
    return None


def worker_memory_limit(configured: int | None, processes: int) -> int | None:
    """What one worker may use: the setting, else the container's limit shared by `processes`.

    Every process of the server counts against the container's limit, gunicorn's master too,
    so the share is what each may grow to before the container as a whole is out of memory.
    """
    if configured is not None:
        return configured
    container = cgroup_memory_limit()
    return None if container is None else container // processes


PROCESSES = WorkerProcessCollector()
if not is_multiprocess():
    REGISTRY.register(PROCESSES)


def exposition_registry() -> CollectorRegistry:
    """What a scrape shows: every worker's samples merged, plus the process collector."""
    if not is_multiprocess():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(PROCESSES)
    return registry


def _metrics_view() -> Response:
    return Response(generate_latest(exposition_registry()), mimetype=CONTENT_TYPE_LATEST)


def _watch_pool(pool: QueuePool) -> None:
    """Counted from the events: at `checkin` the pool still counts the connection as out."""
    in_use = 0
    lock = threading.Lock()

    def change(delta: int) -> None:
        nonlocal in_use
        with lock:
            in_use += delta
            current = in_use
        DB_POOL_CHECKED_OUT.set(current)
        DB_POOL_OVERFLOW.set(max(0, current - pool.size()))

    event.listen(pool, "checkout", lambda *_args: change(1))
    event.listen(pool, "checkin", lambda *_args: change(-1))


def _start_query_timer(conn: Any, *_args: Any) -> None:
    conn.info.setdefault("minishop_query_started", []).append(time.perf_counter())


def _observe_query(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    started = conn.info["minishop_query_started"].pop()
    operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
    label = operation if operation in SQL_OPERATIONS else "OTHER"
    DB_QUERY_DURATION.labels(label).observe(time.perf_counter() - started)


def _watch_engine(engine: Engine) -> None:
    event.listen(engine, "before_cursor_execute", _start_query_timer)
    event.listen(engine, "after_cursor_execute", _observe_query)
    if isinstance(engine.pool, QueuePool):
        _watch_pool(engine.pool)


def init_app(
    app: Flask, engines: list[Engine], *, serve_on_app: bool, worker_memory_limit: int | None
) -> None:
    """Watch the app's database engines; serve /metrics here unless a metrics port does."""
    PROCESSES.worker_memory_limit = worker_memory_limit
    for engine in engines:
        _watch_engine(engine)
    if serve_on_app:
        app.add_url_rule("/metrics", "metrics", _metrics_view)


# gunicorn's hooks (gunicorn.conf.py)


def empty_multiprocess_dir() -> None:
    """In the master at start: samples left by an earlier run must not be merged into ours."""
    for samples in Path(os.environ[MULTIPROC_ENV]).glob("*.db"):
        samples.unlink()


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (in-flight requests, pool use); counters stay summed."""
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def serve_from_master(
    master_pid: int, port: int, host: str, *, worker_memory_limit: int | None
) -> None:
    """The exposition on its own port, from the master thread that outlives every worker."""
    PROCESSES.master_pid = master_pid
    PROCESSES.worker_memory_limit = worker_memory_limit
    start_http_server(port, addr=host, registry=exposition_registry())


def describe_server(master_pid: int) -> None:
    """In a worker: the process collector reports the whole server, not this worker alone."""
    PROCESSES.master_pid = master_pid
