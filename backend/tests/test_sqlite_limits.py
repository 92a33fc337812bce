"""Rate-limit counts in the embedded SQLite file: every strategy, shared by every worker."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import STRATEGIES, RateLimiter

from minishop import sqlite_limits
from minishop.sqlite_limits import SQLiteStorage

STRATEGY_NAMES = sorted(STRATEGIES)


def workers(path: Path, strategy: str, count: int = 2) -> list[RateLimiter]:
    """What `count` gunicorn workers build from the same RATELIMIT_STORAGE_URI."""
    uri = sqlite_limits.storage_uri(str(path))
    return [STRATEGIES[strategy](storage_from_string(uri)) for _ in range(count)]


def test_the_uri_names_the_file_even_with_odd_characters(tmp_path: Path) -> None:
    path = tmp_path / "a dir%" / "kv.db"
    storage = storage_from_string(sqlite_limits.storage_uri(str(path)))
    assert isinstance(storage, SQLiteStorage)
    assert storage.file.path == str(path)
    assert storage.check()


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_hits_from_every_worker_count_against_one_limit(tmp_path: Path, strategy: str) -> None:
    first, second = workers(tmp_path / "kv.db", strategy)
    limit = parse("5/minute")
    allowed = [(first, second)[i % 2].hit(limit, "login", "203.0.113.1") for i in range(8)]
    assert allowed == [True] * 5 + [False] * 3
    stats = first.get_window_stats(limit, "login", "203.0.113.1")
    assert stats.remaining == 0
    assert time.time() < stats.reset_time <= time.time() + 120
    assert second.hit(limit, "login", "203.0.113.2")  # another client has its own count
    second.clear(limit, "login", "203.0.113.1")
    assert first.hit(limit, "login", "203.0.113.1")


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_concurrent_hits_never_take_more_than_the_limit(tmp_path: Path, strategy: str) -> None:
    limiters = workers(tmp_path / "kv.db", strategy, count=4)
    limit = parse("5/minute")
    with ThreadPoolExecutor(16) as pool:
        allowed = list(pool.map(lambda i: limiters[i % 4].hit(limit, "burst"), range(48)))
    assert allowed.count(True) == 5


def test_the_moving_window_lets_hits_in_again_as_old_ones_leave_it(tmp_path: Path) -> None:
    (limiter,) = workers(tmp_path / "kv.db", "moving-window", count=1)
    limit = parse("2/second")
    assert limiter.hit(limit, "k")
    time.sleep(0.5)
    assert limiter.hit(limit, "k")
    assert not limiter.hit(limit, "k")
    time.sleep(0.6)  # the first hit has left the window, the second has not
    assert limiter.hit(limit, "k")
    assert not limiter.hit(limit, "k")


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window-counter"])
def test_a_hit_costing_more_than_the_limit_takes_nothing(tmp_path: Path, strategy: str) -> None:
    """(A fixed window counts even refused hits, on every storage: the library decides that.)"""
    (limiter,) = workers(tmp_path / "kv.db", strategy, count=1)
    assert not limiter.hit(parse("2/minute"), "k", cost=3)
    assert limiter.hit(parse("2/minute"), "k", cost=2)


def test_counters_and_hits_expire_and_reset_clears_everything(tmp_path: Path) -> None:
    storage = SQLiteStorage(sqlite_limits.storage_uri(str(tmp_path / "kv.db")))
    assert storage.incr("counter", 0.1) == 1
    assert storage.incr("counter", 60, amount=2) == 3  # a live counter keeps its expiry
    assert storage.get("counter") == 3
    time.sleep(0.15)
    assert storage.get("counter") == 0
    assert storage.incr("counter", 60) == 1
    assert storage.acquire_entry("window", 5, 60)
    assert storage.get_moving_window("window", 5, 60)[1] == 1
    assert storage.reset() == 2
    assert storage.get("counter") == 0
    assert storage.get_moving_window("window", 5, 60)[1] == 0
