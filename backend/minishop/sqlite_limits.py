"""Flask-Limiter's storage for the embedded default: rate-limit hits in the shared SQLite file.

The `limits` library has no file or SQLite storage, and its `memory://` one counts per process:
with several gunicorn workers each allowed the full limit, and a restarted worker forgot every
count. This one keeps the counts in the embedded store's file (minishop/kvstore.py), so every
worker and every restart sees the same. All three strategies work: moving window (one row per
hit), fixed window and sliding window counter (counters with an expiry), and so the default
`batched-fixed-window` (security/batched_limits.py), which uses the first two. Each
check-and-hit is one `BEGIN IMMEDIATE` transaction, so two workers cannot both take the last
place in a window; a batch of hits is one `incr` of the fixed window's counter.
"""

from __future__ import annotations

import math
import sqlite3
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from limits.storage import MovingWindowSupport, SlidingWindowCounterSupport, Storage
from limits.storage.base import TimestampedSlidingWindow

from minishop.kvstore import PURGE_INTERVAL_SECONDS, EmbeddedStoreUnavailable, SQLiteFile

SCHEME = "minishop-sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_limit_counters (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rate_limit_counters_expires_at ON rate_limit_counters (expires_at);
CREATE TABLE IF NOT EXISTS rate_limit_hits (
    key TEXT NOT NULL,
    at REAL NOT NULL,
    amount INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_limit_hits_key_at ON rate_limit_hits (key, at);
CREATE INDEX IF NOT EXISTS rate_limit_hits_expires_at ON rate_limit_hits (expires_at);
"""
LIVE_COUNTER = "SELECT count, expires_at FROM rate_limit_counters WHERE key = ? AND expires_at > ?"


def storage_uri(path: str) -> str:
    """The RATELIMIT_STORAGE_URI of the SQLite file at the absolute `path`."""
    return f"{SCHEME}://{urllib.parse.quote(path)}"


class SQLiteStorage(Storage, MovingWindowSupport, SlidingWindowCounterSupport):
    STORAGE_SCHEME = [SCHEME]  # noqa: RUF012  (declared as limits' own storages declare it)

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.file = SQLiteFile(urllib.parse.unquote(urllib.parse.urlparse(uri).path), SCHEMA)
        self._next_purge = 0.0

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return (EmbeddedStoreUnavailable, sqlite3.Error)

    def _purge_if_due(self, connection: sqlite3.Connection, now: float) -> None:
        if now >= self._next_purge:
            connection.execute("DELETE FROM rate_limit_counters WHERE expires_at <= ?", (now,))
            connection.execute("DELETE FROM rate_limit_hits WHERE expires_at <= ?", (now,))
            self._next_purge = now + PURGE_INTERVAL_SECONDS

    @staticmethod
    def _count(connection: sqlite3.Connection, key: str, now: float) -> int:
        row = connection.execute(LIVE_COUNTER, (key, now)).fetchone()
        return 0 if row is None else int(row[0])

    def _add(self, connection: sqlite3.Connection, key: str, expiry: float, amount: int) -> int:
        """Add to a live counter, or start one that lives `expiry` seconds; the new count."""
        now = time.time()
        self._purge_if_due(connection, now)
        row = connection.execute(LIVE_COUNTER, (key, now)).fetchone()
        count, expires_at = (amount, now + expiry) if row is None else (row[0] + amount, row[1])
        connection.execute(
            "INSERT INTO rate_limit_counters (key, count, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET "
            "count = excluded.count, expires_at = excluded.expires_at",
            (key, count, expires_at),
        )
        return int(count)

    # --- fixed window: one counter per window ---

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        with self.file.transaction() as connection:
            return self._add(connection, key, expiry, amount)

    def get(self, key: str) -> int:
        row = self.file.read(LIVE_COUNTER, (key, time.time()))
        return 0 if row is None else int(row[0])

    def get_expiry(self, key: str) -> float:
        now = time.time()
        row = self.file.read(LIVE_COUNTER, (key, now))
        return now if row is None else float(row[1])

    def clear(self, key: str) -> None:
        with self.file.transaction() as connection:
            connection.execute("DELETE FROM rate_limit_counters WHERE key = ?", (key,))
            connection.execute("DELETE FROM rate_limit_hits WHERE key = ?", (key,))

    def reset(self) -> int | None:
        with self.file.transaction() as connection:
            counters = connection.execute("DELETE FROM rate_limit_counters").rowcount
            hits = connection.execute("DELETE FROM rate_limit_hits").rowcount
            return int(counters + hits)

    def check(self) -> bool:
        try:
            return self.file.read("SELECT 1", ()) == (1,)
        except EmbeddedStoreUnavailable:
            return False

    # --- moving window: one row per hit ---

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        with self.file.transaction() as connection:
            now = time.time()
            self._purge_if_due(connection, now)
            (taken,) = connection.execute(
                "SELECT coalesce(sum(amount), 0) FROM rate_limit_hits WHERE key = ? AND at > ?",
                (key, now - expiry),
            ).fetchone()
            if taken + amount > limit:
                return False
            connection.execute(
                "INSERT INTO rate_limit_hits (key, at, amount, expires_at) VALUES (?, ?, ?, ?)",
                (key, now, amount, now + expiry),
            )
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """When the oldest hit in the window happened (now if none), and how many there are."""
        now = time.time()
        row = self.file.read(
            "SELECT min(at), coalesce(sum(amount), 0) FROM rate_limit_hits "
            "WHERE key = ? AND at > ?",
            (key, now - expiry),
        )
        oldest, taken = row if row is not None else (None, 0)
        return (now if oldest is None else float(oldest)), int(taken)

    # --- sliding window counter: this window's and the previous window's counters ---

    @staticmethod
    def _window_ttls(expiry: int, now: float) -> tuple[float, float]:
        """How long the previous window still weighs, and how long the current counter lives."""
        into_window = now % expiry
        return expiry - into_window, 2 * expiry - into_window

    def _sliding_window(
        self, read: Callable[[str], int], key: str, expiry: int, now: float
    ) -> tuple[int, float, int, float]:
        previous_key, current_key = TimestampedSlidingWindow.sliding_window_keys(key, expiry, now)
        previous, current = read(previous_key), read(current_key)
        previous_ttl, current_ttl = self._window_ttls(expiry, now)
        return previous, (previous_ttl if previous else 0.0), current, current_ttl

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        if amount > limit:
            return False
        with self.file.transaction() as connection:
            now = time.time()
            previous, previous_ttl, current, _ = self._sliding_window(
                lambda name: self._count(connection, name, now), key, expiry, now
            )
            weighted = previous * previous_ttl / expiry + current
            if math.floor(weighted) + amount > limit:
                return False
            current_key = TimestampedSlidingWindow.sliding_window_keys(key, expiry, now)[1]
            self._add(connection, current_key, 2 * expiry, amount)
            return True

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        return self._sliding_window(self.get, key, expiry, time.time())

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        for window_key in TimestampedSlidingWindow.sliding_window_keys(key, expiry, time.time()):
            self.clear(window_key)
