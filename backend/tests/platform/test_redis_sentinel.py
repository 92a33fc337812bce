"""REDIS_URL=redis+sentinel://...: the app under gunicorn keeps serving when its Redis primary goes.

Real processes on loopback: a primary, a replica (`--replicaof`) and a sentinel
(`redis-server --sentinel`, quorum 1). The app is served by gunicorn with only the sentinel's
address. Before the failover it caches the catalog, logs in, takes a signed order and counts
failed logins. Then, while catalog reads, /readyz and signed profile changes (each spends a nonce
in Redis) run, the primary is SIGKILLed and the sentinel promotes the replica, or (the other
case) `SENTINEL FAILOVER` switches them over while both run, the old primary turning replica.
The test measures what the clients saw meanwhile and checks that afterwards every request
succeeds, new keys (nonces, cache entries, rate-limit hits) land on the new primary and the login
limit still counts from where it was before the failover.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from minishop import config
from minishop.extensions import db
from minishop.kvstore import KeyValueStore, store_for
from minishop.models import Category, Product
from tests.ci import require_binaries
from tests.conftest import gunicorn_server
from tests.platform.processes import free_port
from tests.platform.redis_servers import redis_process, server_arguments, wait_for
from tests.signing import json_bytes, signed_headers
from wechat_emulator.testing import EmulatorControl

MASTER = "minishop"
LOGIN_LIMIT = 5
# The sentinel calls the primary down after this long without an answer.
DOWN_AFTER_MS = 1000
# After the sentinel names the new primary, every request must succeed within this long.
RECOVERY_SECONDS = 2.0


@dataclass
class RedisPair:
    """The replicated pair and the sentinel watching it."""

    primary_port: int
    replica_port: int
    sentinel_port: int
    kill_primary: Any

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{MASTER}/0"

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, decode_responses=True, socket_timeout=1)

    def server(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=1)

    def master_port(self) -> int:
        return int(self.sentinel().sentinel_get_master_addr_by_name(MASTER)[1])


@pytest.fixture()
def redis_pair(tmp_path: Path) -> Iterator[RedisPair]:
    require_binaries("redis-server")
    primary, replica, sentinel = free_port(), free_port(), free_port()
    sentinel_conf = tmp_path / "sentinel.conf"
    sentinel_conf.write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {primary} 1\n"
        f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {MASTER} 10000\n"
    )
    folders = {name: tmp_path / name for name in ("primary", "replica")}
    for folder in folders.values():
        folder.mkdir()

    def client(port: int) -> Any:
        return lambda: redis.Redis(port=port, socket_timeout=1)

    with (
        redis_process(
            server_arguments(primary, folders["primary"]), tmp_path / "primary.log", client(primary)
        ) as primary_process,
        redis_process(
            [
                *server_arguments(replica, folders["replica"]),
                "--replicaof",
                "127.0.0.1",
                str(primary),
            ],
            tmp_path / "replica.log",
            client(replica),
        ),
        redis_process(
            [str(sentinel_conf), "--sentinel"], tmp_path / "sentinel.log", client(sentinel)
        ),
    ):
        pair = RedisPair(primary, replica, sentinel, primary_process.kill)
        wait_for(
            lambda: pair.server(replica).info("replication")["master_link_status"] == "up",
            15,
            "the replica is in sync",
        )
        wait_for(
            lambda: any(
                int(found["port"]) == replica and "s_down" not in found["flags"]
                for found in pair.sentinel().sentinel_slaves(MASTER)
            ),
            30,
            "the sentinel knows the replica",
        )
        yield pair


@dataclass
class Traffic:
    """Requests sent in a loop from a thread: (seconds since start, kind, status) each."""

    base_url: str
    signed_in: dict[str, Any]
    product_path: str
    started: float = field(default_factory=time.monotonic)
    seen: list[tuple[float, str, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _send(self, kind: str, method: str, path: str, **kwargs: Any) -> None:
        try:
            status = requests.request(
                method, self.base_url + path, timeout=10, **kwargs
            ).status_code
        except requests.RequestException:
            status = 0
        self.seen.append((time.monotonic() - self.started, kind, status))

    def run(self) -> None:
        round_ = 0
        while not self.stop.is_set():
            round_ += 1
            self._send("read", "GET", self.product_path)
            self._send("ready", "GET", "/readyz")
            body = json_bytes({"nickname": f"Failover {round_}"})
            headers = signed_headers(self.signed_in, "PATCH", "/api/v1/users/me", body)
            headers |= from_client("203.0.113.99") | {"Content-Type": "application/json"}
            self._send("signed", "PATCH", "/api/v1/users/me", data=body, headers=headers)
            time.sleep(0.02)

    def failures(self, kind: str) -> list[tuple[float, int]]:
        return [(at, status) for at, seen, status in self.seen if seen == kind and status != 200]

    def count(self, kind: str) -> int:
        return sum(1 for _, seen, _ in self.seen if seen == kind)


def from_client(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def log_in(base_url: str, emulator: EmulatorControl, address: str) -> dict[str, Any]:
    code = emulator.new_login_code().code
    response = requests.post(
        f"{base_url}/api/v1/auth/login",
        json={"code": code},
        headers=from_client(address),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def bad_logins(base_url: str, address: str, times: int) -> list[int]:
    return [
        requests.post(
            f"{base_url}/api/v1/auth/login",
            json={"code": "guess"},
            headers=from_client(address),
            timeout=10,
        ).status_code
        for _ in range(times)
    ]


def place_order(
    base_url: str, data: dict[str, Any], address: str, product_id: int, key: str
) -> int:
    body = json_bytes({"items": [{"product_id": product_id, "quantity": 1}]})
    headers = signed_headers(data, "POST", "/api/v1/orders", body) | from_client(address)
    headers |= {"Content-Type": "application/json", "Idempotency-Key": key}
    response = requests.post(f"{base_url}/api/v1/orders", data=body, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return response.status_code


def stock(base_url: str, path: str) -> int:
    response = requests.get(base_url + path, timeout=10)
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["stock"])


@pytest.mark.parametrize("how", ["killed", "switched"])
def test_the_app_keeps_serving_through_a_sentinel_failover(
    how: str,
    app: Any,
    settings: config.TestingSettings,
    emulator: EmulatorControl,
    redis_pair: RedisPair,
    tmp_path: Path,
) -> None:
    category = Category(name="Failover", sort=0)
    db.session.add(category)
    db.session.flush()
    product = Product(category_id=category.id, title="Tea", price_fen=1000, stock=20)
    db.session.add(product)
    db.session.commit()
    path = f"/api/v1/products/{product.id}"
    sentinel_settings = settings.model_copy(update={"REDIS_URL": redis_pair.url})
    with gunicorn_server(
        sentinel_settings,
        tmp_path,
        WEB_CONCURRENCY="2",
        TRUSTED_PROXY_COUNT="1",
        RATELIMIT_LOGIN=f"{LOGIN_LIMIT} per minute",
        # Longer than the test: a first level follows the new primary only by its pub/sub.
        CACHE_LOCAL_TTL_SECONDS="60",
    ) as base_url:
        primary = redis_pair.server(redis_pair.primary_port)
        assert stock(base_url, path) == 20
        assert primary.keys(f"minishop:*{product.id}*"), "the product is cached on the primary"
        buyer = log_in(base_url, emulator, "203.0.113.1")
        place_order(base_url, buyer, "203.0.113.1", product.id, "before-failover")
        assert stock(base_url, path) == 19
        assert primary.keys("minishop:nonce:*")
        assert 429 not in bad_logins(base_url, "203.0.113.7", 3)
        assert primary.keys("LIMITS:*203.0.113.7*")
        assert primary.wait(1, 5000) == 1, "the replica has every write before the primary dies"

        traffic = Traffic(base_url, log_in(base_url, emulator, "203.0.113.99"), path)
        driver = threading.Thread(target=traffic.run)
        driver.start()
        try:
            time.sleep(1)
            killed_at = time.monotonic() - traffic.started
            if how == "killed":
                redis_pair.kill_primary()
            else:
                assert redis_pair.sentinel().sentinel_failover(MASTER)
            wait_for(
                lambda: redis_pair.master_port() == redis_pair.replica_port,
                30,
                "the sentinel promoted the replica",
            )
            promoted_at = time.monotonic() - traffic.started
            time.sleep(RECOVERY_SECONDS + 2)
        finally:
            traffic.stop.set()
            driver.join(timeout=30)

        summary = {
            kind: f"{len(traffic.failures(kind))} of {traffic.count(kind)} failed "
            f"{sorted({status for _, status in traffic.failures(kind)})}"
            for kind in ("read", "ready", "signed")
        }
        last_failure = max((at for at, _, status in traffic.seen if status != 200), default=0)
        print(
            f"\nfailover ({how}): primary {how} at {killed_at:.2f} s, replica promoted at "
            f"{promoted_at:.2f} s, last failed request at {last_failure:.2f} s; {summary}"
        )
        assert traffic.failures("read") == [], "catalog reads fall back to the database"
        # While no primary answers, /readyz says so (503) and a signed request cannot spend its
        # nonce (503 "dependency unavailable"): never a 500, and only until the promotion.
        for kind in ("ready", "signed"):
            assert {status for _, status in traffic.failures(kind)} <= {503}, summary
            assert all(
                killed_at <= at <= promoted_at + RECOVERY_SECONDS
                for at, _ in traffic.failures(kind)
            ), summary
        if how == "killed":
            assert traffic.count("signed") > len(traffic.failures("signed")) > 0, summary

        new_primary = redis_pair.server(redis_pair.replica_port)
        assert new_primary.info("replication")["role"] == "master"
        nonces_before = set(new_primary.keys("minishop:nonce:*"))
        second = log_in(base_url, emulator, "203.0.113.2")
        place_order(base_url, second, "203.0.113.2", product.id, "after-failover")
        assert set(new_primary.keys("minishop:nonce:*")) > nonces_before, "nonces on the new one"
        # Redis holds 18 at once, and every worker's first level drops its copy on the message
        # published on the new primary: each subscriber has moved there (cache.py asks the
        # sentinels every PRIMARY_CHECK_SECONDS), also when the old primary kept its connection.
        wait_for(
            lambda: stock(base_url, path) == 18,
            1.0,
            "the cache was invalidated on the new primary and every worker heard it",
        )
        assert new_primary.keys(f"minishop:*{product.id}*")
        # 3 failed logins before the failover still count: 2 more are allowed, then 429.
        assert bad_logins(base_url, "203.0.113.7", 4) == [400, 400, 429, 429]
        assert bad_logins(base_url, "203.0.113.8", LOGIN_LIMIT + 1)[-1] == 429
        assert new_primary.keys("LIMITS:*203.0.113.8*")
        assert requests.get(f"{base_url}/readyz", timeout=10).json()["data"]["cache"] == "ok"


def test_a_subscription_knows_when_the_primary_moved(redis_pair: RedisPair) -> None:
    """What the cache's invalidation subscriber asks every second (minishop/cache.py)."""
    store = store_for(redis_pair.url, 1.0, "minishop:", "")
    with store.subscribe("cache:invalidations") as before:
        assert before.get_message(0.1) is None  # connected and subscribed
        assert before.on_primary()
        assert redis_pair.sentinel().sentinel_failover(MASTER)
        wait_for(
            lambda: redis_pair.master_port() == redis_pair.replica_port,
            30,
            "the sentinel promoted the replica",
        )
        # The sentinel names the new master by address before the pool's check agrees (its
        # answer waits for the promoted replica's flags): within seconds, not at once.
        wait_for(lambda: not before.on_primary(), 10, "the subscription saw the primary move")
    wait_for(lambda: _subscribes_on_primary(store), 10, "a new subscription on the new primary")


def _subscribes_on_primary(store: KeyValueStore) -> bool:
    try:
        with store.subscribe("cache:invalidations") as after:
            after.get_message(0.1)
            return after.on_primary()
    except redis.RedisError:  # the old primary, mid-switch, refuses the connection
        return False
