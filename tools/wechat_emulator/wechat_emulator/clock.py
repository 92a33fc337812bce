"""The emulator's clock: real time plus an offset that tests move forward instead of sleeping."""

from __future__ import annotations

import threading
import time


class Clock:
    """Unix seconds, shifted forward by everything `advance` added since the last `reset`.

    Every expiry in the emulator (codes, tokens, quotas, visits) reads this clock, so a test can
    make a 5-minute code or a 2-hour token expire with one control call.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward (never back: expired things must stay expired); returns now."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
            return time.time() + self._offset

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
