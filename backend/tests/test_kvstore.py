"""The two key-value stores behave alike: Redis (real server) and the embedded SQLite file."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import redis.exceptions

from minishop import kvstore
from minishop.cache import CachePolicy, ReadThroughCache
from minishop.kvstore import KeyValueStore, SQLiteStore, store_for


@pytest.fixture(params=["redis", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyValueStore]:
    if request.param == "sqlite":
        yield store_for(None, 1.0, key_prefix="kvtest:", embedded_path=str(tmp_path / "kv.db"))
    else:
        redis_url: str = request.getfixturevalue("redis_url")
        yield store_for(
            redis_url, 1.0, key_prefix=f"kvtest:{time.monotonic_ns()}:", embedded_path=""
        )


def test_set_if_absent_has_exactly_one_winner_under_contention(store: KeyValueStore) -> None:
    with ThreadPoolExecutor(32) as pool:
        wins = list(pool.map(lambda i: store.set_if_absent("lock", str(i), 10), range(64)))
    assert wins.count(True) == 1
    assert store.get("lock") == str(wins.index(True))


def test_values_expire(store: KeyValueStore) -> None:
    store.set("short", "v", 0.05)
    assert store.set_if_absent("marker", "1", 0.05)
    assert store.get("short") == "v"
    time.sleep(0.15)
    assert store.get("short") is None
    assert store.set_if_absent("marker", "2", 10)


def test_delete_if_equals_only_deletes_the_owners_value(store: KeyValueStore) -> None:
    store.set("owned", "me", 10)
    assert not store.delete_if_equals("owned", "someone-else")
    assert store.get("owned") == "me"
    assert store.delete_if_equals("owned", "me")
    assert store.get("owned") is None
    assert not store.delete_if_equals("missing", "me")


def test_without_redis_the_store_is_the_embedded_file(tmp_path: Path) -> None:
    path = str(tmp_path / "kv.db")
    store = store_for(None, 1.0, key_prefix="x:", embedded_path=path)
    assert isinstance(store, SQLiteStore)
    assert store.file.path == path


def test_a_bumped_generation_refuses_writes_prepared_before_it(store: KeyValueStore) -> None:
    before = store.generation("doc:gen")
    assert before == "0"
    store.bump_generation("doc", "doc:gen")
    assert not store.set_if_generation("doc", "stale", 10, "doc:gen", before)
    assert store.get("doc") is None
    current = store.generation("doc:gen")
    assert current != before
    assert store.set_if_generation("doc", "fresh", 10, "doc:gen", current)
    store.bump_generation("doc", "doc:gen")
    assert store.get("doc") is None


def test_a_bump_can_announce_the_key_in_the_same_call(store: KeyValueStore) -> None:
    """Redis publishes it to subscribers; the embedded file changes its epoch instead."""
    subscription = store.subscribe("invalidations")
    epoch = store.invalidation_epoch()
    store.set("doc", "v", 10)
    if subscription is None:
        store.bump_generation("doc", "doc:gen", announce_on="invalidations")
        assert store.invalidation_epoch() != epoch
    else:
        with subscription:
            subscription.get_message(0.5)  # the subscription is live before the bump
            store.bump_generation("doc", "doc:gen", announce_on="invalidations")
            assert subscription.get_message(2.0) == "doc"
    assert store.get("doc") is None
    assert store.generation("doc:gen") != "0"


def _take(path: str, candidate: int) -> bool:
    """In a process of its own: what a gunicorn worker does with the shared file."""
    return SQLiteStore(path).set_if_absent("lock", str(candidate), 10)


def test_processes_sharing_the_file_see_one_winner_and_a_new_process_remembers(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "kv.db")
    with ProcessPoolExecutor(4) as pool:
        wins = list(pool.map(_take, [path] * 32, range(32)))
    assert wins.count(True) == 1
    assert SQLiteStore(path).get("lock") == str(wins.index(True))


def test_a_file_locked_too_long_is_unavailable_like_a_dead_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kvstore, "BUSY_TIMEOUT_SECONDS", 0.05)
    path = str(tmp_path / "kv.db")
    store = SQLiteStore(path)
    store.set("cached", "old", 60)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert store.get("cached") == "old"  # readers never wait in WAL mode
        with pytest.raises(redis.exceptions.ConnectionError):
            store.set_if_absent("nonce", "1", 600)
        policy = CachePolicy(enabled=True, negative_ttl=1, jitter=0, stale_seconds=0)
        document = b'{"title":"from the database"}'
        body = ReadThroughCache(store, policy).get("product", "1", 60, lambda: document)
        assert body.data == document
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.set_if_absent("nonce", "1", 600)
