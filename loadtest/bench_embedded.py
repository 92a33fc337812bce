"""`make bench-embedded`: the embedded default (SQLite, no Redis) served by several workers or one.

    .venv/bin/python loadtest/bench_embedded.py [--duration 15] [--rounds 2]

Without Redis every gunicorn worker must still see the same cache, nonces and rate-limit counts.
Two designs do that: every worker on the shared SQLite store (minishop/kvstore.py SQLiteStore and
minishop/sqlite_limits.py), or one worker with threads. This measures them on one stack
(loadtest/stack.py with `embedded=True`: SQLite database, embedded store, WeChat emulator):

- GET /api/v1/products/1, a cache hit: requests/s, p99 and the workers' CPU time per request;
- POST /api/v1/orders, signed, prepared in Python and replayed once each (loadtest/bench.py);
- POST /api/v1/auth/login against the emulator.

Every request carries its own client address (X-Forwarded-For, one trusted proxy), as a shop's
many shoppers would: each per-IP moving window then holds a few hits, not every request of the
run. Rounds alternate between the settings so that background load on a shared machine falls on all
alike; the median of each is reported, on stdout and in reports/bench-embedded.{md,json}. After
every order run, stock + sold must equal the initial stock (no oversell through SQLite).
Needs wrk: `bash pipelines/install-system-deps.sh bench` (`make bench-embedded` does it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import requests
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench
import bench_shop
import bench_wrk
from stack import ROOT, LocalStack, Server

# (name, workers, threads per worker), all gthread: the shipped default (1 worker per core), one
# worker with as many threads, one worker with the default's threads.
WORKERS, THREADS = bench.WORKERS, bench.THREADS
SETTINGS = [
    (f"{WORKERS} workers x {THREADS} threads (the default)", WORKERS, THREADS),
    (f"1 worker x {WORKERS * THREADS} threads", 1, WORKERS * THREADS),
    (f"1 worker x {THREADS} threads", 1, THREADS),
]
PRODUCT_ID = 1
INITIAL_STOCK = 10_000_000
# One trusted proxy: the client address is the X-Forwarded-For each prepared request carries.
EMBEDDED_ENV = bench.BENCH_ENV | {"TRUSTED_PROXY_COUNT": "1"}


@dataclass(frozen=True)
class Row:
    setting: str
    scenario: str
    requests_per_second: float
    p99_ms: float
    worker_cpu_us_per_request: float
    non_2xx: int


def from_many_clients(lines: list[str], count: int = 1000) -> list[str]:
    """`lines` (at least `count` of them, repeated if fewer) from `count` client addresses."""
    lines = lines * (count // len(lines) + 1) if len(lines) < count else lines
    stamped = []
    for n, line in enumerate(lines):
        method, path, headers, body = line.split("\t", 3)
        address = f"X-Forwarded-For: 10.1.{n % count // 256}.{n % count % 256}"
        stamped.append(
            "\t".join([method, path, f"{headers}|{address}" if headers else address, body])
        )
    return stamped


def worker_cpu_seconds(server: Server) -> float:
    times = [psutil.Process(pid).cpu_times() for pid in server.worker_pids()]
    return sum(t.user + t.system for t in times)


def measured(setting: str, scenario: str, server: Server, lines: list[str]) -> Row:
    before = worker_cpu_seconds(server)
    result = bench_wrk.run_wrk(f"{setting}: {scenario}", server, lines)
    cpu = worker_cpu_seconds(server) - before
    return Row(
        setting,
        scenario,
        result.requests_per_second,
        result.p99_ms,
        round(cpu / max(result.requests, 1) * 1e6),
        result.non_2xx,
    )


def stock_and_sold(stack: LocalStack) -> tuple[int, int]:
    """Both in one read transaction: orders wrk abandoned may still be committing."""
    path = make_url(stack.app_env["DATABASE_URL"]).database
    with contextlib.closing(sqlite3.connect(str(path), isolation_level=None)) as connection:
        connection.execute("BEGIN")
        (stock,) = connection.execute(
            "SELECT stock FROM products WHERE id = ?", (PRODUCT_ID,)
        ).fetchone()
        (sold,) = connection.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE product_id = ?",
            (PRODUCT_ID,),
        ).fetchone()
        connection.execute("COMMIT")
    return int(stock), int(sold)


def set_stock(stack: LocalStack) -> None:
    path = make_url(stack.app_env["DATABASE_URL"]).database
    with sqlite3.connect(str(path)) as connection:
        connection.execute(
            "UPDATE products SET stock = ? WHERE id = ?",
            (INITIAL_STOCK, PRODUCT_ID),
        )


def one_round(stack: LocalStack, setting: str, workers: int, threads: int) -> list[Row]:
    server = stack.serve(workers=workers, threads=threads)
    try:
        detail = f"/api/v1/products/{PRODUCT_ID}"
        requests.get(server.base_url + detail, timeout=10).raise_for_status()  # fills the cache
        rows = [
            measured(
                setting, "cached detail", server, from_many_clients(bench_wrk.get_lines(detail))
            )
        ]
        set_stock(stack)
        with ThreadPoolExecutor(8) as pool:
            users = list(
                pool.map(
                    lambda _: bench_shop.log_in(stack, server.base_url),
                    range(bench_shop.ORDER_USERS),
                )
            )
        sold_before = stock_and_sold(stack)[1]
        orders = from_many_clients(
            bench_shop.order_lines(users, [PRODUCT_ID], 400 * bench_wrk.DURATION * 4)
        )
        rows.append(measured(setting, "orders", server, orders))
        stock, sold = stock_and_sold(stack)
        if stock + (sold - sold_before) != INITIAL_STOCK:
            raise SystemExit(f"bench: OVERSOLD: stock {stock} + sold {sold} != {INITIAL_STOCK}")
        logins = from_many_clients(bench_shop.login_lines(stack, 300 * bench_wrk.DURATION))
        rows.append(measured(setting, "logins", server, logins))
        return rows
    finally:
        server.stop()


def summary(rows: list[Row]) -> list[Row]:
    """The median of each (setting, scenario) over the rounds."""
    medians = []
    for setting, _, _ in SETTINGS:
        for scenario in ("cached detail", "orders", "logins"):
            found = [r for r in rows if (r.setting, r.scenario) == (setting, scenario)]
            medians.append(
                Row(
                    setting,
                    scenario,
                    statistics.median(r.requests_per_second for r in found),
                    statistics.median(r.p99_ms for r in found),
                    round(statistics.median(r.worker_cpu_us_per_request for r in found)),
                    sum(r.non_2xx for r in found),
                )
            )
    return medians


def markdown(medians: list[Row]) -> str:
    def cell(row: Row) -> str:
        return (
            f"{row.requests_per_second:.0f} ({row.p99_ms:.0f} ms, "
            f"{row.worker_cpu_us_per_request / 1000:.1f} ms)"
        )

    lines = [
        "| setting | cached detail req/s | orders/s | logins/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for setting, _, _ in SETTINGS:
        detail, orders, logins = (r for r in medians if r.setting == setting)
        lines.append(f"| {setting} | {cell(detail)} | {cell(orders)} | {cell(logins)} |")
    return "\n".join(lines) + "\n\n(p99 latency, worker CPU time per request)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per setting")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is missing: bash pipelines/install-system-deps.sh bench")
    bench_wrk.DURATION = args.duration
    rows: list[Row] = []
    with LocalStack(embedded=True, env=EMBEDDED_ENV) as stack:
        assert stack.server is not None
        stack.server.stop()
        stack.server = None
        for _ in range(args.rounds):
            for setting, workers, threads in SETTINGS:
                rows += one_round(stack, setting, workers, threads)
    medians = summary(rows)
    table = markdown(medians)
    reports = ROOT / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "bench-embedded.md").write_text(
        f"# Embedded default: workers\n\n- machine: {bench_wrk.machine()}\n- commit: "
        f"{bench_wrk.commit()}; wrk {bench_wrk.CONNECTIONS} connections, {args.duration} s, "
        f"median of {args.rounds} rounds\n\n{table}\n"
    )
    (reports / "bench-embedded.json").write_text(
        json.dumps({"medians": [asdict(r) for r in medians], "rounds": [asdict(r) for r in rows]})
    )
    print(table)


if __name__ == "__main__":
    main()
