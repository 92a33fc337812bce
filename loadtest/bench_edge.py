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
Reference: the same wrk load through the plainest 1 s micro-cache (loadtest/edge/
minimal-nginx.conf) just before, so the report says what any nginx cache gets on this machine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from bench_shop import Admin
from bench_wrk import Result, run_get
from stack import EdgeProxy, Server

EDGE_THREADS = int(os.environ.get("BENCH_EDGE_THREADS", "2"))
EDGE_CONNECTIONS = int(os.environ.get("BENCH_EDGE_CONNECTIONS", "100"))
REFERENCE_CONFIG = Path(__file__).resolve().parent / "edge" / "minimal-nginx.conf"
STALENESS_PROBES = 5
GIVE_UP_SECONDS = 10.0


@dataclass
class EdgeRun:
    result: Result | None
    staleness_seconds: float | None  # the worst probe; None when not measured
    # The same load through the plainest 1 s micro-cache (loadtest/edge/minimal-nginx.conf),
    # right before: what this machine gives any nginx cache, so the shipped figure can be read.
    reference: Result | None = None
    note: str = ""


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


def edge_read(label: str, server: Server, edge: EdgeProxy, path: str) -> Result:
    stock_through(edge.base_url, int(path.rsplit("/", 1)[1]))
    return run_get(
        label,
        server,
        path,
        base_url=edge.base_url,
        connections=EDGE_CONNECTIONS,
        threads=EDGE_THREADS,
    )


def run_edge(server: Server, admin: Admin, product_id: int) -> EdgeRun:
    path = f"/api/v1/products/{product_id}"
    with EdgeProxy(server.base_url, config=REFERENCE_CONFIG) as reference_edge:
        reference = edge_read(
            "edge0. the same through a minimal nginx micro-cache (reference)",
            server,
            reference_edge,
            path,
        )
    with EdgeProxy(server.base_url) as edge:
        result = edge_read("edge. GET /api/v1/products/{id} through nginx", server, edge, path)
        start = stock_through(server.base_url, product_id)
        probes = [
            staleness(edge.base_url, admin, product_id, start + n)
            for n in range(1, STALENESS_PROBES + 1)
        ]
    print(f"bench: edge staleness probes (s): {[round(p, 3) for p in probes]}", flush=True)
    return EdgeRun(result, max(probes), reference)
