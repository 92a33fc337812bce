"""The catalog cache against real Redis and MariaDB, under real concurrency (threads hitting the
WSGI app at once; every request is its own app context, session and pooled connection)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import REGISTRY
from pytest_mysql.executor import MySQLExecutor
from pytest_redis import factories as redis_factories
from pytest_redis.executor import RedisExecutor
from redis import Redis
from sqlalchemy import create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from minishop import config, create_app, extensions
from minishop.cache import Body, CachePolicy, Entry, LocalCache, ReadThroughCache
from minishop.domain import catalog_admin
from minishop.extensions import db
from minishop.kvstore import SQLiteStore
from minishop.models import Category, Product
from tests.ci import binary
from tests.conftest import (
    create_database,
    embedded_settings,
    gunicorn_server,
    migrate_database,
)

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
    doc_key = f"cache:2:product:{product_id}"
    store = extensions.kv_store.get()
    stored = Entry.loads(store.get(doc_key) or "")
    store.set(doc_key, Entry(stored.body, 0).dumps(), ttl_seconds=60)  # expired now
    extensions.catalog_cache.get().cache.local.clear()  # and so is every first-level copy

    with queries_for_product(app, product_id) as queries:
        statuses = get_concurrently(app, f"/api/v1/products/{product_id}")
    assert statuses == [200] * CONCURRENT_REQUESTS
    assert 1 <= len(queries) <= 2
    assert Entry.loads(store.get(doc_key) or "").fresh_until > 0  # rebuilt


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
    entry = Entry.loads(store.get(f"cache:2:product:{missing_id}") or "")
    assert entry.body.data is None
    negative_ttl = app.config["CACHE_NEGATIVE_TTL_SECONDS"]
    ttl_ms = store.client.pttl(f"minishop:cache:2:product:{missing_id}")  # type: ignore[attr-defined]
    limit = negative_ttl * (1 + app.config["CACHE_TTL_JITTER"]) + app.config["CACHE_STALE_SECONDS"]
    assert 0 < ttl_ms <= limit * 1000


def test_keys_written_together_do_not_expire_together(app: Any, catalog: dict[str, Any]) -> None:
    client = app.test_client()
    ids = [catalog[name].id for name in ("longjing", "puer", "jerky")] + list(range(10_000, 10_030))
    for product_id in ids:
        client.get(f"/api/v1/products/{product_id}")
    store = extensions.kv_store.get()
    freshness = [
        Entry.loads(store.get(f"cache:2:product:{product_id}") or "").fresh_until
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


@contextmanager
def product_queries(app: Any) -> Iterator[list[str]]:
    """Every SQL statement that reads the products table, from any thread."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM products" in statement:
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def subscribed(settings: config.TestingSettings) -> Iterator[None]:
    """Waits, after the block, until one more process listens for invalidations."""
    redis = Redis.from_url(settings.REDIS_URL or "")
    channel = f"{settings.SERVICE_NAME}:cache:invalidations"
    listening = redis.pubsub_numsub(channel)[0][1]
    yield
    deadline = time.monotonic() + 5
    while redis.pubsub_numsub(channel)[0][1] <= listening:
        assert time.monotonic() < deadline, "nobody subscribed"
        time.sleep(0.01)
    time.sleep(0.05)  # and it has emptied its first level, right after subscribing


def test_the_first_level_answers_without_the_store_until_its_ttl(
    settings: config.TestingSettings, app: Any, catalog: dict[str, Any]
) -> None:
    own = create_app(settings.model_copy(update={"CACHE_LOCAL_TTL_SECONDS": 0.5}))
    client, url = own.test_client(), f"/api/v1/products/{catalog['puer'].id}"
    with subscribed(settings):  # subscribing empties the first level: wait for it
        client.get(url)
    first = client.get(url).get_json()["data"]
    store = extensions.kv_store.of(own)
    doc_key = f"cache:2:product:{catalog['puer'].id}"
    changed = Entry.loads(store.get(doc_key) or "")
    store.set(doc_key, Entry(Body.of(b'{"changed":1}'), changed.fresh_until).dumps(), 60)
    assert client.get(url).get_json()["data"] == first  # the first level, not Redis
    time.sleep(0.6)
    assert client.get(url).get_json()["data"] == {"changed": 1}


def test_the_first_level_is_bounded_by_bytes() -> None:
    local = LocalCache(ttl=60, max_bytes=10_000)
    for number in range(1000):
        local.put(str(number), Body.of(b"x" * 300), local.epoch)
        assert local.size <= 10_000
    assert local.get("999") is not None and local.get("0") is None  # the oldest went first
    local.put("huge", Body.of(b"x" * 20_000), local.epoch)
    assert local.get("huge") is None  # larger than the whole budget: never kept
    read_at = local.epoch
    local.evict("999")  # an invalidation while a body was being read from the store
    local.put("999", Body.of(b"old"), read_at)
    assert local.get("999") is None


