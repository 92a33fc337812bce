"""`make loadtest`: run the Locust journey headless, write the reports, judge the thresholds.

Target: LOADTEST_HOST (and LOADTEST_EMULATOR_URL) when set; otherwise a LocalStack (MariaDB,
Redis, the WeChat emulator and gunicorn) is started for the run and stopped after it.
LOADTEST_USERS (default 50) and LOADTEST_DURATION (seconds, default 60) shape the load.
Writes reports/loadtest_stats.csv (and the other Locust CSVs), reports/loadtest.html and, for a
stack it started, reports/loadtest_rss.csv (each worker's memory every 5 s, and whether it stays
flat); exits 1 naming every threshold that was missed. `make bench` reuses the Locust run and the
memory sampling for its RSS row.
"""

from __future__ import annotations

import contextlib
import csv
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
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
# "Flat": the end of a run within this share of its warmed-up start.
FLAT_TOLERANCE = 0.10


def run_locust(
    host: str, emulator_url: str, prefix: str = "loadtest", env: dict[str, str] | None = None
) -> int:
    """Locust headless against `host`; CSVs and HTML under reports/`prefix`*."""
    env = os.environ | {"LOADTEST_EMULATOR_URL": emulator_url} | (env or {})
    command = [
        str(VENV_BIN / "locust"),
        "-f",
        str(Path(__file__).resolve().parent / "locustfile.py"),
        "--headless",
        "--host",
        host,
        "--csv",
        str(REPORTS / prefix),
        "--html",
        str(REPORTS / f"{prefix}.html"),
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


@dataclass
class RssTrend:
    """The largest worker's resident memory over a run, to tell a plateau from a leak."""

    peak_mib: float
    early_mib: float  # mean over the second fifth of the run (the 2nd minute of 5): warmed up
    late_mib: float  # mean over the last fifth

    @property
    def flat(self) -> bool:
        return abs(self.late_mib - self.early_mib) <= FLAT_TOLERANCE * self.early_mib


class WorkerMemory(threading.Thread):
    """Every `interval` seconds, the resident memory of each gunicorn worker of `server`."""

    def __init__(self, server: Server, interval: float = 5) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.interval = interval
        self.samples: list[tuple[float, int, float]] = []  # (seconds in, pid, MiB)
        self.stopped = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stopped.wait(self.interval):
            now = time.monotonic() - started
            for pid in self.server.worker_pids():
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                    self.samples.append((now, pid, rss))

    def stop(self, csv_path: Path) -> None:
        self.stopped.set()
        self.join()
        with csv_path.open("w") as out:
            out.write("seconds,pid,rss_mib\n")
            out.writelines(f"{t:.0f},{pid},{rss:.1f}\n" for t, pid, rss in self.samples)

    def trend(self) -> RssTrend | None:
        largest: dict[float, float] = {}  # sweep time -> the largest worker then
        for t, _, rss in self.samples:
            largest[t] = max(largest.get(t, 0.0), rss)
        if not largest:
            return None
        end = max(largest)

        def mean(start: float, stop: float) -> float:
            window = [rss for t, rss in largest.items() if start <= t <= stop]
            return statistics.mean(window) if window else 0.0

        return RssTrend(
            peak_mib=max(largest.values()),
            early_mib=mean(end / 5, 2 * end / 5),
            late_mib=mean(4 * end / 5, end),
        )

    def report(self) -> str:
        self.stop(REPORTS / "loadtest_rss.csv")
        trend = self.trend()
        if trend is None:
            return "worker RSS: no samples"
        return (
            f"worker RSS: peak {trend.peak_mib:.0f} MiB; largest worker {trend.early_mib:.0f} MiB "
            f"in the second fifth of the run, {trend.late_mib:.0f} MiB in the last "
            f"({'flat' if trend.flat else 'GROWING'})"
        )


def main() -> int:
    REPORTS.mkdir(exist_ok=True)
    host = os.environ.get("LOADTEST_HOST", "")
    stack = nullcontext(None) if host else LocalStack(env=STACK_ENV)
    with stack as running:
        target = running.base_url if running else host
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
