"""wrk runs for the benchmarks: one scenario in, one `Result` out (loadtest/bench.py).

Two ways to load: `run_get` sends one fixed GET (wrk's static request, no Lua per request, so
wrk stays far from being the limit even through the edge cache), `run_wrk` replays requests
prepared in Python (signed orders, single-use login codes), each exactly once, in order.

Knobs: BENCH_DURATION (seconds per scenario, default 15), BENCH_CONNECTIONS (default 50).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from stack import ROOT, Server

WRK = Path(__file__).resolve().parent / "wrk"
DURATION = int(os.environ.get("BENCH_DURATION", "15"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))


@dataclass
class Result:
    """One wrk run. `non_2xx` counts every failed answer: status >= 400 for a plain GET, any
    status but 2xx for replayed requests, any other status for a run that expects one (304),
    plus socket errors and timeouts; `failed_statuses` counts the failed answers by status where
    the script looked at them (replayed requests, a run that expects one status)."""

    scenario: str
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    peak_worker_rss_mib: float
    failed_statuses: dict[str, int] = field(default_factory=dict)

    @property
    def failures(self) -> str:
        """The failed count, with its statuses when known: `39 (409: 30, 503: 9)`."""
        detail = ", ".join(f"{status}: {n}" for status, n in sorted(self.failed_statuses.items()))
        return f"{self.non_2xx} ({detail})" if detail else str(self.non_2xx)


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
    """One request in replay.lua's format."""
    header_text = "|".join(f"{name}: {value}" for name, value in (headers or {}).items())
    return f"{method}\t{path}\t{header_text}\t{body}\n"


def get_lines(path: str) -> list[str]:
    return [request_line("GET", path)]


def _measure(scenario: str, server: Server, command: list[str]) -> Result:
    """Run wrk (`command`, whose script prints one JSON line) while sampling `server`'s RSS."""
    sampler = RssSampler(server)
    sampler.start()
    try:
        finished = subprocess.run(command, capture_output=True, text=True, check=True)
    finally:
        peak = sampler.stop()
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
        failed_statuses=numbers["failed_statuses"],
    )
    print(f"bench: {result}", flush=True)
    return result


def wrk_command(connections: int, threads: int) -> list[str]:
    return ["wrk", f"-t{threads}", f"-c{connections}", f"-d{DURATION}s", "--timeout", "10s"]


def run_wrk(scenario: str, server: Server, lines: list[str]) -> Result:
    """Replay `lines` (request_line's format) against `server`, one wrk thread, in order."""
    with tempfile.NamedTemporaryFile("w", suffix=".requests", delete=False) as prepared:
        prepared.writelines(lines)
    try:
        command = [
            *wrk_command(CONNECTIONS, 1),
            "-s",
            str(WRK / "replay.lua"),
            server.base_url,
            "--",
            prepared.name,
        ]
        return _measure(scenario, server, command)
    finally:
        os.unlink(prepared.name)


def warm_up(url: str, seconds: int = 1) -> None:
    """Load `url` briefly, unmeasured: every worker has its connections and caches filled."""
    subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", url], capture_output=True, check=True
    )


def run_get(
    scenario: str,
    server: Server,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    expect_status: int | None = None,
    base_url: str | None = None,
    connections: int = CONNECTIONS,
    threads: int = 1,
) -> Result:
    """GET `path` from `base_url` (default: `server` itself) over and over.

    With `expect_status`, every answer with another status counts as failed (a 304 row)."""
    command = [*wrk_command(connections, threads), "-s", str(WRK / "get.lua")]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append((base_url or server.base_url) + path)
    if expect_status is not None:
        command += ["--", str(expect_status)]
    return _measure(scenario, server, command)


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