def test_an_invalidation_reaches_another_workers_first_level_through_pubsub(
    settings: config.TestingSettings, app: Any, catalog: dict[str, Any]
) -> None:
    """Two apps are two workers; the first level lives 30 s, so only pub/sub can explain it."""
    long_lived = settings.model_copy(update={"CACHE_LOCAL_TTL_SECONDS": 30})
    reader, writer = create_app(long_lived), create_app(long_lived)
    product_id = catalog["puer"].id
    url = f"/api/v1/products/{product_id}"
    with subscribed(settings):
        assert reader.test_client().get(url).get_json()["data"]["stock"] == 5
    assert reader.test_client().get(url).get_json()["data"]["stock"] == 5
    with writer.app_context():
        catalog_admin.set_stock(db.session, extensions.catalog_cache.get(), product_id, 7)
    changed = time.monotonic()
    while reader.test_client().get(url).get_json()["data"]["stock"] != 7:
        assert time.monotonic() - changed < 1.0, "the reader kept its copy"
        time.sleep(0.01)


def test_list_pages_are_cached_and_admin_edits_forget_them(
    app: Any, catalog: dict[str, Any]
) -> None:
    client = app.test_client()
    with product_queries(app) as queries:
        first = client.get("/api/v1/products?page_size=2").get_json()["data"]
        assert client.get("/api/v1/products?page_size=2").get_json()["data"] == first
    assert len(queries) == 2  # one count and one page, for both reads
    with product_queries(app) as queries:
        for _ in range(2):
            client.get("/api/v1/products?q=tea")  # a search is not cached
            client.get(f"/api/v1/products?page={app.config['CACHE_LIST_MAX_PAGE'] + 1}")
    assert len(queries) == 8
    catalog_admin.update_product(
        db.session,
        extensions.catalog_cache.get(),
        catalog["jerky"].id,
        catalog["jerky"].version,
        {"title": "Beef jerky, spicy"},
    )
    page = client.get("/api/v1/products?page_size=2").get_json()["data"]
    assert page["items"][0]["title"] == "Beef jerky, spicy"


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_forgetting_a_namespace_refuses_rebuilds_that_read_before(
    app: Any, kind: str, tmp_path: Any
) -> None:
    store = extensions.kv_store.get() if kind == "redis" else SQLiteStore(str(tmp_path / "kv.db"))
    store.set("cache:products:0:1:20", "page", 60)
    store.set("cache:productsx:1", "other namespace", 60)
    generation = store.generation("cache:products:gen")
    store.forget_prefix("cache:products:", "cache:products:gen")
    assert store.get("cache:products:0:1:20") is None
    assert store.get("cache:productsx:1") == "other namespace"
    assert not store.set_if_generation(
        "cache:products:0:1:20", "old", 60, "cache:products:gen", generation
    )
    fresh = store.generation("cache:products:gen")
    assert fresh != generation
    assert store.set_if_generation("cache:products:0:1:20", "new", 60, "cache:products:gen", fresh)


def test_a_failed_rebuild_serves_the_stale_copy(app: Any) -> None:
    cache = ReadThroughCache(
        extensions.kv_store.get(),
        CachePolicy(enabled=True, negative_ttl=1, jitter=0, stale_seconds=60),
    )
    first = cache.get("stale-test", "1", 0.05, lambda: b'{"a":1}')
    time.sleep(0.1)  # expired, still stored

    def database_down() -> bytes:
        raise OperationalError("SELECT 1", {}, Exception("down"))

    assert cache.get("stale-test", "1", 0.05, database_down) == first
    with pytest.raises(OperationalError):
        cache.get("stale-test", "2", 0.05, database_down)  # nothing stale to serve


Seen = list[tuple[float, str]]


def watch_titles(base_url: str, product_id: int, seconds: float) -> Seen:
    """(when, title) of the product as its detail and the first list page show it, read for
    `seconds` from 16 threads, each request on a new connection: every worker answers."""
    deadline = time.monotonic() + seconds

    def read(thread: int) -> Seen:
        seen: Seen = []
        number = thread
        while time.monotonic() < deadline:
            number += 1
            path = f"/api/v1/products/{product_id}" if number % 2 else "/api/v1/products"
            response = requests.get(base_url + path, timeout=10)
            assert response.status_code == 200, response.text
            data = response.json()["data"]
            items = [data] if number % 2 else data["items"]
            (title,) = [item["title"] for item in items if item["id"] == product_id]
            seen.append((time.monotonic(), title))
        return seen

    with ThreadPoolExecutor(16) as pool:
        return [sample for samples in pool.map(read, range(16)) for sample in samples]


