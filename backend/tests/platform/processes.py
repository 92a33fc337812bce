"""The servers of the observability tests (Prometheus, Alertmanager, Jaeger, the Collector):
one way to run a binary on loopback until a block ends."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests

# No proxy from the environment may stand between a test and its loopback servers.
HTTP = requests.Session()
HTTP.trust_env = False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        return HTTP.get(url, timeout=2).status_code == 200
    except requests.RequestException:  # not listening yet
        return False


@contextmanager
def serving(
    command: Sequence[str],
    log_path: Path,
    ready_url: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[None]:
    """Run `command` (output in `log_path`) once `ready_url` answers 200, until the block ends."""
    environment = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment | dict(env or {}),
        )
    try:
        deadline = time.monotonic() + timeout
        while not _ready(ready_url):
            if process.poll() is not None:
                output = log_path.read_text(errors="replace")
                raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{output}")
            if time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")
                raise RuntimeError(f"{command[0]} not ready after {timeout} s:\n{output}")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
