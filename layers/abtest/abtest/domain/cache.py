"""A tiny per-container cache with a time-to-live, safe to share between threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TTLCache(Generic[T]):
    """Holds one value produced by `load`, reloaded once it is older than `ttl` seconds.

    If a reload fails, the error propagates and the stale value stays available through `stale()`,
    so a caller can choose to fail open with the last good value.

    The age is measured on the wall clock: a monotonic clock restarts with a SnapStart snapshot, so a
    value loaded before it could look fresh long after. A clock that went back (a restore, an NTP
    step) counts as expired.
    """

    def __init__(self, load: Callable[[], T], ttl: float, clock: Callable[[], float] = time.time) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._loaded_at: float | None = None

    def get(self) -> T:
        """The cached value, reloading it first if it has expired (one loader at a time)."""
        with self._lock:
            now = self._clock()
            if self._value is None or self._loaded_at is None or not 0 <= now - self._loaded_at < self._ttl:
                self._value = self._load()
                self._loaded_at = now
            return self._value

    def stale(self) -> T | None:
        """The last value loaded, however old, or None if nothing ever loaded."""
        return self._value

    def invalidate(self) -> None:
        """Forget the loading time, so the next get() reloads (the stale value is kept)."""
        with self._lock:
            self._loaded_at = None
