"""`make bench`: the API's speed side by side with the framework's ceiling, in ONE run.

Load generator: wrk (C, one event-loop thread), because a Python generator on this 2-core
machine would take the CPU the server needs and measure itself. wrk's Lua cannot compute our
HMAC signatures, so signed requests (orders) and single-use login codes are prepared here in
Python just before their run and replayed by loadtest/wrk/replay.lua, each exactly once.

Scenarios, all against the same gunicorn settings:
  a. a bare Flask JSON "hello" (loadtest/hello_app.py) — the ceiling;
  b. GET /api/v1/products/{id}, a cache hit (and b0: the same with the cache off, for issue 4);
  c. GET /api/v1/products, first page;
  d. POST /api/v1/orders, signed, 200 distinct users, stock for all of them;
  e. POST /api/v1/auth/login against the WeChat emulator.
For each: requests/s, p50/p95/p99, peak RSS of the busiest worker. Writes reports/bench.md,
reports/bench.json and reports/bench.png. `--tuning` compares gunicorn worker settings instead
(reports/tuning.md).

Knobs: BENCH_DURATION (seconds per scenario, default 15), BENCH_CONNECTIONS (default 50).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pymysql
import requests
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, LocalStack, Server

from minishop.security.signature import sign_headers

REPORTS = ROOT / "reports"
REPLAY = Path(__file__).resolve().parent / "wrk" / "replay.lua"
DURATION = int(os.environ.get("BENCH_DURATION", "15"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
ORDER_USERS = 200
# Fixed for every scenario; the tuning mode is what compares settings.
WORKERS, WORKER_CLASS, THREADS = 4, "gthread", 4
# One client address for all: per-IP and per-user limits would measure the limiter's 429s.
BENCH_ENV = {
    "LOG_LEVEL": "INFO",
    "RATELIMIT_DEFAULT": "100000000/minute",
    "RATELIMIT_LOGIN": "100000000/minute",
    "RATELIMIT_ORDERS": "100000000/minute",
}


@dataclass
class Result:
    scenario: str
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    peak_worker_rss_mib: float


class RssSampler(threading.Thread):
    """The largest resident set any worker of `server` reached while the sampler ran."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            for pid in self.server.worker_pids():
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.peak = max(self.peak, psutil.Process(pid).memory_info().rss)
            time.sleep(0.25)

    def stop(self) -> float:
        self.running = False
        self.join()
        return self.peak / 2**20


def request_line(
    method: str, path: str, headers: dict[str, str] | None = None, body: str = ""
) -> str:
    header_text = "|".join(f"{name}: {value}" for name, value in (headers or {}).items())
    return f"{method}\t{path}\t{header_text}\t{body}\n"


def run_wrk(scenario: str, server: Server, lines: list[str]) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".requests", delete=False) as prepared:
        prepared.writelines(lines)
    sampler = RssSampler(server)
    sampler.start()
    finished = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{DURATION}s",
            "--timeout",
            "10s",
            "-s",
            str(REPLAY),
            server.base_url,
            "--",
            prepared.name,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    peak = sampler.stop()
    os.unlink(prepared.name)
    numbers = json.loads(finished.stdout.strip().splitlines()[-1])
    seconds = numbers["duration_us"] / 1e6
    result = Result(
        scenario=scenario,
        requests_per_second=round(numbers["requests"] / seconds, 1),
        p50_ms=numbers["p50_us"] / 1000,
        p95_ms=numbers["p95_us"] / 1000,
        p99_ms=numbers["p99_us"] / 1000,
        requests=numbers["requests"],
        non_2xx=numbers["non_2xx"] + numbers["socket_errors"],
        peak_worker_rss_mib=round(peak, 1),
    )
    print(f"bench: {result}", flush=True)
    return result


def get_lines(path: str) -> list[str]:
    return [request_line("GET", path)]


