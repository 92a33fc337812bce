"""The embedded default (`make run`: SQLite, no Redis) is as coherent as MariaDB + Redis.

gunicorn runs with 4 workers on a SQLite database and no REDIS_URL. Every request opens a new
connection, so different workers answer, and yet they agree on the cached catalog, the login
limit and the nonces already used, also after every worker crashed and was replaced.

The server trusts one proxy, so each test picks its own client address (X-Forwarded-For) and the
per-IP login limit of one test does not count another's requests.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from minishop import config, create_app
from minishop.extensions import db
from minishop.models import Category, Product
from tests.conftest import embedded_settings, gunicorn_server
from tests.signing import json_bytes, signed_headers
from wechat_emulator.testing import EmulatorControl

WORKERS = 4
LOGIN_LIMIT = 5
REQUESTS = 64


@dataclass(frozen=True)
class EmbeddedServer:
    base_url: str
    app: Any
    pid_file: Path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """On a new connection, like every call here: whichever worker accepts it answers."""
        return requests.get(f"{self.base_url}{path}", timeout=10, **kwargs)

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.base_url}{path}", timeout=10, **kwargs)

    def add_product(self, stock: int) -> int:
        with self.app.app_context():
            category = Category(name=f"Embedded {time.monotonic_ns()}", sort=0)
            db.session.add(category)
            db.session.flush()
            product = Product(category_id=category.id, title="Tea", price_fen=1000, stock=stock)
            db.session.add(product)
            db.session.commit()
            return product.id

    def crash_every_worker(self) -> None:
        """SIGKILL each worker and wait until the master has replaced all of them."""
        master = psutil.Process(int(self.pid_file.read_text()))
        crashed = {worker.pid for worker in master.children()}
        for pid in crashed:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            workers = {worker.pid for worker in master.children()}
            if len(workers) == len(crashed) and not workers & crashed:
                break
            time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not replace its crashed workers")
        assert self.get("/healthz").status_code == 200


@pytest.fixture(scope="module")
def embedded_server(
    settings: config.TestingSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedServer]:
    folder = tmp_path_factory.mktemp("embedded")
    embedded = embedded_settings(settings, folder)
    app = create_app(embedded)
    pid_file = folder / "gunicorn.pid"
    with gunicorn_server(
        embedded,
        folder,
        WEB_CONCURRENCY=str(WORKERS),
        TRUSTED_PROXY_COUNT="1",
        RATELIMIT_LOGIN=f"{LOGIN_LIMIT} per minute",
        GUNICORN_CMD_ARGS=f"--pid {pid_file}",
    ) as base_url:
        yield EmbeddedServer(base_url, app, pid_file)
    with app.app_context():
        db.engine.dispose()


def from_client(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def everywhere(call: Callable[[int], requests.Response]) -> list[requests.Response]:
    """`call` REQUESTS times from 16 threads, each on its own connection: every worker answers."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(call, range(REQUESTS)))


