"""The catalog cache against real Redis and MariaDB, under real concurrency (threads hitting the
WSGI app at once; every request is its own app context, session and pooled connection)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pytest_redis import factories as redis_factories
from pytest_redis.executor import RedisExecutor
from sqlalchemy import event

from minishop import config, create_app, extensions
from minishop.extensions import db
from tests.ci import binary

CONCURRENT_REQUESTS = 50
redis_to_stop = redis_factories.redis_proc(executable=binary("redis-server"), port=None)


@contextmanager
def queries_for_product(app: Any, product_id: int) -> Iterator[list[str]]:
    """Every SQL statement that reads the products row `product_id`, from any thread."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        values = parameters.values() if isinstance(parameters, dict) else parameters or ()
        if "FROM products" in statement and product_id in tuple(values):
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def get_concurrently(app: Any, url: str) -> list[int]:
    def get(_: int) -> int:
        return int(app.test_client().get(url).status_code)

    with ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
        return list(pool.map(get, range(CONCURRENT_REQUESTS)))


def test_a_cold_hot_key_is_loaded_once_for_50_concurrent_readers(
    app: Any, catalog: dict[str, Any]
) -> None:
    product_id = catalog["puer"].id
    with queries_for_product(app, product_id) as queries:
        statuses = get_concurrently(app, f"/api/v1/products/{product_id}")
    assert statuses == [200] * CONCURRENT_REQUESTS
    assert 1 <= len(queries) <= 2


def test_an_expired_hot_key_is_rebuilt_once_while_the_others_serve_it_stale(
    app: Any, catalog: dict[str, Any]
) -> None:
    product_id = catalog["puer"].id
    assert app.test_client().get(f"/api/v1/products/{product_id}").status_code == 200
    doc_key = f"cache:product:{product_id}"
    stored = json.loads(extensions.kv_store.get().get(doc_key) or "{}")
    extensions.kv_store.get().set(
        doc_key, json.dumps(stored | {"fresh_until": 0}), ttl_seconds=60
    )  # expired now

    with queries_for_product(app, product_id) as queries:
        statuses = get_concurrently(app, f"/api/v1/products/{product_id}")
    assert statuses == [200] * CONCURRENT_REQUESTS
    assert 1 <= len(queries) <= 2
    assert json.loads(extensions.kv_store.get().get(doc_key) or "{}")["fresh_until"] > 0  # rebuilt


def test_missing_ids_are_cached_briefly_as_negative_entries(
    app: Any, catalog: dict[str, Any]
) -> None:
    missing_id = 987_654
    with queries_for_product(app, missing_id) as queries:
        statuses = get_concurrently(app, f"/api/v1/products/{missing_id}")
        again = app.test_client().get(f"/api/v1/products/{missing_id}").status_code
    assert statuses == [404] * CONCURRENT_REQUESTS and again == 404
    assert 1 <= len(queries) <= 2
    store = extensions.kv_store.get()
    entry = json.loads(store.get(f"cache:product:{missing_id}") or "{}")
    assert entry["value"] is None
    negative_ttl = app.config["CACHE_NEGATIVE_TTL_SECONDS"]
    ttl_ms = store.client.pttl(f"minishop:cache:product:{missing_id}")  # type: ignore[attr-defined]
    limit = negative_ttl * (1 + app.config["CACHE_TTL_JITTER"]) + app.config["CACHE_STALE_SECONDS"]
    assert 0 < ttl_ms <= limit * 1000


def test_keys_written_together_do_not_expire_together(app: Any, catalog: dict[str, Any]) -> None:
    client = app.test_client()
    ids = [catalog[name].id for name in ("longjing", "puer", "jerky")] + list(range(10_000, 10_030))
    for product_id in ids:
        client.get(f"/api/v1/products/{product_id}")
    store = extensions.kv_store.get()
    freshness = [
        json.loads(store.get(f"cache:product:{product_id}") or "{}")["fresh_until"]
        for product_id in ids
    ]
    # 33 entries written within a moment, TTLs stretched by up to 20 %: they spread out.
    assert max(freshness) - min(freshness) > 3


def test_a_rebuild_that_read_before_an_invalidation_cannot_store_stale_data(app: Any) -> None:
    store = extensions.kv_store.get()
    generation = store.generation("cache:x:1:gen")
    store.bump_generation("cache:x:1", "cache:x:1:gen")  # a writer committed meanwhile
    assert not store.set_if_generation("cache:x:1", "old", 60, "cache:x:1:gen", generation)
    assert store.get("cache:x:1") is None
    fresh = store.generation("cache:x:1:gen")
    assert store.set_if_generation("cache:x:1", "new", 60, "cache:x:1:gen", fresh)


@pytest.fixture()
def doomed_redis(request: pytest.FixtureRequest) -> RedisExecutor:
    server: RedisExecutor = request.getfixturevalue("redis_to_stop")
    return server


def test_catalog_reads_survive_redis_stopping_mid_test(
    settings: config.TestingSettings,
    app: Any,
    catalog: dict[str, Any],
    doomed_redis: RedisExecutor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://{doomed_redis.host}:{doomed_redis.port}/0"
    own_app = create_app(settings.model_copy(update={"REDIS_URL": url}))
    client = own_app.test_client()
    product_id = catalog["puer"].id
    assert client.get(f"/api/v1/products/{product_id}").status_code == 200  # cached in Redis

    doomed_redis.stop()
    with caplog.at_level(logging.WARNING, logger="minishop.cache"):
        for path in [f"/api/v1/products/{product_id}", "/api/v1/categories", "/api/v1/products"]:
            response = client.get(path)
            assert response.status_code == 200, (path, response.get_json())
            assert response.get_json()["code"] == 0
    assert any("reading the database" in record.getMessage() for record in caplog.records)
    assert client.get("/readyz").status_code == 503


def test_hits_misses_and_fallbacks_are_counted(
    settings: config.TestingSettings, app: Any, catalog: dict[str, Any]
) -> None:
    def sample(name: str) -> float:
        return (
            REGISTRY.get_sample_value(f"minishop_cache_{name}_total", {"cache": "product"}) or 0.0
        )

    before = {name: sample(name) for name in ("hits", "misses", "fallbacks")}
    client = app.test_client()
    for _ in range(3):
        client.get(f"/api/v1/products/{catalog['puer'].id}")
    assert sample("misses") == before["misses"] + 1
    assert sample("hits") == before["hits"] + 2
    no_redis = create_app(settings.model_copy(update={"REDIS_URL": "redis://127.0.0.1:1/0"}))
    assert no_redis.test_client().get(f"/api/v1/products/{catalog['puer'].id}").status_code == 200
    assert sample("fallbacks") == before["fallbacks"] + 1
