"""The two key-value stores behave alike: Redis (real server) and the in-process fallback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from minishop.kvstore import KeyValueStore, MemoryStore, store_for


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[KeyValueStore]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        redis_url: str = request.getfixturevalue("redis_url")
        yield store_for(redis_url, 1.0, key_prefix=f"kvtest:{time.monotonic_ns()}:")


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


def test_the_app_without_redis_uses_the_memory_store() -> None:
    assert isinstance(store_for(None, 1.0, key_prefix="x:"), MemoryStore)