def log_in(server: EmbeddedServer, emulator: EmulatorControl, address: str) -> dict[str, Any]:
    code = emulator.new_login_code().code
    response = server.send(
        "POST", "/api/v1/auth/login", json={"code": code}, headers=from_client(address)
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def bad_login(server: EmbeddedServer, address: str) -> int:
    response = server.send(
        "POST", "/api/v1/auth/login", json={"code": "guess"}, headers=from_client(address)
    )
    return response.status_code


def test_every_worker_reads_the_new_stock_after_an_order(
    embedded_server: EmbeddedServer, emulator: EmulatorControl
) -> None:
    product_id = embedded_server.add_product(stock=80)
    path = f"/api/v1/products/{product_id}"

    def stock(_: int) -> int:
        response = embedded_server.get(path)
        assert response.status_code == 200, response.text
        return int(response.json()["data"]["stock"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert set(pool.map(stock, range(REQUESTS))) == {80}  # now cached, in every worker
    address = "203.0.113.10"
    data = log_in(embedded_server, emulator, address)
    body = json_bytes({"items": [{"product_id": product_id, "quantity": 5}]})
    headers = signed_headers(data, "POST", "/api/v1/orders", body) | from_client(address)
    headers |= {"Content-Type": "application/json", "Idempotency-Key": "embedded-order-1"}
    placed = embedded_server.send("POST", "/api/v1/orders", data=body, headers=headers)
    assert placed.status_code == 201, placed.text
    with ThreadPoolExecutor(max_workers=16) as pool:
        assert set(pool.map(stock, range(REQUESTS))) == {75}


def test_the_login_limit_counts_across_workers(embedded_server: EmbeddedServer) -> None:
    in_a_row = [bad_login(embedded_server, "203.0.113.20") for _ in range(12)]
    assert 429 not in in_a_row[:LOGIN_LIMIT], in_a_row
    assert in_a_row[LOGIN_LIMIT:] == [429] * (12 - LOGIN_LIMIT), in_a_row

    burst = everywhere(
        lambda _: embedded_server.send(
            "POST",
            "/api/v1/auth/login",
            json={"code": "guess"},
            headers=from_client("203.0.113.21"),
        )
    )
    statuses = [response.status_code for response in burst]
    assert statuses.count(429) == REQUESTS - LOGIN_LIMIT, statuses


def test_concurrent_orders_on_sqlite_take_exact_stock_without_errors(
    embedded_server: EmbeddedServer, emulator: EmulatorControl
) -> None:
    """Writers in every worker queue for SQLite's one write lock instead of failing."""
    product_id = embedded_server.add_product(stock=40)
    address = "203.0.113.50"
    data = log_in(embedded_server, emulator, address)

    def order(attempt: int) -> requests.Response:
        body = json_bytes({"items": [{"product_id": product_id, "quantity": 1}]})
        headers = signed_headers(data, "POST", "/api/v1/orders", body) | from_client(address)
        headers |= {"Content-Type": "application/json", "Idempotency-Key": f"burst-{attempt:04d}"}
        if attempt % 2:
            embedded_server.get(f"/api/v1/products/{product_id}")
        return embedded_server.send("POST", "/api/v1/orders", data=body, headers=headers)

    responses = everywhere(order)
    statuses = [response.status_code for response in responses]
    assert statuses.count(201) == 40, [r.text for r in responses if r.status_code != 201][:3]
    assert {response.json()["code"] for response in responses if response.status_code != 201} == {
        40901
    }
    stock = embedded_server.get(f"/api/v1/products/{product_id}").json()["data"]["stock"]
    assert stock == 0


def sent_signed_change(
    server: EmbeddedServer, emulator: EmulatorControl, address: str
) -> Callable[[], requests.Response]:
    """Log in from `address` and send one signed profile change (200); returns its exact replay."""
    data = log_in(server, emulator, address)
    body = json_bytes({"nickname": "Replayed"})
    headers = signed_headers(data, "PATCH", "/api/v1/users/me", body) | from_client(address)
    headers |= {"Content-Type": "application/json"}

    def send() -> requests.Response:
        return server.send("PATCH", "/api/v1/users/me", data=body, headers=headers)

    first = send()
    assert first.status_code == 200, first.text
    return send


def replayed_everywhere(send: Callable[[], requests.Response]) -> set[tuple[int, int]]:
    """(status, code) of the replay sent from every worker."""
    return {(r.status_code, r.json()["code"]) for r in everywhere(lambda _: send())}


def test_a_replayed_nonce_is_refused_by_every_worker(
    embedded_server: EmbeddedServer, emulator: EmulatorControl
) -> None:
    replay = sent_signed_change(embedded_server, emulator, "203.0.113.30")
    assert replayed_everywhere(replay) == {(401, 40102)}


def test_workers_that_crashed_forget_neither_nonces_nor_limits(
    embedded_server: EmbeddedServer, emulator: EmulatorControl
) -> None:
    replay = sent_signed_change(embedded_server, emulator, "203.0.113.40")
    limited = "203.0.113.41"
    assert 429 not in [bad_login(embedded_server, limited) for _ in range(LOGIN_LIMIT)]

    embedded_server.crash_every_worker()

    assert replayed_everywhere(replay) == {(401, 40102)}
    assert bad_login(embedded_server, limited) == 429
