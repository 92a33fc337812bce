"""Small key-value operations that must be atomic across workers: locks, one-time markers, tokens.

Redis (`SET NX PX`, compare-and-delete in Lua) whenever REDIS_URL is set, which production
requires. Without it, `make run` falls back to an in-process store: correct for one process,
and harmless for several, since every use here tolerates each worker holding its own copy.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis

RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
# KEYS: value key, generation key. ARGV: value, ttl ms, the generation the value was read under.
SET_IF_GENERATION = """
if (redis.call('get', KEYS[2]) or '0') == ARGV[3] then
    redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""
# KEYS: value key, generation key. ARGV: generation ttl ms.
BUMP_GENERATION = """
redis.call('del', KEYS[1])
redis.call('incr', KEYS[2])
redis.call('pexpire', KEYS[2], ARGV[1])
return 1
"""
# A generation outlives any value written under it, so a bumped one cannot reappear as '0'.
GENERATION_TTL_SECONDS = 7 * 24 * 3600


class KeyValueStore(Protocol):
    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, ttl_seconds: float) -> None: ...

    def set_if_absent(self, key: str, value: str, ttl_seconds: float) -> bool: ...

    def delete_if_equals(self, key: str, value: str) -> bool: ...

    def generation(self, generation_key: str) -> str:
        """The current generation of a value ("0" before the first bump)."""
        ...

    def set_if_generation(
        self, key: str, value: str, ttl_seconds: float, generation_key: str, generation: str
    ) -> bool:
        """Store `value` only if nothing bumped `generation_key` since `generation` was read."""
        ...

    def bump_generation(self, key: str, generation_key: str) -> None:
        """Delete `key` and make every write prepared under the old generation a no-op."""
        ...

    def ping(self) -> bool: ...


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisStore:
    """Keys are prefixed so several services can share one Redis database."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._release = client.register_script(RELEASE_IF_OWNER)
        self._set_if_generation = client.register_script(SET_IF_GENERATION)
        self._bump_generation = client.register_script(BUMP_GENERATION)

    def get(self, key: str) -> str | None:
        value = self.client.get(self.prefix + key)
        return None if value is None else str(value)

    def set(self, key: str, value: str, ttl_seconds: float) -> None:
        self.client.set(self.prefix + key, value, px=_milliseconds(ttl_seconds))

    def set_if_absent(self, key: str, value: str, ttl_seconds: float) -> bool:
        created = self.client.set(self.prefix + key, value, px=_milliseconds(ttl_seconds), nx=True)
        return bool(created)

    def delete_if_equals(self, key: str, value: str) -> bool:
        return bool(self._release(keys=[self.prefix + key], args=[value]))

    def generation(self, generation_key: str) -> str:
        return self.get(generation_key) or "0"

    def set_if_generation(
        self, key: str, value: str, ttl_seconds: float, generation_key: str, generation: str
    ) -> bool:
        keys = [self.prefix + key, self.prefix + generation_key]
        return bool(
            self._set_if_generation(keys=keys, args=[value, _milliseconds(ttl_seconds), generation])
        )

    def bump_generation(self, key: str, generation_key: str) -> None:
        keys = [self.prefix + key, self.prefix + generation_key]
        self._bump_generation(keys=keys, args=[_milliseconds(GENERATION_TTL_SECONDS)])

    def ping(self) -> bool:
        return bool(self.client.ping())


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[str, float]] = {}

    def _live(self, key: str, now: float) -> str | None:
        item = self._items.get(key)
        if item is None or item[1] <= now:
            self._items.pop(key, None)
            return None
        return item[0]

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key, time.monotonic())

    def set(self, key: str, value: str, ttl_seconds: float) -> None:
        with self._lock:
            self._items[key] = (value, time.monotonic() + ttl_seconds)

    def set_if_absent(self, key: str, value: str, ttl_seconds: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._live(key, now) is not None:
                return False
            self._items[key] = (value, now + ttl_seconds)
            return True

    def delete_if_equals(self, key: str, value: str) -> bool:
        with self._lock:
            if self._live(key, time.monotonic()) != value:
                return False
            del self._items[key]
            return True

    def generation(self, generation_key: str) -> str:
        return self.get(generation_key) or "0"

    def set_if_generation(
        self, key: str, value: str, ttl_seconds: float, generation_key: str, generation: str
    ) -> bool:
        with self._lock:
            now = time.monotonic()
            if (self._live(generation_key, now) or "0") != generation:
                return False
            self._items[key] = (value, now + ttl_seconds)
            return True

    def bump_generation(self, key: str, generation_key: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._items.pop(key, None)
            bumped = int(self._live(generation_key, now) or "0") + 1
            self._items[generation_key] = (str(bumped), now + GENERATION_TTL_SECONDS)

    def ping(self) -> bool:
        return True


def store_for(redis_url: str | None, timeout_seconds: float, key_prefix: str) -> KeyValueStore:
    if not redis_url:
        return MemoryStore()
    client = redis.Redis.from_url(
        redis_url,
        decode_responses=True,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
    )
    return RedisStore(client, key_prefix)
