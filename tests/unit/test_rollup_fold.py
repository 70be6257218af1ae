"""fold(): folding windows of recomputed users one after another equals computing from all events at
once, with the attribution rule (conversions count at or after the user's first exposure)."""

from __future__ import annotations

import itertools
import math
import uuid
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abtest.analysis.rollup import (
    ExposureTotals,
    Fold,
    FoldError,
    MetricStats,
    UserMetric,
    UserState,
    fold,
)

EXPERIMENT = uuid.UUID(int=1)
VARIANTS = [uuid.UUID(int=10), uuid.UUID(int=11)]
USERS = [f"u{i}" for i in range(6)]
METRICS = ["purchase", "revenue"]
times = st.integers(min_value=0, max_value=20)  # event times (occurred_at), arriving in any order

event = st.one_of(
    st.tuples(st.just("exposure"), st.sampled_from(USERS), times),
    st.tuples(
        st.just("conversion"),
        st.sampled_from(USERS),
        times,
        st.sampled_from(METRICS),
        st.floats(min_value=-50, max_value=500, allow_nan=False).map(lambda x: round(x, 2)),
    ),
)

UserStates = dict[tuple[uuid.UUID, str], UserState]
UserMetrics = dict[tuple[uuid.UUID, str, str], UserMetric]


def variant_of(user: str) -> uuid.UUID:
    return VARIANTS[int(user[1:]) % 2]


def recompute(events: list[tuple[Any, ...]], users: set[str]) -> tuple[UserStates, UserMetrics]:
    """What the repository's recompute query returns for `users`, from the events stored so far."""
    states: UserStates = {}
    metrics: UserMetrics = {}
    for user in users:
        exposure_times = [e[2] for e in events if e[0] == "exposure" and e[1] == user]
        first = min(exposure_times) if exposure_times else None
        states[(EXPERIMENT, user)] = UserState(variant_of(user), len(exposure_times))
        for e in events:
            if e[0] != "conversion" or e[1] != user:
                continue
            metric = metrics.setdefault((EXPERIMENT, user, e[3]), UserMetric(variant_of(user)))
            if first is not None and e[2] >= first:
                metric.count += 1
                metric.total += e[4]
            else:
                metric.unattributed += 1
    return states, metrics


def direct(
    events: list[tuple[Any, ...]],
) -> tuple[dict[uuid.UUID, ExposureTotals], dict[tuple[uuid.UUID, str], MetricStats]]:
    """Statistics straight from the definition: per exposed user, attributed conversions only."""
    first: dict[str, int] = {}
    exposures: dict[str, int] = defaultdict(int)
    for e in events:
        if e[0] == "exposure":
            exposures[e[1]] += 1
            first[e[1]] = min(first.get(e[1], e[2]), e[2])
    variants = {v: ExposureTotals() for v in VARIANTS}
    for user, count in exposures.items():
        variants[variant_of(user)].exposures += count
        variants[variant_of(user)].users += 1
    totals: dict[tuple[str, str], list[float]] = defaultdict(list)
    metrics: dict[tuple[uuid.UUID, str], MetricStats] = {}
    for e in events:
        if e[0] != "conversion":
            continue
        stats = metrics.setdefault((variant_of(e[1]), e[3]), MetricStats())
        if e[1] in first and e[2] >= first[e[1]]:
            totals[(e[1], e[3])].append(e[4])
        else:
            stats.unattributed += 1
    for (user, metric), values in totals.items():
        stats = metrics[(variant_of(user), metric)]
        stats.count += len(values)
        stats.sum += sum(values)
        stats.sum_squares += sum(values) ** 2
        stats.users += 1
    return variants, {k: v for k, v in metrics.items() if v != MetricStats()}


class Store:
    """The rollup tables, in memory."""

    def __init__(self) -> None:
        self.users: UserStates = {}
        self.user_metrics: UserMetrics = {}
        self.variants: dict[uuid.UUID, ExposureTotals] = {v: ExposureTotals() for v in VARIANTS}
        self.metrics: dict[tuple[uuid.UUID, str], MetricStats] = {}

    def fold_users(self, events: list[tuple[Any, ...]], users: set[str]) -> Fold:
        new_states, new_metrics = recompute(events, users)
        old_states = {k: v for k, v in self.users.items() if k[1] in users}
        old_metrics = {k: v for k, v in self.user_metrics.items() if k[1] in users}
        return fold(old_states, old_metrics, new_states, new_metrics)

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
        touched = {e[1] for e in events[low:high]}
        store.apply(store.fold_users(events[:high], touched))

    variants, metrics = direct(events)
    assert store.variants == variants
    assert {k for k, v in store.metrics.items() if v != MetricStats()} == set(metrics)
    for key, expected in metrics.items():
        got = store.metrics[key]
        assert (got.count, got.users, got.unattributed) == (
            expected.count,
            expected.users,
            expected.unattributed,
        )
        assert got.sum == pytest.approx(expected.sum, rel=1e-9, abs=1e-6)
        assert got.sum_squares == pytest.approx(expected.sum_squares, rel=1e-9, abs=1e-6)


def test_conversions_before_the_first_exposure_do_not_count_and_show_as_unattributed() -> None:
    store = Store()
    events: list[tuple[Any, ...]] = [("conversion", "u0", 1, "purchase", 5.0)]
    store.apply(store.fold_users(events, {"u0"}))
    assert store.metrics[(VARIANTS[0], "purchase")] == MetricStats(unattributed=1)

    # Exposed at t=3: the conversion at t=1 stays unattributed; one at t=3 counts.
    events += [("exposure", "u0", 3), ("conversion", "u0", 3, "purchase", 2.0)]
    store.apply(store.fold_users(events, {"u0"}))
    assert store.metrics[(VARIANTS[0], "purchase")] == MetricStats(
        count=1, sum=2.0, sum_squares=4.0, users=1, unattributed=1
    )
    assert store.variants[VARIANTS[0]] == ExposureTotals(exposures=1, users=1)

    # A late exposure stamped t=0 moves the first exposure earlier: now both count.
    events.append(("exposure", "u0", 0))
    store.apply(store.fold_users(events, {"u0"}))
    assert store.metrics[(VARIANTS[0], "purchase")] == MetricStats(
        count=2, sum=7.0, sum_squares=49.0, users=1, unattributed=0
    )


def test_folding_a_user_again_changes_nothing() -> None:
    store = Store()
    events: list[tuple[Any, ...]] = [("exposure", "u1", 0), ("conversion", "u1", 1, "revenue", 3.0)]
    store.apply(store.fold_users(events, {"u1"}))
    again = store.fold_users(events, {"u1"})
    assert all(delta == ExposureTotals() for delta in again.variants.values())
    assert all(delta == MetricStats() for delta in again.metrics.values())


def test_a_non_finite_total_is_refused_unless_the_caller_reports_it() -> None:
    key = (EXPERIMENT, "u0")
    states = {key: UserState(VARIANTS[0], 1)}
    metrics = {(*key, "revenue"): UserMetric(VARIANTS[0], 2, math.inf)}
    with pytest.raises(FoldError):
        fold({}, {}, states, metrics)
    lenient = fold({}, {}, states, metrics, check_finite=False)
    assert math.isinf(lenient.metrics[(EXPERIMENT, VARIANTS[0], "revenue")].sum)
