"""Micro-benchmark: the embedded store's operations, alone and with many writers at once.

    cd backend && ../.venv/bin/python benchmarks/bench_embedded_store.py [--seconds 5]

First what one thread pays per operation (a cache read, a nonce, a moving-window hit), then what
a request's share of them costs when several processes and threads write the same file at once:
each "request" is a rate-limit hit, a nonce and a cache read, as a signed request makes them.
The file lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from limits import parse
from limits.strategies import MovingWindowRateLimiter

from minishop.kvstore import SQLiteStore
from minishop.sqlite_limits import SQLiteStorage, storage_uri

LIMIT = parse("300/minute")


def per_call_us(call: Callable[[], Any], n: int = 3000) -> float:
    call()
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n * 1e6


def requests_in(path: str, threads: int, seconds: float, results: Any) -> None:
    """One process of `threads` threads making requests' store calls for `seconds`."""
    store = SQLiteStore(path)
    limiter = MovingWindowRateLimiter(SQLiteStorage(storage_uri(path)))
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    def run() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            limiter.hit(LIMIT, uuid.uuid4().hex)
            store.set_if_absent(f"nonce:{uuid.uuid4().hex}", "1", 600)
            store.get("cache:product:1")
            latencies.append(time.perf_counter() - started)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(latencies)


def contention(directory: Path, processes: int, threads: int, seconds: float) -> str:
    path = str(directory / f"contention-{processes}x{threads}.db")
    SQLiteStore(path).set("cache:product:1", "x" * 500, 600)
    results: Any = multiprocessing.Queue()
    started = [
        multiprocessing.Process(target=requests_in, args=(path, threads, seconds, results))
        for _ in range(processes)
    ]
    for process in started:
        process.start()
    latencies = sorted(value for _ in started for value in results.get())
    for process in started:
        process.join()

    def ms(fraction: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * fraction))] * 1000

    return (
        f"{processes} processes x {threads} threads: {len(latencies) / seconds:7.0f} requests/s, "
        f"p50 {ms(0.5):.2f} ms, p99 {ms(0.99):.2f} ms, max {latencies[-1] * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per contention run")
    seconds = parser.parse_args().seconds
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = str(directory / "one-thread.db")
        store, storage = SQLiteStore(path), SQLiteStorage(storage_uri(path))
        store.set("cache:product:1", "x" * 500, 600)
        print(f"cache read          {per_call_us(lambda: store.get('cache:product:1')):6.1f} µs")
        nonce = per_call_us(lambda: store.set_if_absent(f"nonce:{uuid.uuid4().hex}", "1", 600))
        print(f"nonce (set if new)  {nonce:6.1f} µs")
        hit = per_call_us(lambda: storage.acquire_entry(uuid.uuid4().hex, 300, 60))
        print(f"moving-window hit   {hit:6.1f} µs")
        for processes, threads in [(1, 1), (1, 16), (4, 4)]:
            print(contention(directory, processes, threads, seconds), flush=True)


if __name__ == "__main__":
    main()
