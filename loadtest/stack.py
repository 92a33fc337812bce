"""The whole backend on this machine, for load tests and benchmarks.

MariaDB, Redis, the WeChat emulator and gunicorn, each on a free loopback port, with data in a
temporary directory that is removed afterwards. The same real parts the test suite uses,
started the same way (mirakuru waits for each port), so a benchmark measures what production
runs: migrations applied, demo catalog seeded. `embedded=True` starts neither MariaDB nor Redis:
a SQLite database and the embedded store's file in that directory instead, as `make run` has.

    with LocalStack(workers=4) as stack:
        print(stack.base_url, stack.emulator_url)

`EdgeProxy` puts the shipped edge (deploy/edge/nginx.conf, nginx from apt) in front of any of
them, the way compose and the chart expose the app:

    with LocalStack() as stack, EdgeProxy(stack.base_url) as edge:
        print(edge.base_url)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import psutil
import pymysql
import requests
from mirakuru import TCPExecutor
from mirakuru.exceptions import ProcessFinishedWithError

from wechat_emulator.testing import EmulatorProcess

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "backend"
EDGE_CONFIG = ROOT / "deploy" / "edge" / "nginx.conf"
VENV_BIN = Path(sys.executable).parent
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def binary(name: str) -> str:
    found = shutil.which(name, path=SBIN_PATH)
    if found is None:
        raise SystemExit(f"{name} is missing: run `bash pipelines/install-system-deps.sh test`")
    return found


class Server:
    """One gunicorn master and its workers."""

    def __init__(self, base_url: str, process: subprocess.Popen[bytes]) -> None:
        self.base_url = base_url
        self.process = process

    def worker_pids(self) -> list[int]:
        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class LocalStack:
    def __init__(
        self,
        *,
        workers: int = 4,
        worker_class: str = "gthread",
        threads: int = 4,
        env: Mapping[str, str] | None = None,
        embedded: bool = False,
    ) -> None:
        self.embedded = embedded
        self.workers = workers
        self.worker_class = worker_class
        self.threads = threads
        self.extra_env = dict(env or {})
        self.directory = Path(tempfile.mkdtemp(prefix="minishop-stack-"))
        self._executors: list[TCPExecutor] = []
        self._emulator: EmulatorProcess | None = None
        self.server: Server | None = None
        self.base_url = ""
        self.emulator_url = ""
        self.app_env: dict[str, str] = {}

    def _start_mariadb(self) -> str:
        port, data = free_port(), self.directory / "mariadb"
        subprocess.run(
            [str(ROOT / "tools" / "mariadb-install-db.sh"), "--user=root", f"--datadir={data}"],
            check=True,
            capture_output=True,
            env=os.environ | {"PATH": SBIN_PATH},
        )
        server = TCPExecutor(
            [
                binary("mariadbd"),
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                f"--socket={self.directory / 'mariadb.sock'}",
                "--bind-address=127.0.0.1",
                f"--port={port}",
                "--skip-log-bin",
                "--max-connections=500",
                f"--log-error={self.directory / 'mariadb.log'}",
            ],
            host="127.0.0.1",
            port=port,
            timeout=60,
        )
        server.start()
        self._executors.append(server)
        connection = pymysql.connect(host="127.0.0.1", port=port, user="root")
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "CREATE DATABASE minishop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        return f"mysql+pymysql://root@127.0.0.1:{port}/minishop?charset=utf8mb4"

    def _start_redis(self) -> str:
        port = free_port()
        server = TCPExecutor(
            [
                binary("redis-server"),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            host="127.0.0.1",
            port=port,
            timeout=30,
        )
        server.start()
        self._executors.append(server)
        return f"redis://127.0.0.1:{port}/0"

    def flask_command(self, *args: str) -> None:
        """`flask --app minishop ARGS` against this stack (migrations, seed, grant-admin)."""
        subprocess.run(
            [str(VENV_BIN / "flask"), "--app", "minishop", *args],
            cwd=BACKEND,
            env=self.app_env,
            check=True,
            capture_output=True,
        )

    def serve(
        self,
        app: str = "minishop:create_app()",
        *,
        workers: int | None = None,
        worker_class: str | None = None,
        threads: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Server:
        """Start gunicorn (with backend/gunicorn.conf.py) for `app` against this stack."""
        port = free_port()
        env = (
            self.app_env
            | dict(env or {})
            | {
                "WECHATPAY_NOTIFY_URL": f"http://127.0.0.1:{port}/api/v1/payments/wechat/notify",
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "WEB_CONCURRENCY": str(workers or self.workers),
                "GUNICORN_WORKER_CLASS": worker_class or self.worker_class,
                "GUNICORN_THREADS": str(threads or self.threads),
                "PYTHONPATH": str(ROOT / "loadtest"),
            }
        )
        log_path = self.directory / f"gunicorn-{port}.log"
        process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", app],
            cwd=BACKEND,
            env=env,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        server = Server(f"http://127.0.0.1:{port}", process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if requests.get(f"{server.base_url}/healthz", timeout=1).status_code < 500:
                    return server
            except requests.RequestException:  # not listening yet, or too busy booting to answer
                time.sleep(0.2)
        server.stop()
        raise RuntimeError(log_path.read_text(errors="replace")[-3000:])

    def __enter__(self) -> Self:
        try:
            if self.embedded:
                stores = {
                    "DATABASE_URL": f"sqlite:///{self.directory / 'minishop.db'}",
                    "REDIS_URL": "",
                    "EMBEDDED_STORE_PATH": str(self.directory / "minishop-kv.db"),
                }
            else:
                stores = {"DATABASE_URL": self._start_mariadb(), "REDIS_URL": self._start_redis()}
            self._emulator = EmulatorProcess(env={"PATH": os.environ.get("PATH", "")}).start()
            self.emulator_url = self._emulator.base_url
            wechatpay = self._emulator.control.pay_keys().merchant_settings(
                self.directory / "wechatpay"
            )
            self.app_env = (
                dict(os.environ)
                | {"APP_ENV": "testing", "LOG_LEVEL": "WARNING"}
                | {"WECHAT_API_BASE": self.emulator_url, "WECHATPAY_API_BASE": self.emulator_url}
                | wechatpay
                | stores
                | self.extra_env
            )
            self.flask_command("db", "upgrade")
            self.flask_command("seed")
            self.server = self.serve()
            self.base_url = self.server.base_url
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._emulator is not None:
            self._emulator.stop()
            self._emulator = None
        for executor in reversed(self._executors):
            # One that had died (a test stopped MariaDB) has nothing to stop: the rest still must.
            with contextlib.suppress(ProcessFinishedWithError):
                executor.stop()
        self._executors.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class EdgeProxy:
    """nginx with the shipped edge config (or `config`, the bench's reference) in front of
    `upstream_base_url`, on a free port.

    The config is used as it is; its two includes (edge-listen.conf, edge-upstream.conf) and
    everything nginx writes (pid, temporary files, the cache, the access log in `access.log`)
    live in a temporary directory, its prefix, so it runs as root or not and beside other
    instances. Stopping it kills only its own master (and so its workers).
    """

    def __init__(self, upstream_base_url: str, config: Path = EDGE_CONFIG) -> None:
        upstream = urlsplit(upstream_base_url)
        if upstream.scheme != "http" or not upstream.hostname or not upstream.port:
            raise ValueError(f"need http://host:port, not {upstream_base_url!r}")
        self.upstream = f"{upstream.hostname}:{upstream.port}"
        self.config = config
        self.directory = Path(tempfile.mkdtemp(prefix="minishop-edge-"))
        self.access_log = self.directory / "access.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.base_url = ""

    def _command(self) -> list[str]:
        command = [binary("nginx"), "-p", f"{self.directory}/", "-e", "stderr"]
        return [*command, "-c", str(self.directory / "nginx.conf"), "-g", "daemon off;"]

    def start(self) -> Self:
        shutil.copyfile(self.config, self.directory / "nginx.conf")
        self.port = free_port()
        (self.directory / "edge-listen.conf").write_text(f"listen 127.0.0.1:{self.port};\n")
        (self.directory / "edge-upstream.conf").write_text(f"server {self.upstream};\n")
        # Run as root, the workers are nobody: they must reach the cache and temporary folders
        # (the master creates those and gives them to the workers' user).
        self.directory.chmod(0o755)
        stderr = (self.directory / "error.log").open("wb")
        with self.access_log.open("wb") as stdout:
            self.process = subprocess.Popen(self._command(), stdout=stdout, stderr=stderr)
        stderr.close()
        self.base_url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if requests.get(f"{self.base_url}/__edge/healthz", timeout=1).ok:
                    return self
            except requests.RequestException:  # not listening yet
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not start: {self.error_log()}")

    def error_log(self) -> str:
        return (self.directory / "error.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: the master stops its workers at once
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
