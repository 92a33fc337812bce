"""`make loadtest`: run the Locust journey headless, write the reports, judge the thresholds.

Target: LOADTEST_HOST (and LOADTEST_EMULATOR_URL) when set; otherwise a LocalStack (MariaDB,
Redis, the WeChat emulator and gunicorn) is started for the run and stopped after it.
LOADTEST_USERS (default 50) and LOADTEST_DURATION (seconds, default 60) shape the load.
Writes reports/loadtest_stats.csv (and the other Locust CSVs), reports/loadtest.html and, for a
stack it started, reports/loadtest_rss.csv (each worker's memory every 5 s); exits 1 naming every
threshold that was missed.
"""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, VENV_BIN, LocalStack, Server

REPORTS = ROOT / "reports"
THRESHOLDS = Path(__file__).resolve().parent / "thresholds.yml"
# Every virtual user comes from 127.0.0.1: per-IP limits would throttle the crowd, not a person.
STACK_ENV = {"RATELIMIT_LOGIN": "100000/minute", "RATELIMIT_DEFAULT": "1000000/minute"}


def run_locust(host: str, emulator_url: str) -> int:
    env = os.environ | {"LOADTEST_EMULATOR_URL": emulator_url}
    command = [
        str(VENV_BIN / "locust"),
        "-f",
        str(Path(__file__).resolve().parent / "locustfile.py"),
        "--headless",
        "--host",
        host,
        "--csv",
        str(REPORTS / "loadtest"),
        "--html",
        str(REPORTS / "loadtest.html"),
        "--only-summary",
    ]
    return subprocess.run(command, env=env, check=False).returncode


def missed_thresholds(rows: list[dict[str, Any]], thresholds: dict[str, Any]) -> list[str]:
    by_name = {row["Name"]: row for row in rows}
    total = by_name.get("Aggregated")
    if total is None or int(total["Request Count"]) == 0:
        return ["no requests were made"]
    missed = []
    error_ratio = int(total["Failure Count"]) / int(total["Request Count"])
    if error_ratio > thresholds["error_ratio_max"]:
        missed.append(f"error ratio {error_ratio:.2%} > {thresholds['error_ratio_max']:.2%}")
    throughput = float(total["Requests/s"])
    if throughput < thresholds["min_requests_per_second"]:
        missed.append(f"throughput {throughput:.1f}/s < {thresholds['min_requests_per_second']}/s")
    for name, limits in thresholds["requests"].items():
        row = by_name.get(name)
        if row is None or int(row["Request Count"]) == 0:
            missed.append(f"{name}: no requests")
            continue
        for column, key in (("95%", "p95_ms"), ("99%", "p99_ms")):
            measured = float(row[column])
            if measured > limits[key]:
                missed.append(f"{name}: {key} {measured:.0f} ms > {limits[key]} ms")
    return missed


class WorkerMemory(threading.Thread):
    """Every 5 s, the resident memory of each gunicorn worker of the stack this run started."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.samples: list[tuple[float, int, float]] = []  # (seconds in, pid, MiB)
        self.stopped = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stopped.wait(5):
            for pid in self.server.worker_pids():
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                    self.samples.append((time.monotonic() - started, pid, rss))

    def report(self) -> str:
        self.stopped.set()
        self.join()
        with (REPORTS / "loadtest_rss.csv").open("w") as out:
            out.write("seconds,pid,rss_mib\n")
            out.writelines(f"{t:.0f},{pid},{rss:.1f}\n" for t, pid, rss in self.samples)
        if not self.samples:
            return "worker RSS: no samples"
        half = self.samples[-1][0] / 2
        middle = [rss for t, _, rss in self.samples if half - 5 <= t < half + 5] or [0.0]
        end = [rss for t, _, rss in self.samples if t >= self.samples[-1][0] - 5]
        return (
            f"worker RSS: peak {max(rss for _, _, rss in self.samples):.0f} MiB; "
            f"largest worker at half time {max(middle):.0f} MiB, at the end {max(end):.0f} MiB"
        )


def main() -> int:
    REPORTS.mkdir(exist_ok=True)
    host = os.environ.get("LOADTEST_HOST")
    stack = nullcontext(None) if host else LocalStack(env=STACK_ENV)
    with stack as running:
        target = host or running.base_url
        emulator = os.environ.get("LOADTEST_EMULATOR_URL") or (
            running.emulator_url if running else ""
        )
        print(f"loadtest: {target} (emulator {emulator})", flush=True)
        memory = WorkerMemory(running.server) if running and running.server else None
        if memory:
            memory.start()
        locust_status = run_locust(target, emulator)
        if memory:
            print(f"loadtest: {memory.report()}")
    rows = list(csv.DictReader((REPORTS / "loadtest_stats.csv").open()))
    missed = missed_thresholds(rows, yaml.safe_load(THRESHOLDS.read_text()))
    for problem in missed:
        print(f"loadtest: threshold missed: {problem}")
    if locust_status not in (0, 1):  # 1 = some requests failed: judged by the thresholds
        print(f"loadtest: locust exited with {locust_status}")
        return 1
    print("loadtest: all thresholds met" if not missed else "loadtest: FAILED")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
