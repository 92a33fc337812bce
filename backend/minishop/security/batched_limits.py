"""The `batched-fixed-window` rate-limit strategy: large limits counted locally, flushed in batches.

Every other strategy costs each request one round trip to the shared store (a Lua call on Redis,
a transaction on the embedded store), which is most of what a cached read costs. Here:

- A limit under `EXACT_BELOW` (100) per window — login, orders, uploads — is a moving window in
  the shared store, checked on every request exactly as the `moving-window` strategy does.
- A larger limit (the default per-IP limit) is a fixed window, whose shared state is a plain
  counter that `INCRBY n` adds to in one call. Each worker counts its hits for a key locally and
  adds them to the shared counter in batches of at most B = floor(1 % of the limit) hits: a hit
  that would make the local batch reach B, or that the last known shared count says might not
  fit, is added at once (with the batch before it) and refused if the shared count then exceeds
  the limit; the others are accepted without a round trip. A background thread flushes what is
  pending every `FLUSH_INTERVAL_SECONDS`, so the shared count lags by at most that.

Tolerance: in one window at most `limit + workers x (B - 1)` requests are accepted (a worker stops
accepting locally once a flush shows the limit reached, and holds at most B - 1 unflushed hits).
With the default 300/minute, B = 3: at most 300 + 8 requests a minute with 4 workers. A worker
killed with hits pending loses them (at most B - 1 each). Refused hits count, as in the fixed
window: a client that keeps hammering stays refused until the window resets.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field

from limits import RateLimitItem
from limits.storage import StorageTypes
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter
from limits.util import WindowStats

log = logging.getLogger(__name__)

NAME = "batched-fixed-window"
EXACT_BELOW = 100
BATCH_SHARE = 0.01
FLUSH_INTERVAL_SECONDS = 0.1


def batch_size(limit: int) -> int:
    """Hits a worker may hold before adding them to the shared count (1 = every hit, exact)."""
    return 1 if limit < EXACT_BELOW else max(1, int(limit * BATCH_SHARE))


def tolerance(limit: int, workers: int) -> int:
    """How many requests beyond `limit` one window may accept with `workers` workers."""
    return workers * (batch_size(limit) - 1)


@dataclass
class _Count:
    """One key's count in this worker."""

    expiry: int
    shared: int = 0  # what the shared counter answered at the last flush
    pending: int = 0  # accepted here, not yet added to the shared counter
    flushing: bool = False
    flushed_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one flush at a time


class BatchedRateLimiter(RateLimiter):
    """Registered in `limits.strategies.STRATEGIES` under `NAME` (rate_limits.py does it)."""

    def __init__(self, storage: StorageTypes) -> None:
        super().__init__(storage)
        self.exact = MovingWindowRateLimiter(storage)
        self.fixed = FixedWindowRateLimiter(storage)
        self._counts: dict[str, _Count] = {}
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._store_down = False  # log an outage once, not every interval

    @staticmethod
    def _fits_locally(count: _Count, item: RateLimitItem, cost: int) -> bool:
        return (
            not count.flushing
            and count.pending + cost < batch_size(item.amount)
            and count.shared + count.pending + cost <= item.amount
        )

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        if batch_size(item.amount) == 1:
            return self.exact.hit(item, *identifiers, cost=cost)
        key = item.key_for(*identifiers)
        with self._lock:
            count = self._counts.get(key)
            if count is None:
                count = self._counts[key] = _Count(item.get_expiry())
                self._start_flusher()
            if self._fits_locally(count, item, cost):
                count.pending += cost
                return True
        with count.lock:
            with self._lock:  # the flush this thread waited for may have made room
                if self._fits_locally(count, item, cost):
                    count.pending += cost
                    return True
            return self._flush(key, count, cost) <= item.amount

    def _flush(self, key: str, count: _Count, cost: int) -> int:
        """Add what is pending, plus `cost`, to the shared counter; the caller holds count.lock."""
        with self._lock:
            amount, count.pending, count.flushing = count.pending + cost, 0, True
        try:
            shared = self.storage.incr(key, count.expiry, amount=amount)
        except Exception:
            with self._lock:  # the accepted hits are added by a later flush
                count.pending += amount - cost
                count.flushing = False
            raise
        with self._lock:
            count.shared, count.flushing, count.flushed_at = shared, False, time.monotonic()
        return shared

    def _start_flusher(self) -> None:
        """Started on first use, in the worker (a thread does not survive gunicorn's fork);
        the caller holds self._lock."""
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(
                target=_flush_periodically,
                args=(weakref.ref(self),),
                name="rate-limit-flusher",
                daemon=True,
            )
            self._flusher.start()

    def _stop_flusher_if_idle(self) -> bool:
        """True, the flusher forgotten, once no key is counted here (the next hit restarts it)."""
        with self._lock:
            if self._counts:
                return False
            self._flusher = None
            return True

    def flush_pending(self) -> None:
        """Add every key's pending hits to the shared store; forget keys idle for a window."""
        now = time.monotonic()
        with self._lock:
            counts = list(self._counts.items())
        for key, count in counts:
            if count.pending:
                with count.lock:
                    try:
                        self._flush(key, count, 0)
                        self._store_down = False
                    except Exception as exc:  # the store is down: retried at the next interval
                        if not self._store_down:
                            log.warning("rate-limit flush failed, retrying: %s", exc)
                        self._store_down = True
            elif now - count.flushed_at > count.expiry:
                with self._lock:
                    if not count.pending and not count.flushing:
                        self._counts.pop(key, None)

    def _pending(self, key: str) -> int:
        with self._lock:
            count = self._counts.get(key)
            return 0 if count is None else count.pending

    def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        if batch_size(item.amount) == 1:
            return self.exact.test(item, *identifiers, cost=cost)
        key = item.key_for(*identifiers)
        return self.storage.get(key) + self._pending(key) + cost <= item.amount

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        if batch_size(item.amount) == 1:
            return self.exact.get_window_stats(item, *identifiers)
        key = item.key_for(*identifiers)
        stats = self.fixed.get_window_stats(item, *identifiers)
        return WindowStats(stats.reset_time, max(0, stats.remaining - self._pending(key)))

    def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        key = item.key_for(*identifiers)
        with self._lock:
            self._counts.pop(key, None)
        self.storage.clear(key)  # the moving window's entries and the fixed window's counter


def _flush_periodically(limiter_ref: weakref.ref[BatchedRateLimiter]) -> None:
    """The flusher's loop. It holds the limiter weakly and ends once it is idle or gone, so an
    app that is done with (tests make hundreds) leaves no thread behind for long."""
    while True:
        time.sleep(FLUSH_INTERVAL_SECONDS)
        limiter = limiter_ref()
        if limiter is None:
            return
        limiter.flush_pending()
        if limiter._stop_flusher_if_idle():
            return
        del limiter
