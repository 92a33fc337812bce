"""The edge row of `make bench`: anonymous product reads through the shipped nginx micro-cache.

Throughput: wrk against nginx (deploy/edge/nginx.conf, started by `stack.EdgeProxy`) in front of
the benchmark's gunicorn; nginx answers from its ~1 s cache, so wrk gets more threads and
connections than against gunicorn (BENCH_EDGE_THREADS, default 2; BENCH_EDGE_CONNECTIONS,
default 100). Staleness: the admin changes the stock (straight at gunicorn, the way an admin
write invalidates the app's caches), and the edge is polled every 5 ms until the new stock shows;
the worst of STALENESS_PROBES changes, counted from the admin's answer (the write is committed
then) to the first edge answer with it. Each change is made just after the edge refreshed its
entry (an answer `HIT` right after `STALE`/`UPDATING`/`EXPIRED`), the worst moment: a change at a
random moment mostly finds the entry about to expire and measures little.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import requests
from bench_shop import Admin
from bench_wrk import Result, run_get
from stack import Server

EDGE_THREADS = int(os.environ.get("BENCH_EDGE_THREADS", "2"))
EDGE_CONNECTIONS = int(os.environ.get("BENCH_EDGE_CONNECTIONS", "100"))
STALENESS_PROBES = 5
GIVE_UP_SECONDS = 10.0


@dataclass
class EdgeRun:
    result: Result | None
    staleness_seconds: float | None  # the worst probe; None when not measured
    note: str = ""


def edge_proxy_class() -> Any:
    """`stack.EdgeProxy` (helper D's branch), or None while it is not there."""
    import stack

    return getattr(stack, "EdgeProxy", None)


def stock_through(base_url: str, product_id: int) -> int:
    answer = requests.get(f"{base_url}/api/v1/products/{product_id}", timeout=10)
    answer.raise_for_status()
    return int(answer.json()["data"]["stock"])


def just_refreshed(base_url: str, product_id: int) -> None:
    """Poll every 5 ms until the edge has just refreshed its entry (HIT after a refresh)."""
    refreshing = False
    deadline = time.monotonic() + GIVE_UP_SECONDS
    while time.monotonic() < deadline:
        answer = requests.get(f"{base_url}/api/v1/products/{product_id}", timeout=10)
        status = answer.headers.get("X-Cache-Status")
        if refreshing and status == "HIT":
            return
        refreshing = refreshing or status in {"STALE", "UPDATING", "EXPIRED", "MISS"}
        time.sleep(0.005)
    raise RuntimeError(f"the edge did not refresh its entry within {GIVE_UP_SECONDS} s")


def staleness(edge_url: str, admin: Admin, product_id: int, new_stock: int) -> float:
    """Seconds from the admin's answer (the change is committed) until the edge first answers
    the new stock."""
    just_refreshed(edge_url, product_id)  # the edge holds the old document, for ~0.9 s more
    admin.set_stock(product_id, new_stock)
    started = time.monotonic()  # the change is committed: from now on, old stock is stale
    while time.monotonic() - started < GIVE_UP_SECONDS:
        if stock_through(edge_url, product_id) == new_stock:
            return time.monotonic() - started
        time.sleep(0.005)
    return float("inf")


def run_edge(server: Server, admin: Admin, product_id: int) -> EdgeRun:
    proxy = edge_proxy_class()
    if proxy is None:
        return EdgeRun(None, None, "not measured: no stack.EdgeProxy (helper D's edge branch)")
    path = f"/api/v1/products/{product_id}"
    with proxy(server.base_url) as edge:
        stock_through(edge.base_url, product_id)
        result = run_get(
            "edge. GET /api/v1/products/{id} through nginx",
            server,
            path,
            base_url=edge.base_url,
            connections=EDGE_CONNECTIONS,
            threads=EDGE_THREADS,
        )
        start = stock_through(server.base_url, product_id)
        probes = [
            staleness(edge.base_url, admin, product_id, start + n)
            for n in range(1, STALENESS_PROBES + 1)
        ]
    print(f"bench: edge staleness probes (s): {[round(p, 3) for p in probes]}", flush=True)
    return EdgeRun(result, max(probes))
