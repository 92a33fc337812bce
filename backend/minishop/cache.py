"""Cache-aside for hot catalog reads: a small in-process first level in front of the key-value
store (Redis, or the embedded SQLite file), holding response bodies ready to send.

Chosen over Flask-Caching because the defences below need atomic Redis operations that its API
does not offer (SET NX PX locks, generation-guarded writes), and redis-py already gives them.

What is cached is a `Body`: the JSON of a response's `data`, exactly as the API sends it, and its
strong ETag (a hash of those bytes, computed once when the body is built). A hit is spliced into
the envelope as it is: no validation, no encoding per request.

- Avalanche: every TTL gets random extra time (CACHE_TTL_JITTER), so keys written together do
  not expire together.
- Penetration: a missing row is cached too, as a short-lived negative entry.
- Breakdown: an expired entry stays readable for CACHE_STALE_SECONDS. One request rebuilds it
  under a short lock while the others serve the stale copy; when there is no copy at all, they
  wait briefly for the rebuilder instead of all querying the database. A rebuild that fails (the
  database is down) serves the stale copy too, while there is one.
- Writes: invalidation bumps a generation counter; a rebuild that read the database before the
  bump cannot store its stale result afterwards (the classic cache-aside race). A namespace
  cached `whole` (list pages) shares one counter and is forgotten all at once.
- Redis down: reads go to the database, logged; never an error for the caller.

The first level (`LocalCache`, per worker process): at most CACHE_LOCAL_MAX_BYTES of bodies, each
kept at most CACHE_LOCAL_TTL_SECONDS (0 turns it off). Coherence bound: a change is visible on
every worker at most CACHE_LOCAL_TTL_SECONDS (default 1 s) after the invalidation that follows its
commit, whatever else fails. In practice it is much sooner:
- Redis: invalidations are also published (pub/sub) and every worker evicts the key when the
  message arrives, within milliseconds; a worker that (re)subscribes empties its first level,
  since messages sent meanwhile are lost, and the TTL covers a message lost otherwise.
- Embedded store (no pub/sub, one machine): every invalidation increments a counter in a file
  every worker maps into memory (`kvstore.SharedCounter`); a worker that sees it changed empties
  its first level before answering, so the next read after the invalidation returns is current.
The worker that invalidates evicts its own copy at once, and a body read from the store while an
invalidation happened is not kept (`LocalCache.epoch`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import redis

from minishop.config import Settings
from minishop.kvstore import KeyValueStore
from minishop.observability import metrics

log = logging.getLogger(__name__)

LOCK_SECONDS = 2.0
WAIT_SECONDS = 0.5
POLL_SECONDS = 0.01
# Entries are response bodies since format 2 (before: JSON documents under "cache:"): in a rolling
# deploy, old and new workers sharing a Redis must never read each other's entries.
KEY_PREFIX = "cache:2:"
INVALIDATIONS_CHANNEL = "cache:invalidations"
# A first-level entry's bookkeeping, counted against CACHE_LOCAL_MAX_BYTES besides its body.
ENTRY_OVERHEAD_BYTES = 200
LISTEN_TIMEOUT_SECONDS = 1.0
RECONNECT_SECONDS = 1.0
# How often the subscriber asks the sentinels whether it still listens on the primary.
PRIMARY_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class CachePolicy:
    enabled: bool
    negative_ttl: float
    jitter: float
    stale_seconds: float
    local_ttl: float = 0.0
    local_max_bytes: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> CachePolicy:
        return cls(
            enabled=settings.CACHE_ENABLED,
            negative_ttl=settings.CACHE_NEGATIVE_TTL_SECONDS,
            jitter=settings.CACHE_TTL_JITTER,
            stale_seconds=settings.CACHE_STALE_SECONDS,
            local_ttl=settings.CACHE_LOCAL_TTL_SECONDS,
            local_max_bytes=settings.CACHE_LOCAL_MAX_BYTES,
        )


def strong_etag(data: bytes) -> str:
    """A strong validator for `data`: equal bytes, equal tag, on every worker."""
    return '"' + hashlib.blake2b(data, digest_size=16).hexdigest() + '"'


@dataclass(frozen=True)
class Body:
    """A cached response body: `data` is the JSON of the envelope's `data`; None means there is
    nothing to show (a negative entry)."""

    data: bytes | None
    etag: str

    @classmethod
    def of(cls, data: bytes | None) -> Body:
        return cls(data, "" if data is None else strong_etag(data))


@dataclass(frozen=True)
class Entry:
    body: Body
    fresh_until: float

    def dumps(self) -> str:
        """One line of freshness and tag, then the body (ASCII JSON: the API escapes the rest)."""
        data = "" if self.body.data is None else self.body.data.decode()
        return f"{self.fresh_until!r} {self.body.etag or '-'}\n{data}"

    @classmethod
    def loads(cls, raw: str) -> Entry:
        head, _, data = raw.partition("\n")
        fresh_until, etag = head.split(" ")
        if etag == "-":
            return cls(Body(None, ""), float(fresh_until))
        return cls(Body(data.encode(), etag), float(fresh_until))


class LocalCache:
    """A worker's first level: key -> (expiry on the monotonic clock, body).

    Bounded by bytes; the oldest insertion goes first (with a TTL of a second, what is hot is
    re-inserted all the time, so insertion order is close enough to recency and a hit needs no
    lock). Reads are single dict lookups, atomic under the GIL; writes take the lock.
    """

    def __init__(self, ttl: float, max_bytes: int) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.size = 0
        # Bumped by every eviction: a body read from the store before one is not kept after it.
        self.epoch = 0
        self._entries: OrderedDict[str, tuple[float, Body]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.max_bytes > 0

    def get(self, key: str) -> Body | None:
        found = self._entries.get(key)
        if found is None or found[0] <= time.monotonic():
            return None
        return found[1]

    @staticmethod
    def _cost(body: Body) -> int:
        return ENTRY_OVERHEAD_BYTES + (0 if body.data is None else len(body.data))

    def put(self, key: str, body: Body, read_at_epoch: int) -> None:
        """Keep `body`, read from the store when `epoch` was `read_at_epoch`, unless something
        was evicted since (it may have been this key, invalidated while the body was on its way)."""
        cost = self._cost(body)
        if not self.enabled or cost > self.max_bytes:
            return
        with self._lock:
            if self.epoch != read_at_epoch:
                return
            self._pop(key)
            self._entries[key] = (time.monotonic() + self.ttl, body)
            self.size += cost
            while self.size > self.max_bytes:
                _, (_, oldest) = self._entries.popitem(last=False)
                self.size -= self._cost(oldest)

    def _pop(self, key: str) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self.size -= self._cost(found[1])

    def evict(self, key_or_prefix: str) -> None:
        """One key, or every key starting with what precedes a trailing `*`."""
        with self._lock:
            self.epoch += 1
            if not key_or_prefix.endswith("*"):
                self._pop(key_or_prefix)
                return
            prefix = key_or_prefix[:-1]
            for key in [key for key in self._entries if key.startswith(prefix)]:
                self._pop(key)

    def clear(self) -> None:
        with self._lock:
            self.epoch += 1
            self._entries.clear()
            self.size = 0


class ReadThroughCache:
    def __init__(self, store: KeyValueStore, policy: CachePolicy) -> None:
        self.store = store
        self.policy = policy
        self.local = LocalCache(policy.local_ttl, policy.local_max_bytes)
        self._listener_pid: int | None = None
        self._listener_lock = threading.Lock()
        self._seen_epoch: int | None = None

    def get(
        self,
        name: str,
        key: str,
        ttl: float,
        load: Callable[[], bytes | None],
        *,
        whole: bool = False,
    ) -> Body:
        """The cached body for (name, key), built with `load` when needed.

        `whole`: the namespace's entries are only forgotten together (`forget_all`).
        """
        if not self.policy.enabled:
            return Body.of(load())
        body = self.peek(name, key)
        if body is not None:
            return body
        doc_key = f"{KEY_PREFIX}{name}:{key}"
        if self.local.enabled:
            self._listen_for_invalidations()
        epoch = self.local.epoch
        generation_key = f"{KEY_PREFIX}{name}:gen" if whole else f"{doc_key}:gen"
        try:
            body = self._get(name, doc_key, generation_key, ttl, load)
        except redis.RedisError as exc:
            log.warning("cache %s unavailable, reading the database: %s", name, type(exc).__name__)
            metrics.CACHE_FALLBACKS.labels(name).inc()
            body = Body.of(load())
        self._follow_epoch()  # an invalidation while the body was on its way: do not keep it
        self.local.put(doc_key, body, epoch)
        return body

    def peek(self, name: str, key: str) -> Body | None:
        """The body this worker's first level holds for (name, key), counted as a hit; None when
        it holds none (then `get` asks the store). Nothing but a dict lookup on a hit."""
        if not self.policy.enabled:
            return None
        self._follow_epoch()
        body = self.local.get(f"{KEY_PREFIX}{name}:{key}")
        if body is not None:
            metrics.record_cache(name, True)
        return body

    def _follow_epoch(self) -> None:
        """The embedded store: any invalidation on the machine empties every first level."""
        if not self.local.enabled:
            return
        epoch = self.store.invalidation_epoch()
        if epoch is not None and epoch != self._seen_epoch:
            self._seen_epoch = epoch
            self.local.clear()

    def invalidate(self, name: str, key: str) -> None:
        doc_key = f"{KEY_PREFIX}{name}:{key}"
        self.local.evict(doc_key)
        try:
            self.store.bump_generation(doc_key, f"{doc_key}:gen", announce_on=INVALIDATIONS_CHANNEL)
        except redis.RedisError as exc:
            log.warning("cache %s: could not invalidate %s: %s", name, key, type(exc).__name__)

    def invalidate_all(self, name: str) -> None:
        """Forget every entry of a namespace cached `whole`."""
        prefix = f"{KEY_PREFIX}{name}:"
        self.local.evict(prefix + "*")
        try:
            self.store.forget_prefix(prefix, f"{KEY_PREFIX}{name}:gen")
            self.store.publish(INVALIDATIONS_CHANNEL, prefix + "*")
        except redis.RedisError as exc:
            log.warning("cache %s: could not invalidate it: %s", name, type(exc).__name__)

    def _read(self, doc_key: str) -> Entry | None:
        raw = self.store.get(doc_key)
        return None if raw is None else Entry.loads(raw)

    def _get(
        self,
        name: str,
        doc_key: str,
        generation_key: str,
        ttl: float,
        load: Callable[[], bytes | None],
    ) -> Body:
        entry = self._read(doc_key)
        hit = entry is not None and time.time() < entry.fresh_until
        metrics.record_cache(name, hit)
        if entry is not None and hit:
            return entry.body
        owner = uuid.uuid4().hex
        if self.store.set_if_absent(f"{doc_key}:lock", owner, LOCK_SECONDS):
            try:
                return self._rebuild(doc_key, generation_key, ttl, load)
            except Exception as exc:
                # Whatever failed (the database, mostly), the stale copy beats an error.
                if entry is None:
                    raise
                log.warning("cache %s: rebuild failed, serving stale: %s", name, type(exc).__name__)
                return entry.body
            finally:
                self.store.delete_if_equals(f"{doc_key}:lock", owner)
        if entry is not None:
            return entry.body  # someone is rebuilding: the stale copy will do meanwhile
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            entry = self._read(doc_key)
            if entry is not None:
                return entry.body
        return Body.of(load())  # the rebuilder is stuck; do not make this caller wait any longer

    def _rebuild(
        self, doc_key: str, generation_key: str, ttl: float, load: Callable[[], bytes | None]
    ) -> Body:
        generation = self.store.generation(generation_key)
        body = Body.of(load())
        lifetime = (self.policy.negative_ttl if body.data is None else ttl) * (
            1 + random.uniform(0, self.policy.jitter)  # noqa: S311  (spreading expiry, not secrecy)
        )
        entry = Entry(body, time.time() + lifetime)
        self.store.set_if_generation(
            doc_key, entry.dumps(), lifetime + self.policy.stale_seconds, generation_key, generation
        )
        return body

    def _listen_for_invalidations(self) -> None:
        """Start this process's subscriber once (again in a forked child)."""
        if self._listener_pid == os.getpid():
            return
        with self._listener_lock:
            if self._listener_pid == os.getpid():
                return
            self._listener_pid = os.getpid()
            threading.Thread(target=self._listen, name="cache-invalidations", daemon=True).start()

    def _listen(self) -> None:
        """Evict what other workers invalidate, for as long as the process lives (Redis only)."""
        failing = False
        while True:
            try:
                subscription = self.store.subscribe(INVALIDATIONS_CHANNEL)
                if subscription is None:
                    return  # the embedded store: the TTL is the bound
                with subscription:
                    self.local.clear()  # what was published while not listening is lost
                    if failing:
                        log.info("cache invalidations: listening again")
                        failing = False
                    checked = time.monotonic()
                    while True:
                        key = subscription.get_message(LISTEN_TIMEOUT_SECONDS)
                        if key is not None:
                            self.local.evict(key)
                        if time.monotonic() - checked >= PRIMARY_CHECK_SECONDS:
                            checked = time.monotonic()
                            if not subscription.on_primary():
                                log.info("cache invalidations: the primary moved, listening again")
                                break
            except redis.RedisError as exc:
                if not failing:  # once per outage, not every second
                    log.warning("cache invalidations: %s, retrying", type(exc).__name__)
                    failing = True
                self.local.clear()
                time.sleep(RECONNECT_SECONDS)
