"""What observability costs: requests/s of a cache hit with everything on versus everything off.

    .venv/bin/python loadtest/bench_observability.py [--duration 20] [--rounds 3]

Two gunicorn servers with the same settings (backend/gunicorn.conf.py defaults: 2 gthread
workers, 4 threads each) against one stack (MariaDB, Redis, WeChat emulator; loadtest/stack.py):

- **on**: JSON logs at INFO (an access line per request), Prometheus metrics, OpenTelemetry
  traces with the default sampler (parentbased_traceidratio 0.1: every request gets a span
  context, one in ten is recorded) exported over OTLP/HTTP to a sink on loopback that
  acknowledges without decoding, standing in for a collector on another host;
- **off**: `TRACING_BACKEND=none`, `METRICS_ENABLED=false`, `LOG_LEVEL=WARNING`.

Both serve `GET /api/v1/products/{id}`, a cache hit. Load: wrk (C, one thread), because a Python
generator would take the CPU the server needs on a 2-core machine. The rounds alternate
(on, off, on, off ...) so that background load on a shared machine falls on both alike; the
median of each side is reported with the ratio on/off (target: at least 0.85), on stdout and in
reports/bench-observability.json, together with the workers' CPU time per request, whose
ratio off/on is the same comparison made robust against other load on the machine.
Needs wrk: `bash pipelines/install-system-deps.sh bench` (`make bench-observability` does it).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, LocalStack, Server

TARGET = 0.85
PRODUCT_PATH = "/api/v1/products/1"
QUIET = {"TRACING_BACKEND": "none", "METRICS_ENABLED": "false", "LOG_LEVEL": "WARNING"}
# Rate limits off the path: one client address would otherwise measure the limiter's 429s.
NO_LIMITS = {"RATELIMIT_DEFAULT": "100000000/minute"}


class OtlpSink(BaseHTTPRequestHandler):
    """Reads each export and answers 200 with an empty ExportTraceServiceResponse."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        """Quiet."""


@dataclass(frozen=True)
class Measurement:
    requests_per_second: float
    # CPU time the workers spent per request: unlike requests/s, barely moved by other load.
    worker_cpu_us_per_request: float


def worker_cpu_seconds(server: Server) -> float:
    total = 0.0
    for pid in server.worker_pids():
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def measure(server: Server, duration: int, connections: int) -> Measurement:
    cpu_before = worker_cpu_seconds(server)
    finished = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", server.base_url + PRODUCT_PATH],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = worker_cpu_seconds(server) - cpu_before
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", finished.stdout)
    if errors:
        raise SystemExit(f"bench: {errors.group(1)} failed requests:\n{finished.stdout}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", finished.stdout)
    count = re.search(r"(\d+) requests in", finished.stdout)
    assert rate and count, finished.stdout
    return Measurement(float(rate.group(1)), round(cpu / int(count.group(1)) * 1e6, 1))


def serve(stack: LocalStack, env: dict[str, str]) -> Server:
    """A server whose environment differs from the stack's by `env`."""
    base = stack.app_env
    stack.app_env = base | NO_LIMITS | env
    try:
        server = stack.serve(workers=2, worker_class="gthread", threads=4)
    finally:
        stack.app_env = base
    answer = requests.get(server.base_url + PRODUCT_PATH, timeout=10)  # fills the cache
    answer.raise_for_status()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per side")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is missing: bash pipelines/install-system-deps.sh bench")

    sink = ThreadingHTTPServer(("127.0.0.1", 0), OtlpSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    everything_on = {
        "TRACING_BACKEND": "otel",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        "METRICS_ENABLED": "true",
        "LOG_LEVEL": "INFO",
    }
    results: dict[str, list[Measurement]] = {"on": [], "off": []}
    with LocalStack(workers=2) as stack:
        servers = {"on": serve(stack, everything_on), "off": serve(stack, QUIET)}
        try:
            for server in servers.values():  # warm-up: imports, pools, connections
                measure(server, 3, args.connections)
            for round_no in range(args.rounds):
                for side, server in servers.items():
                    found = measure(server, args.duration, args.connections)
                    results[side].append(found)
                    print(f"bench: round {round_no + 1} {side:>3}: {found}", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    sink.shutdown()

    def median(side: str, field: str) -> float:
        return float(statistics.median(getattr(m, field) for m in results[side]))

    on, off = median("on", "requests_per_second"), median("off", "requests_per_second")
    cpu_on = median("on", "worker_cpu_us_per_request")
    cpu_off = median("off", "worker_cpu_us_per_request")
    summary = {
        "endpoint": f"GET {PRODUCT_PATH} (cache hit)",
        "everything_on_rps": on,
        "observability_off_rps": off,
        "ratio": round(on / off, 3),
        "cpu_us_per_request_on": cpu_on,
        "cpu_us_per_request_off": cpu_off,
        "cpu_ratio": round(cpu_off / cpu_on, 3),
        "target": TARGET,
        "rounds": {side: [asdict(m) for m in found] for side, found in results.items()},
        "duration_s": args.duration,
        "connections": args.connections,
    }
    reports = ROOT / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "bench-observability.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    if on / off < TARGET:
        raise SystemExit(f"bench: ratio {on / off:.3f} is under the target {TARGET}")


if __name__ == "__main__":
    main()
