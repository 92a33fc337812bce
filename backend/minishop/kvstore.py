"""Small key-value operations that must be atomic across workers: locks, one-time markers, tokens,
and the catalog cache's documents (minishop/cache.py).

Redis (`SET NX PX`, compare-and-delete in Lua) whenever REDIS_URL is set, which production
requires. Without it (`make run`, the embedded default), `SQLiteStore`: a SQLite file that every
worker opens (EMBEDDED_STORE_PATH, default instance/minishop-kv.db), with the rate-limit counts
beside it (minishop/sqlite_limits.py). A copy per worker, as before, was wrong rather than
harmless: a worker that had cached a product kept its old stock after an order, a nonce used on
one worker was accepted by another, each worker counted its own failed logins, and a restarted
worker forgot all of it (tests/test_embedded_server.py).

Why a shared file rather than a single worker with threads: nonces must outlive a crashed or
restarted worker for their 600 s, and so must the login counts, so one worker would need the file
as well, and with the file shared the number of workers is free. `make bench-embedded` measured
both on one SQLite database (README, Performance): 4 workers x 4 threads served 552 cached reads,
85 orders and 81 logins per second, 1 worker x 16 threads 461, 78 and 60 (1 x 4: 393, 69, 72);
the GIL holds one worker to one core. The default therefore stays 2 workers per core.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import IO, Any, Protocol

import redis
import redis.client
import redis.exceptions
from redis.sentinel import SentinelConnectionPool

from minishop.redis_client import client_for

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
# KEYS: value key, generation key. ARGV: generation ttl ms, then optionally a channel and the
# message to publish on it (in the same round trip).
BUMP_GENERATION = """
redis.call('del', KEYS[1])
redis.call('incr', KEYS[2])
redis.call('pexpire', KEYS[2], ARGV[1])
if ARGV[2] then
    redis.call('publish', ARGV[2], ARGV[3])