def assert_every_worker_follows_an_edit(
    base_url: str, product_id: int, edit: Callable[[str], None], bound: float
) -> None:
    assert {title for _, title in watch_titles(base_url, product_id, 1.5)} == {"Pu'er cake"}
    edit("Pu'er cake, 2019")
    edited = time.monotonic()
    seen = watch_titles(base_url, product_id, bound + 1.5)
    late = [when - edited for when, title in seen if title != "Pu'er cake, 2019"]
    after_bound = [title for when, title in seen if when - edited > bound]
    assert len(after_bound) >= 100
    assert max(late, default=0.0) <= bound, f"the old title was read {max(late):.2f} s after"


def test_with_redis_every_gunicorn_worker_drops_its_copy_within_a_second(
    settings: config.TestingSettings, app: Any, catalog: dict[str, Any], tmp_path: Path
) -> None:
    """First-level copies live 30 s here: only the published invalidation can explain it."""
    product = catalog["puer"]

    def edit(title: str) -> None:
        catalog_admin.update_product(
            db.session,
            extensions.catalog_cache.get(),
            product.id,
            product.version,
            {"title": title},
        )

    with gunicorn_server(settings, tmp_path, CACHE_LOCAL_TTL_SECONDS="30") as base_url:
        assert_every_worker_follows_an_edit(base_url, product.id, edit, bound=1.0)


def test_embedded_every_gunicorn_worker_drops_its_copy_within_a_second(
    settings: config.TestingSettings, tmp_path: Path
) -> None:
    """No pub/sub in the SQLite store: the shared invalidation epoch does it (copies live 30 s)."""
    embedded = embedded_settings(settings, tmp_path)
    own = create_app(embedded)
    with own.app_context():
        tea = Category(name="Tea", sort=1)
        db.session.add(tea)
        db.session.flush()
        product = Product(category_id=tea.id, title="Pu'er cake", price_fen=100, stock=5)
        db.session.add(product)
        db.session.commit()
        product_id, version = product.id, product.version

    def edit(title: str) -> None:
        with own.app_context():
            catalog_admin.update_product(
                db.session, extensions.catalog_cache.get(), product_id, version, {"title": title}
            )

    try:
        with gunicorn_server(embedded, tmp_path, CACHE_LOCAL_TTL_SECONDS="30") as base_url:
            assert_every_worker_follows_an_edit(base_url, product_id, edit, bound=1.0)
    finally:
        with own.app_context():
            db.engine.dispose()


def test_cached_catalog_reads_keep_answering_while_the_database_is_down(
    settings: config.TestingSettings, redis_url: str, doomed_mariadb: MySQLExecutor, tmp_path: Path
) -> None:
    """gunicorn on a MariaDB of its own, stopped while 16 threads read. Cached reads answer
    from the first level, then from Redis, list pages from their stale copy once they expire;
    a read nothing cached answers 503/50300."""
    url = migrate_database(create_database(doomed_mariadb, "minishop_cache_outage"))
    engine = create_engine(url)
    with Session(engine) as session:
        tea = Category(name="Tea", sort=1)
        session.add(tea)
        session.flush()
        products = [
            Product(category_id=tea.id, title=f"Tea {n}", price_fen=100, stock=5) for n in range(2)
        ]
        session.add_all(products)
        session.commit()
        cached_id, uncached_id = (product.id for product in products)
    engine.dispose()
    Redis.from_url(redis_url).flushall()
    cached = [f"/api/v1/products/{cached_id}", "/api/v1/products", "/api/v1/categories"]
    uncached = f"/api/v1/products/{uncached_id}"

    with gunicorn_server(settings.model_copy(update={"DATABASE_URL": url}), tmp_path) as base:
        for path in cached:
            assert requests.get(base + path, timeout=10).status_code == 200
        doomed_mariadb.stop()
        try:
            # Past the first level's 1 s and the list pages' 2 s: every layer gets its turn.
            deadline = time.monotonic() + 4

            def read(thread: int) -> list[tuple[str, int, int]]:
                answers = []
                paths = [*cached, uncached]
                while time.monotonic() < deadline:
                    path = paths[(thread + len(answers)) % len(paths)]
                    response = requests.get(base + path, timeout=10)
                    answers.append((path, response.status_code, response.json()["code"]))
                return answers

            with ThreadPoolExecutor(16) as pool:
                answers = [answer for found in pool.map(read, range(16)) for answer in found]
        finally:
            doomed_mariadb.start()

    for path in cached:
        assert {(status, code) for p, status, code in answers if p == path} == {(200, 0)}, path
    assert {(status, code) for p, status, code in answers if p == uncached} == {(503, 50300)}
    assert len(answers) >= 100
