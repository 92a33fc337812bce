"""Where a request's microseconds go: py-spy over gunicorn's workers under wrk load.

Runs loadtest/bench.py's layout (4 gthread workers x 4 threads, LOG_LEVEL INFO, limits out of
reach) on MariaDB + Redis (loadtest/stack.py), warms the cache, then for the bare Flask hello and
the cached `GET /api/v1/products/1` records every worker with py-spy while wrk loads it, only the
thread holding the GIL (`--gil`: the Python work that limits a worker, not threads waiting on a
socket). Prints
the worker CPU per request (psutil, all workers) and the share of the samples in each stage of
the request pipeline (inclusive) and the hottest functions (self). The summary of a run is kept
in docs/performance/profile-request.md.

    cd backend && ../.venv/bin/python benchmarks/profile_request.py [--seconds 15]

PROFILE_KEEP_DIR=<dir> keeps py-spy's collapsed stacks there (speedscope / flamegraph.pl input).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import requests

LOADTEST = Path(__file__).resolve().parents[2] / "loadtest"
sys.path.insert(0, str(LOADTEST))
from bench import BENCH_ENV  # type: ignore[import-not-found]  # noqa: E402
from stack import LocalStack, Server  # type: ignore[import-not-found]  # noqa: E402

PY_SPY = Path(sys.executable).parent / "py-spy"
KEEP_DIR = Path(os.environ["PROFILE_KEEP_DIR"]) if os.environ.get("PROFILE_KEEP_DIR") else None
# Stages of the pipeline: a sample counts towards a stage when one of its frames matches.
STAGES = {
    "gunicorn: accept, parse, write": ("gunicorn/",),
    "werkzeug: environ, routing, response": ("werkzeug/",),
    "access line + HTTP metrics (access.py)": ("observability/access.py",),
    "  JSON log formatting (logs.py)": ("observability/logs.py", "pythonjsonlogger/"),
    "  prometheus-client": ("prometheus_client/",),
    "request id (request_id.py)": ("observability/request_id.py",),
    "tracing hooks (tracing.py)": ("observability/tracing.py",),
    "security headers (headers.py)": ("security/headers.py",),
    "guards (api/guards.py)": ("api/guards.py",),
    "rate limiter (rate_limits.py, batched_limits.py, limits)": (
        "security/rate_limits.py",
        "security/batched_limits.py",
        "flask_limiter/",
        "limits/",
    ),
    "  Redis round trips (redis-py)": ("redis/",),
    "session teardown (flask_sqlalchemy)": ("flask_sqlalchemy/",),
    "view: products.py": ("api/products.py",),
    "cache (cache.py)": ("minishop/cache.py",),
    "envelope (envelope.py)": ("minishop/envelope.py",),
    "pydantic": ("pydantic/", "pydantic_core/"),
    "flask_openapi3 (request validation)": ("flask_openapi3/",),
}


def worker_cpu(server: Server) -> float:
    total = 0.0
    for pid in server.worker_pids():
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def wrk(url: str, seconds: int) -> float:
    """Requests per second wrk reached (1 thread, 50 connections, as bench.py runs it)."""
    command = ["wrk", "-t1", "-c50", f"-d{seconds}s", url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    return next(float(line.split()[1]) for line in out.splitlines() if "Requests/sec" in line)


def profile(name: str, server: Server, path: str, seconds: int) -> None:
    url = server.base_url + path
    for _ in range(50):  # warm the cache and every worker's imports
        requests.get(url, timeout=5).raise_for_status()
    with tempfile.NamedTemporaryFile(suffix=".txt") as raw:
        command = [
            *(str(PY_SPY), "record", "--subprocesses", "--nonblocking", "--gil", "--format", "raw"),
            *("--rate", "250", "--duration", str(seconds), "-o", raw.name),
            *("--pid", str(server.process.pid)),
        ]
        spy = subprocess.Popen(  # noqa: S603
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        cpu_before = worker_cpu(server)
        result: dict[str, float] = {}
        loader = threading.Thread(target=lambda: result.update(rps=wrk(url, seconds - 2)))
        started = time.monotonic()
        loader.start()
        loader.join()
        elapsed = time.monotonic() - started
        cpu = worker_cpu(server) - cpu_before
        spy.wait()
        stacks = Path(raw.name).read_text().splitlines()
    if KEEP_DIR:
        (KEEP_DIR / f"{name.replace(' ', '-')}.txt").write_text("\n".join(stacks))
    requests_done = result["rps"] * elapsed
    print(f"\n## {name}: {path}")
    print(f"wrk: {result['rps']:.0f} req/s; worker CPU {cpu / requests_done * 1e6:.0f} µs/request")
    summarise(stacks)


def summarise(lines: list[str]) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        for stage, needles in STAGES.items():
            if any(needle in frame for frame in frames for needle in needles):
                inclusive[stage] += count
        own[frames[-1]] += count
    print(f"{total} samples\n\n| stage (inclusive) | share |\n| --- | --- |")
    for stage in STAGES:
        print(f"| {stage} | {100 * inclusive[stage] / max(total, 1):.1f} % |")
    print("\n| hottest functions (self) | share |\n| --- | --- |")
    for frame, count in own.most_common(20):
        print(f"| `{frame}` | {100 * count / max(total, 1):.1f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    with LocalStack(workers=4, worker_class="gthread", threads=4, env=BENCH_ENV) as stack:
        hello = stack.serve("hello_app:app")
        profile("bare Flask hello", hello, "/hello", args.seconds)
        hello.stop()
        assert stack.server is not None
        profile("cached product detail", stack.server, "/api/v1/products/1", args.seconds)


if __name__ == "__main__":
    main()
