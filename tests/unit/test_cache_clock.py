"""TTLCache ages on the wall clock (a SnapStart restore restarts the monotonic one) and treats a clock
that went backwards as expired."""

from __future__ import annotations

import time

from abtest.domain.cache import TTLCache


def test_the_default_clock_is_the_wall_clock() -> None:
    cache = TTLCache(lambda: 1, ttl=10)
    assert cache._clock is time.time


def test_a_clock_that_goes_back_reloads_and_a_fresh_value_is_kept() -> None:
    now = [1000.0]
    loads: list[float] = []

    def load() -> float:
        loads.append(now[0])
        return now[0]

    cache = TTLCache(load, ttl=10, clock=lambda: now[0])
    assert cache.get() == 1000.0
    now[0] = 1005.0
    assert cache.get() == 1000.0  # fresh: kept
    now[0] = 900.0  # restored from a snapshot taken "later", or an NTP step back
    assert cache.get() == 900.0
    now[0] = 911.0
    assert cache.get() == 911.0  # expired after its TTL
    assert loads == [1000.0, 900.0, 911.0]