def log_in(stack: LocalStack, base_url: str) -> dict[str, Any]:
    code = requests.post(f"{stack.emulator_url}/__emulator/codes", json={}, timeout=30).json()
    answer = requests.post(f"{base_url}/api/v1/auth/login", json={"code": code["code"]}, timeout=30)
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()["data"]
    return data


def order_lines(users: list[dict[str, Any]], product_id: int, count: int) -> list[str]:
    lines = []
    for n in range(count):
        user = users[n % len(users)]
        body = json.dumps({"items": [{"product_id": product_id, "quantity": 1}]})
        headers = {
            "Authorization": f"Bearer {user['access_token']}",
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
            **sign_headers("POST", "/api/v1/orders", "", body.encode(), user["sign_key"]),
        }
        lines.append(request_line("POST", "/api/v1/orders", headers, body))
    return lines


def login_lines(stack: LocalStack, count: int) -> list[str]:
    def new_code(_: int) -> str:
        answer = requests.post(f"{stack.emulator_url}/__emulator/codes", json={}, timeout=30)
        return str(answer.json()["code"])

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(new_code, range(count)))
    headers = {"Content-Type": "application/json"}
    return [
        request_line("POST", "/api/v1/auth/login", headers, json.dumps({"code": code}))
        for code in codes
    ]


def database(stack: LocalStack) -> Any:
    url = make_url(stack.app_env["DATABASE_URL"])
    return pymysql.connect(
        host=url.host, port=url.port, user=url.username, database=url.database, autocommit=True
    )


def stock_and_sold(stack: LocalStack, product_id: int) -> tuple[int, int]:
    with database(stack) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT stock FROM products WHERE id = %s", (product_id,))
        (stock,) = cursor.fetchone()
        cursor.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE product_id = %s",
            (product_id,),
        )
        (sold,) = cursor.fetchone()
    return int(stock), int(sold)


def set_stock(stack: LocalStack, product_id: int, stock: int) -> None:
    with database(stack) as connection, connection.cursor() as cursor:
        cursor.execute("UPDATE products SET stock = %s WHERE id = %s", (stock, product_id))


def api_scenarios(stack: LocalStack, server: Server) -> list[Result]:
    """b to e against `server`; checks afterwards that no order oversold."""
    product_id = 1
    requests.get(f"{server.base_url}/api/v1/products/{product_id}", timeout=10).raise_for_status()
    results = [
        run_wrk(
            "b. GET /api/v1/products/{id} (cached)",
            server,
            get_lines(f"/api/v1/products/{product_id}"),
        ),
        run_wrk("c. GET /api/v1/products", server, get_lines("/api/v1/products")),
    ]
    initial_stock = 10_000_000
    set_stock(stack, product_id, initial_stock)
    with ThreadPoolExecutor(8) as pool:
        users = list(pool.map(lambda _: log_in(stack, server.base_url), range(ORDER_USERS)))
    sold_before = stock_and_sold(stack, product_id)[1]
    results.append(
        run_wrk(
            "d. POST /api/v1/orders (signed)",
            server,
            order_lines(users, product_id, 400 * DURATION * 4),
        )
    )
    stock, sold = stock_and_sold(stack, product_id)
    if stock + (sold - sold_before) != initial_stock:
        raise SystemExit(f"bench: OVERSOLD: stock {stock} + sold {sold} != {initial_stock}")
    results.append(
        run_wrk("e. POST /api/v1/auth/login", server, login_lines(stack, 300 * DURATION))
    )
    return results


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} x {model}, {memory:.0f} GiB, {platform.platform()}"


def commit() -> str:
    return (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        or "unknown"
    )


def markdown_table(results: list[Result]) -> str:
    rows = [
        "| scenario | req/s | p50 ms | p95 ms | p99 ms | requests | non-2xx | worker RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows += [
        f"| {r.scenario} | {r.requests_per_second:.0f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | "
        f"{r.p99_ms:.1f} | {r.requests} | {r.non_2xx} | {r.peak_worker_rss_mib:.0f} |"
        for r in results
    ]
    return "\n".join(rows)


