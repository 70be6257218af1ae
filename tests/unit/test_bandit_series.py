"""A bandit's series (abtest.analysis.bandits): the per-period fold, a day's period-weighted point, and
its SRM against Σ_t N_t · weight_(a,t) (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from abtest.analysis.bandits import (
    PeriodStats,
    PeriodWeightedMetrics,
    add_period_folds,
    period_folds,
    weighted_day,
)
from abtest.analysis.rollup import ExposureTotals, MetricStats, UserMetric, UserState, VariantMetrics, fold
from abtest.analysis.timeseries import DailyMetrics, series_days, series_point, source_days
from abtest.limits import MAX_SERIES_POINTS
from tests.unit.fakes import make_experiment

EXPERIMENT = make_experiment(weights=(0.9, 0.1))
A, B = (v.id for v in EXPERIMENT.variants)


def period(users: tuple[int, int], converted: tuple[int, int]) -> PeriodStats:
    return PeriodStats(
        {A: ExposureTotals(users[0], users[0]), B: ExposureTotals(users[1], users[1])},
        {
            A: {"buy": MetricStats(converted[0], float(converted[0]), float(converted[0]), converted[0])},
            B: {"buy": MetricStats(converted[1], float(converted[1]), float(converted[1]), converted[1])},
        },
    )


def pooled(periods: list[PeriodStats]) -> VariantMetrics:
    stats = VariantMetrics(EXPERIMENT, {A: ExposureTotals(), B: ExposureTotals()}, {A: {}, B: {}})
    for p in periods:
        for variant_id, totals in p.variants.items():
            stats.variants[variant_id].add(totals)
        for variant_id, per in p.metrics.items():
            for name, m in per.items():
                stats.metrics[variant_id].setdefault(name, MetricStats()).add(m)
    return stats


def test_simpsons_example_is_even_period_weighted_and_its_srm_expects_the_moving_weights() -> None:
    # docs/bandits.md: both arms convert at 10% in period 1 (weights 0.9/0.1), 20% in period 2 (0.1/0.9)
    periods = {1: period((900, 100), (90, 10)), 2: period((100, 900), (20, 180))}
    day = weighted_day(pooled(list(periods.values())), periods, {1: [0.9, 0.1], 2: [0.1, 0.9]})
    assert isinstance(day, PeriodWeightedMetrics)
    assert [day.metrics[v]["buy"].users for v in (A, B)] == [150, 150]  # pooled: 110 and 190
    assert [day.metrics[v]["buy"].count for v in (A, B)] == [110, 190]  # events stay as they are
    assert day.expected_users == (1000.0, 1000.0)  # 900 + 100 and 100 + 900
    point = series_point(date(2026, 12, 7), day, "buy", "conversion", 0.05)
    assert [v.value for v in point.variants] == [0.15, 0.15]
    assert point.comparisons[0].lift == 0.0
    assert point.srm_flag is False
    assert point.srm_p_value == 1.0
    # The same users read as a fixed experiment's: a reversed lift and a false SRM alarm
    fixed = series_point(date(2026, 12, 7), pooled(list(periods.values())), "buy", "conversion", 0.05)
    assert (fixed.comparisons[0].lift or 0.0) > 0.7
    assert fixed.srm_flag is True


def test_a_point_keeps_only_the_metrics_asked_for() -> None:
    periods = {1: period((50, 50), (5, 6))}
    day = weighted_day(pooled(list(periods.values())), periods, {}, ["other"])
    assert day.metrics == {A: {}, B: {}}


users_and_metrics = st.dictionaries(
    st.sampled_from([f"u{n}" for n in range(12)]),
    st.tuples(
        st.sampled_from([0, 1]),  # variant index
        st.integers(0, 3),  # exposures
        st.integers(0, 3),  # conversions counted
        st.integers(0, 50),  # their total
        st.integers(0, 2),  # unattributed
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    old=users_and_metrics,
    new=users_and_metrics,
    periods=st.dictionaries(st.sampled_from([f"u{n}" for n in range(12)]), st.integers(1, 4)),
)
def test_the_per_period_folds_add_up_to_the_fold(
    old: dict[str, tuple[int, ...]], new: dict[str, tuple[int, ...]], periods: dict[str, int]
) -> None:
    """Split by period, the deltas of every period sum to the experiment's (a user without a period is
    in period 1); so the running per-period statistics always add up to the per-variant totals."""
    ids = (A, B)

    def states(rows: dict[str, tuple[int, ...]]) -> tuple[dict, dict]:  # type: ignore[type-arg]
        users = {(EXPERIMENT.id, u): UserState(ids[v], x) for u, (v, x, _, _, _) in rows.items()}
        metrics = {
            (EXPERIMENT.id, u, "buy"): UserMetric(ids[v], c, float(t), un)
            for u, (v, _, c, t, un) in rows.items()
        }
        return users, metrics

    old_users, old_metrics = states({u: r for u, r in old.items() if u in new})
    new_users, new_metrics = states(new)
    whole = fold(old_users, old_metrics, new_users, new_metrics)
    split = period_folds(periods, old_users, old_metrics, new_users, new_metrics)
    running: dict[int, PeriodStats] = {}
    add_period_folds(EXPERIMENT, running, split)
    for variant_id in ids:
        users = sum(p.variants[variant_id].users for p in running.values())
        assert users == (whole.variants.get((EXPERIMENT.id, variant_id)) or ExposureTotals()).users
        expected = whole.metrics.get((EXPERIMENT.id, variant_id, "buy")) or MetricStats()
        got = MetricStats()
        for p in running.values():
            got.add(p.metrics[variant_id].get("buy") or MetricStats())
        assert got == expected
    assert set(running) <= {periods.get(u, 1) for u in new}


def test_only_the_days_the_series_shows_need_an_estimate() -> None:
    """source_days: a long history is thinned to at most MAX_SERIES_POINTS + 1 days, and the series
    over those days alone is the series over all of them (a read may drop the others)."""
    start = date(2024, 1, 1)
    experiment = EXPERIMENT.model_copy(
        update={
            "started_at": datetime(2024, 1, 1, tzinfo=UTC),
            "completed_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
    )
    days = [
        (start + timedelta(days=k), VariantMetrics(experiment, {A: ExposureTotals(k, k)}, {}))
        for k in range(0, 731)
        if k % 3  # some days without events
    ]
    daily = DailyMetrics(days[-1][1], days)
    needed = source_days(daily)
    assert len(needed) <= MAX_SERIES_POINTS + 1 < len(days)
    kept = DailyMetrics(days[-1][1], [(d, s) for d, s in days if d in needed])
    assert series_days(kept) == series_days(daily)
    # Two days sharing one object: every day is kept
    shared = DailyMetrics(days[-1][1], [*days, (start + timedelta(days=800), days[-1][1])])
    assert source_days(shared) == {d for d, _ in shared.days}