end
return 1
"""
# A generation outlives any value written under it, so a bumped one cannot reappear as '0'.
GENERATION_TTL_SECONDS = 7 * 24 * 3600
# The embedded store: how long a writer waits for another, and how often expired rows go.
BUSY_TIMEOUT_SECONDS = 5.0
PURGE_INTERVAL_SECONDS = 60.0


class EmbeddedStoreUnavailable(redis.exceptions.ConnectionError):
    """The SQLite file did not answer: locked past the busy timeout, unreadable or full.

    It is Redis's own "unavailable" error, so every caller that copes with Redis being down (the
    cache reads the database, requests answer 503 "dependency unavailable") copes alike here.
    """


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

    def bump_generation(
        self, key: str, generation_key: str, announce_on: str | None = None
    ) -> None:
        """Delete `key` and make every write prepared under the old generation a no-op; with
        `announce_on`, also publish `key` on that channel (one round trip, not two)."""
        ...

    def forget_prefix(self, prefix: str, generation_key: str) -> None:
        """Delete every key under `prefix` (but `generation_key`) and bump that generation."""
        ...

    def publish(self, channel: str, message: str) -> None:
        """Tell every process listening on `channel` (nothing where there is no pub/sub)."""
        ...

    def subscribe(self, channel: str) -> Subscription | None:
        """Messages published on `channel` from now on; None where there is no pub/sub."""
        ...

    def invalidation_epoch(self) -> int | None:
        """A number every invalidation on this machine changes, cheap enough to read per request;
        None where invalidations travel by pub/sub instead (Redis)."""
        ...

    def ping(self) -> bool: ...


class Subscription(Protocol):
    def get_message(self, timeout_seconds: float) -> str | None:
        """The next message, or None when none came within `timeout_seconds`."""
        ...

    def on_primary(self) -> bool:
        """Whether this subscription still listens where messages are published (after a
        Sentinel failover the old primary, now a replica, may keep the connection)."""
        ...

    def __enter__(self) -> Subscription: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class RedisSubscription:
    """A redis-py PubSub on its own connection, closed on exit."""

    def __init__(self, pubsub: redis.client.PubSub) -> None:
        self.pubsub = pubsub

    def get_message(self, timeout_seconds: float) -> str | None:
        message = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout_seconds)
        return None if message is None else str(message["data"])

    def on_primary(self) -> bool:
        """With Sentinel: is the connection still to the master the sentinels name now (one
        round trip to a sentinel)? A single server is always its own primary."""
        pool = self.pubsub.connection_pool
        connection = self.pubsub.connection
        if not isinstance(pool, SentinelConnectionPool) or connection is None:
            return True
        return bool((connection.host, connection.port) == pool.get_master_address())

    def __enter__(self) -> RedisSubscription:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.pubsub.close()


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

    def bump_generation(
        self, key: str, generation_key: str, announce_on: str | None = None
    ) -> None:
        keys = [self.prefix + key, self.prefix + generation_key]
        args: list[str | int] = [_milliseconds(GENERATION_TTL_SECONDS)]
        if announce_on is not None:
            args += [self.prefix + announce_on, key]
        self._bump_generation(keys=keys, args=args)

    def forget_prefix(self, prefix: str, generation_key: str) -> None:
        """The bump comes first: a rebuild that read before it cannot store afterwards, and one
        that stored before it is still there for the scan to find."""
        full_generation_key = self.prefix + generation_key
        self.client.incr(full_generation_key)
        self.client.pexpire(full_generation_key, _milliseconds(GENERATION_TTL_SECONDS))
        doomed = [
            key
            for key in self.client.scan_iter(match=self.prefix + prefix + "*", count=1000)
            if key != full_generation_key
        ]
        if doomed:
            self.client.delete(*doomed)

    def publish(self, channel: str, message: str) -> None:
        self.client.publish(self.prefix + channel, message)

    def subscribe(self, channel: str) -> RedisSubscription:
        pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe(self.prefix + channel)
        return RedisSubscription(pubsub)

    def invalidation_epoch(self) -> None:
        return None

    def ping(self) -> bool:
        return bool(self.client.ping())


class SQLiteFile:
    """One SQLite file that every process on the machine opens; one connection per thread.

    WAL lets readers run beside the single writer. `synchronous=NORMAL` keeps every commit through
    a crash of the process (a power cut may lose the last few). Writers queue on an flock of a
    lock file next to it, and the kernel wakes the next one as soon as the lock is free; SQLite's
    own busy handler sleeps 1, 2, 5 ... 100 ms between tries instead (benchmarks/
    bench_embedded_store.py, 16 writers: p99 88 ms and slowest 1.0 s with it, 41 ms and 0.1 s with
    the queue). Connections open on first use, so an app that never touches the store (most CLI
    commands) creates no file, and a process forked after one was opened gets its own.
    """

    def __init__(self, path: str, schema: str) -> None:
        self.path = path
        self.schema = schema
        self._local = threading.local()

    def _opened(self) -> tuple[sqlite3.Connection, IO[bytes]]:
        """This thread's connection and its own handle on the writers' lock file."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
            )
            writer_lock = open(f"{self.path}-writer.lock", "ab")  # noqa: SIM115
            # Switching to WAL and creating the tables write too: in the writers' queue, or many
            # threads opening the file at once get "database is locked".
            fcntl.flock(writer_lock, fcntl.LOCK_EX)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.executescript(self.schema)
            finally:
                fcntl.flock(writer_lock, fcntl.LOCK_UN)
            local.writer_lock = writer_lock
            local.connection, local.pid = connection, os.getpid()
        return local.connection, local.writer_lock

    def read(self, sql: str, parameters: tuple[object, ...]) -> tuple[Any, ...] | None:
        """The first row `sql` selects, outside any transaction (WAL readers never wait)."""
        try:
            connection, _ = self._opened()
            row: tuple[Any, ...] | None = connection.execute(sql, parameters).fetchone()
            return row
        except sqlite3.OperationalError as exc:
            raise EmbeddedStoreUnavailable(f"{self.path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` once this thread's turn has come: what the body reads stays true."""
        try:
            connection, writer_lock = self._opened()
            fcntl.flock(writer_lock, fcntl.LOCK_EX)
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                    connection.execute("COMMIT")
                finally:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
            finally:
                fcntl.flock(writer_lock, fcntl.LOCK_UN)
        except sqlite3.OperationalError as exc:
            raise EmbeddedStoreUnavailable(f"{self.path}: {exc}") from exc


class SharedCounter:
    """A 64-bit counter in a small file every process on the machine maps into memory: reading it
    is a memory read (no system call), incrementing takes an flock of the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._opened: tuple[int, IO[bytes], mmap.mmap] | None = None
        self._lock = threading.Lock()

    def _map(self) -> tuple[IO[bytes], mmap.mmap]:
        opened = self._opened
        if opened is None or opened[0] != os.getpid():  # a forked child maps it again
            with self._lock:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                handle = open(self.path, "a+b")  # noqa: SIM115  (kept open with the mapping)
                if os.fstat(handle.fileno()).st_size < 8:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                    if os.fstat(handle.fileno()).st_size < 8:
                        os.ftruncate(handle.fileno(), 8)
                    fcntl.flock(handle, fcntl.LOCK_UN)
                opened = (os.getpid(), handle, mmap.mmap(handle.fileno(), 8))
                self._opened = opened
        return opened[1], opened[2]

    def read(self) -> int:
        value: int = struct.unpack_from("<Q", self._map()[1])[0]
        return value

    def increment(self) -> None:
        handle, mapped = self._map()
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            struct.pack_into("<Q", mapped, 0, struct.unpack_from("<Q", mapped)[0] + 1)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


KV_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at);
"""
UPSERT = (
    "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)


class SQLiteStore:
    """The embedded default: the same operations on a table of the file every worker shares.

    Each write is one `BEGIN IMMEDIATE` transaction, which makes the check-then-write operations
    as atomic as Redis's scripts. Expiry is wall-clock time (the file outlives processes and
    reboots); expired rows are invisible at once and deleted every PURGE_INTERVAL_SECONDS.
    """

    def __init__(self, path: str) -> None:
        self.file = SQLiteFile(path, KV_SCHEMA)
        self._next_purge = 0.0
        # Bumped after every invalidation has committed: the first-level caches of all workers
        # (minishop/cache.py) compare it on each read, instead of Redis's pub/sub.
        self.epoch = SharedCounter(f"{path}-epoch")

    @contextmanager
    def _writing(self) -> Iterator[tuple[sqlite3.Connection, float]]:
        """A write transaction and the time it holds the lock at."""
        with self.file.transaction() as connection:
            now = time.time()
            if now >= self._next_purge:
                connection.execute("DELETE FROM kv WHERE expires_at <= ?", (now,))
                self._next_purge = now + PURGE_INTERVAL_SECONDS
            yield connection, now

    @staticmethod
    def _live(connection: sqlite3.Connection, key: str, now: float) -> str | None:
        row = connection.execute(
            "SELECT value FROM kv WHERE key = ? AND expires_at > ?", (key, now)
        ).fetchone()
        return None if row is None else str(row[0])

    def get(self, key: str) -> str | None:
        row = self.file.read(
            "SELECT value FROM kv WHERE key = ? AND expires_at > ?", (key, time.time())
        )
        return None if row is None else str(row[0])

    def set(self, key: str, value: str, ttl_seconds: float) -> None:
        with self._writing() as (connection, now):
            connection.execute(UPSERT, (key, value, now + ttl_seconds))

    def set_if_absent(self, key: str, value: str, ttl_seconds: float) -> bool:
        with self._writing() as (connection, now):
            if self._live(connection, key, now) is not None:
                return False
            connection.execute(UPSERT, (key, value, now + ttl_seconds))
            return True

    def delete_if_equals(self, key: str, value: str) -> bool:
        with self._writing() as (connection, now):
            deleted = connection.execute(
                "DELETE FROM kv WHERE key = ? AND value = ? AND expires_at > ?", (key, value, now)
            )
            return deleted.rowcount == 1

    def generation(self, generation_key: str) -> str:
        return self.get(generation_key) or "0"

    def set_if_generation(
        self, key: str, value: str, ttl_seconds: float, generation_key: str, generation: str
    ) -> bool:
        with self._writing() as (connection, now):
            if (self._live(connection, generation_key, now) or "0") != generation:
                return False
            connection.execute(UPSERT, (key, value, now + ttl_seconds))
            return True

    def bump_generation(
        self, key: str, generation_key: str, announce_on: str | None = None
    ) -> None:
        """`announce_on` needs nothing here: the epoch tells the other workers."""
        with self._writing() as (connection, now):
            connection.execute("DELETE FROM kv WHERE key = ?", (key,))
            bumped = int(self._live(connection, generation_key, now) or "0") + 1
            connection.execute(UPSERT, (generation_key, str(bumped), now + GENERATION_TTL_SECONDS))
        self.epoch.increment()

    def forget_prefix(self, prefix: str, generation_key: str) -> None:
        with self._writing() as (connection, now):
            connection.execute(
                "DELETE FROM kv WHERE substr(key, 1, ?) = ? AND key != ?",
                (len(prefix), prefix, generation_key),
            )
            bumped = int(self._live(connection, generation_key, now) or "0") + 1
            connection.execute(UPSERT, (generation_key, str(bumped), now + GENERATION_TTL_SECONDS))
        self.epoch.increment()

    def publish(self, channel: str, message: str) -> None:
        """No pub/sub in a file: `invalidation_epoch` tells the other workers instead."""

    def subscribe(self, channel: str) -> None:
        return None

    def invalidation_epoch(self) -> int:
        return self.epoch.read()

    def ping(self) -> bool:
        return self.file.read("SELECT 1", ()) == (1,)


def store_for(
    redis_url: str | None, timeout_seconds: float, key_prefix: str, embedded_path: str
) -> KeyValueStore:
    """Redis when REDIS_URL is set (one server, TLS or Sentinel: minishop/redis_client.py), else
    the SQLite file at `embedded_path`."""
    if not redis_url:
        return SQLiteStore(embedded_path)
    return RedisStore(client_for(redis_url, timeout_seconds), key_prefix)