def chart(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.scenario.split(" (")[0] for r in results]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    left.barh(labels, [r.requests_per_second for r in results], color="#3b7dd8")
    left.set_xlabel("requests per second (higher is better)")
    left.invert_yaxis()
    for y, r in enumerate(results):
        left.text(r.requests_per_second, y, f" {r.requests_per_second:.0f}", va="center")
    width = 0.27
    for offset, (attribute, colour) in enumerate(
        [("p50_ms", "#8cc084"), ("p95_ms", "#f2b134"), ("p99_ms", "#d8553b")]
    ):
        right.barh(
            [y + (offset - 1) * width for y in range(len(results))],
            [getattr(r, attribute) for r in results],
            height=width,
            color=colour,
            label=attribute.replace("_ms", ""),
        )
    right.set_yticks(range(len(results)), labels)
    right.invert_yaxis()
    right.set_xlabel(f"latency in ms at {CONNECTIONS} connections (lower is better)")
    right.legend()
    figure.suptitle(f"MiniShop benchmark, {WORKERS} {WORKER_CLASS} workers x {THREADS} threads")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write_report(results: list[Result]) -> None:
    by_letter = {r.scenario.split(".")[0]: r for r in results}
    ceiling = by_letter["a"].requests_per_second
    ratios = {
        "b/a": by_letter["b"].requests_per_second / ceiling,
        "c/a": by_letter["c"].requests_per_second / ceiling,
    }
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""# MiniShop benchmark

- machine: {machine()}
- date: {now}; commit: {commit()}
- server: gunicorn, {WORKERS} {WORKER_CLASS} workers x {THREADS} threads, MariaDB and Redis on
  the same machine; load: wrk, 1 thread, {CONNECTIONS} connections, {DURATION} s per scenario
- ratios: b/a = {ratios["b/a"]:.2f}, c/a = {ratios["c/a"]:.2f}

{markdown_table(results)}

![benchmark chart](bench.png)
"""
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "bench.md").write_text(text)
    (REPORTS / "bench.json").write_text(
        json.dumps(
            {
                "date": now,
                "commit": commit(),
                "ratios": ratios,
                "results": [asdict(r) for r in results],
            },
            indent=2,
        )
    )
    chart(results, REPORTS / "bench.png")
    print(text)


def bench() -> None:
    with LocalStack(
        workers=WORKERS, worker_class=WORKER_CLASS, threads=THREADS, env=BENCH_ENV
    ) as stack:
        hello = stack.serve("hello_app:app")
        results = [run_wrk('a. bare Flask JSON "hello"', hello, get_lines("/hello"))]
        hello.stop()
        uncached = stack.serve(env={"CACHE_ENABLED": "false"})
        results.append(
            run_wrk(
                "b0. GET /api/v1/products/{id} (cache off)",
                uncached,
                get_lines("/api/v1/products/1"),
            )
        )
        uncached.stop()
        assert stack.server is not None
        results += api_scenarios(stack, stack.server)
    write_report(results)


TUNING = [("sync", 4, 1), ("sync", 8, 1), ("gthread", 2, 8), ("gthread", 4, 4), ("gevent", 4, 1)]


def tuning() -> None:
    rows = []
    with LocalStack(env=BENCH_ENV) as stack:
        assert stack.server is not None
        stack.server.stop()
        stack.server = None
        for worker_class, workers, threads in TUNING:
            server = stack.serve(workers=workers, worker_class=worker_class, threads=threads)
            name = f"{worker_class} x{workers}" + (f" x{threads} threads" if threads > 1 else "")
            for result in api_scenarios(stack, server):
                result.scenario = f"{name}: {result.scenario}"
                rows.append(result)
            server.stop()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"# gunicorn worker settings\n\n- machine: {machine()}\n- date: {now}; "
        f"commit: {commit()}\n\n{markdown_table(rows)}\n"
    )
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "tuning.md").write_text(text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuning", action="store_true", help="compare gunicorn worker settings")
    tuning() if parser.parse_args().tuning else bench()
