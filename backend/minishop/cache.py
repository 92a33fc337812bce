"""Cache-aside for hot catalog reads, on Redis through the key-value store.

Chosen over Flask-Caching because the defences below need atomic Redis operations that its API
does not offer (SET NX PX locks, generation-guarded writes), and redis-py already gives them.

- Avalanche: every TTL gets random extra time (CACHE_TTL_JITTER), so keys written together do
  not expire together.
- Penetration: a missing row is cached too, as a short-lived negative entry.
- Breakdown: an expired entry stays readable for CACHE_STALE_SECONDS. One request rebuilds it
  under a short lock while the others serve the stale copy; when there is no copy at all, they
  wait briefly for the rebuilder instead of all querying the database.
- Writes: invalidation bumps a generation counter; a rebuild that read the database before the
  bump cannot store its stale result afterwards (the classic cache-aside race).
- Redis down: reads go to the database, logged; never an error for the caller.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from minishop.config import Settings
from minishop.kvstore import KeyValueStore
from minishop.observability import metrics

log = logging.getLogger(__name__)

Document = dict[str, Any]
LOCK_SECONDS = 2.0
WAIT_SECONDS = 0.5
POLL_SECONDS = 0.01


@dataclass(frozen=True)
class CachePolicy:
    enabled: bool
    negative_ttl: float
    jitter: float
    stale_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> CachePolicy:
        return cls(
            enabled=settings.CACHE_ENABLED,
            negative_ttl=settings.CACHE_NEGATIVE_TTL_SECONDS,
            jitter=settings.CACHE_TTL_JITTER,
            stale_seconds=settings.CACHE_STALE_SECONDS,
        )


@dataclass(frozen=True)
class Entry:
    value: Document | None
    fresh_until: float


class ReadThroughCache:
    def __init__(self, store: KeyValueStore, policy: CachePolicy) -> None:
        self.store = store
        self.policy = policy

    def get(self, name: str, key: str, ttl: float, load: Callable[[], Document | None]) -> Any:
        """The cached document for (name, key), loading it with `load` when needed."""
        if not self.policy.enabled:
            return load()
        doc_key = f"cache:{name}:{key}"
        try:
            return self._get(name, doc_key, ttl, load)
        except redis.RedisError as exc:
            log.warning("cache %s unavailable, reading the database: %s", name, type(exc).__name__)
            metrics.CACHE_FALLBACKS.labels(name).inc()
            return load()

    def invalidate(self, name: str, key: str) -> None:
        doc_key = f"cache:{name}:{key}"
        try:
            self.store.bump_generation(doc_key, f"{doc_key}:gen")
        except redis.RedisError as exc:
            log.warning("cache %s: could not invalidate %s: %s", name, key, type(exc).__name__)

    def _read(self, doc_key: str) -> Entry | None:
        raw = self.store.get(doc_key)
        if raw is None:
            return None
        stored = json.loads(raw)
        return Entry(stored["value"], float(stored["fresh_until"]))

    def _get(self, name: str, doc_key: str, ttl: float, load: Callable[[], Document | None]) -> Any:
        entry = self._read(doc_key)
        hit = entry is not None and time.time() < entry.fresh_until
        metrics.record_cache(name, hit)
        if entry is not None and hit:
            return entry.value
        owner = uuid.uuid4().hex
        if self.store.set_if_absent(f"{doc_key}:lock", owner, LOCK_SECONDS):
            try:
                return self._rebuild(doc_key, ttl, load)
            finally:
                self.store.delete_if_equals(f"{doc_key}:lock", owner)
        if entry is not None:
            return entry.value  # someone is rebuilding: the stale copy will do meanwhile
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            entry = self._read(doc_key)
            if entry is not None:
                return entry.value
        return load()  # the rebuilder is stuck; do not make this caller wait any longer

    def _rebuild(self, doc_key: str, ttl: float, load: Callable[[], Document | None]) -> Any:
        generation = self.store.generation(f"{doc_key}:gen")
        value = load()
        lifetime = (self.policy.negative_ttl if value is None else ttl) * (
            1 + random.uniform(0, self.policy.jitter)  # noqa: S311  (spreading expiry, not secrecy)
        )
        document = json.dumps({"value": value, "fresh_until": time.time() + lifetime})
        self.store.set_if_generation(
            doc_key, document, lifetime + self.policy.stale_seconds, f"{doc_key}:gen", generation
        )
        return value
