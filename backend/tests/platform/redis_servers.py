"""Throwaway Redis servers beyond the session's one: primaries, replicas, sentinels, TLS."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.ci import binary


@contextmanager
def redis_process(
    arguments: Sequence[str], log_path: Path, client: Callable[[], redis.Redis]
) -> Iterator[subprocess.Popen[bytes]]:
    """`redis-server ARGUMENTS` until the block ends, once `client()` answers PING."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary("redis-server"), *arguments],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if client().ping():
                    break
            except redis.RedisError:  # not listening yet
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def server_arguments(port: int, folder: Path) -> list[str]:
    """A loopback server without persistence, its files in `folder`."""
    return [
        "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
        "--dir", str(folder),
    ]  # fmt: skip


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout} s: {what}")
        time.sleep(0.1)
