"""fold(): folding windows of events one after another equals computing from all events at once."""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abtest.analysis.rollup import (
    ExposureTotals,
    Fold,
    MetricStats,
    NewConversions,
    NewExposures,
    UserMetric,
    UserState,
    fold,
)

EXPERIMENT = uuid.UUID(int=1)
VARIANTS = [uuid.UUID(int=10), uuid.UUID(int=11)]
USERS = [f"u{i}" for i in range(6)]
METRICS = ["purchase", "revenue"]

event = st.one_of(
    st.tuples(st.just("exposure"), st.sampled_from(USERS)),
    st.tuples(
        st.just("conversion"),
        st.sampled_from(USERS),
        st.sampled_from(METRICS),
        st.floats(min_value=-50, max_value=500, allow_nan=False).map(lambda x: round(x, 2)),
    ),
)


def variant_of(user: str) -> uuid.UUID:
    return VARIANTS[int(user[1:]) % 2]


def direct(
    events: list[tuple[Any, ...]],
) -> tuple[dict[uuid.UUID, ExposureTotals], dict[tuple[uuid.UUID, str], MetricStats]]:
    """Statistics straight from the definition: per exposed user totals."""
    exposures: dict[str, int] = defaultdict(int)
    totals: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e[0] == "exposure":
            exposures[e[1]] += 1
        else:
            totals[(e[1], e[2])].append(e[3])
    variants = {v: ExposureTotals() for v in VARIANTS}
    for user, count in exposures.items():
        variants[variant_of(user)].exposures += count
        variants[variant_of(user)].users += 1
    metrics: dict[tuple[uuid.UUID, str], MetricStats] = {}
    for (user, metric), values in totals.items():
        if user not in exposures:
            continue
        stats = metrics.setdefault((variant_of(user), metric), MetricStats())
        stats.count += len(values)
        stats.sum += sum(values)
        stats.sum_squares += sum(values) ** 2
        stats.users += 1
    return variants, metrics


def window(events: list[tuple[Any, ...]]) -> tuple[list[NewExposures], list[NewConversions]]:
    """Group a window's events as the repository's GROUP BY does."""
    exposures: dict[str, int] = defaultdict(int)
    conversions: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e[0] == "exposure":
            exposures[e[1]] += 1
        else:
            conversions[(e[1], e[2])].append(e[3])
    return (
        [NewExposures(EXPERIMENT, u, variant_of(u), n) for u, n in exposures.items()],
        [
            NewConversions(EXPERIMENT, u, m, variant_of(u), len(v), sum(v))
            for (u, m), v in conversions.items()
        ],
    )


class Store:
    """The rollup tables, in memory."""

    def __init__(self) -> None:
        self.users: dict[tuple[uuid.UUID, str], UserState] = {}
        self.user_metrics: dict[tuple[uuid.UUID, str, str], UserMetric] = {}
        self.variants: dict[uuid.UUID, ExposureTotals] = {v: ExposureTotals() for v in VARIANTS}
        self.metrics: dict[tuple[uuid.UUID, str], MetricStats] = {}

    def apply(self, result: Fold) -> None:
        self.users.update(result.users)
        self.user_metrics.update(result.user_metrics)
        for (_, variant), delta in result.variants.items():
            self.variants[variant].add(delta)
        for (_, variant, metric), mdelta in result.metrics.items():
            self.metrics.setdefault((variant, metric), MetricStats()).add(mdelta)


@settings(max_examples=300)
@given(st.lists(event, max_size=40), st.lists(st.integers(min_value=0, max_value=40), max_size=5))
def test_folding_windows_equals_the_direct_computation(
    events: list[tuple[Any, ...]], cuts: list[int]
) -> None:
    store = Store()
    bounds = sorted({0, len(events), *(c for c in cuts if c <= len(events))})
    for low, high in itertools.pairwise(bounds):
        exposures, conversions = window(events[low:high])
        store.apply(fold(store.users, store.user_metrics, exposures, conversions))

    variants, metrics = direct(events)
    assert store.variants == variants
    assert set(k for k, v in store.metrics.items() if v != MetricStats()) == set(metrics)
    for key, expected in metrics.items():
        got = store.metrics[key]
        assert (got.count, got.users) == (expected.count, expected.users)
        assert got.sum == pytest.approx(expected.sum, rel=1e-9, abs=1e-6)
        assert got.sum_squares == pytest.approx(expected.sum_squares, rel=1e-9, abs=1e-6)


def test_conversions_before_exposure_count_once_the_user_is_exposed() -> None:
    store = Store()
    exposures, conversions = window(
        [("conversion", "u0", "purchase", 5.0), ("conversion", "u0", "purchase", 2.0)]
    )
    store.apply(fold(store.users, store.user_metrics, exposures, conversions))
    assert store.metrics.get((VARIANTS[0], "purchase"), MetricStats()) == MetricStats()

    exposures, conversions = window([("exposure", "u0")])
    store.apply(fold(store.users, store.user_metrics, exposures, conversions))
    assert store.metrics[(VARIANTS[0], "purchase")] == MetricStats(
        count=2, sum=7.0, sum_squares=49.0, users=1
    )
    assert store.variants[VARIANTS[0]] == ExposureTotals(exposures=1, users=1)
