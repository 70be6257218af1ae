"""Bandit experiments' results: period-weighted estimates and the SRM under changing weights (pure).

A bandit changes its weights from period to period, so pooling an arm's users across periods is
biased (docs/bandits.md, "Period-weighted estimates"). For a bandit experiment the results, the time
series and the report analyse, per metric and arm, the period-weighted mean and variance of the mean
(abtest.stats.bandit_periods), written back as sufficient statistics with the same mean and variance:

- value: users n, sum = n·m, sum_squares = (n - 1)·n·v + n·m² (the Welch test then sees m and v);
- conversion: users n and conversions round(n·m), the period-weighted rate as a count.

The SRM check compares each arm's users with Σ_t N_t · weight_(a,t), the weights in force in period t.

Results over time: a day's point is `weighted_day` of the statistics at the end of that day, each
period's per-arm statistics as they were then (`period_folds` splits the rollup's per-user fold by the
period that enrolled each user), so a bandit's series is period-weighted like its /results.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from abtest.analysis.rollup import (
    ExposureTotals,
    Fold,
    MetricStats,
    UserKey,
    UserMetric,
    UserMetricKey,
    UserState,
    VariantMetrics,
    fold,
)
from abtest.domain.experiments import Experiment
from abtest.stats.bandit import ArmStats
from abtest.stats.bandit_periods import (
    InvalidPeriodStatistics,
    PeriodWeightedArm,
    expected_users,
    period_weighted_estimates,
)
from abtest.stats.srm import srm_check


@dataclass
class PeriodStats:
    """One period's exposed users per variant, and per variant and metric their statistics."""

    variants: dict[UUID, ExposureTotals]
    metrics: dict[UUID, dict[str, MetricStats]]


def arm_stats(
    experiment: Experiment, stats: PeriodStats, metric: str, analysis: Literal["conversion", "value"]
) -> list[ArmStats]:
    """Each arm's (users, sum, sum_squares) in one period: a conversion counts converting users."""
    arms = []
    for variant in experiment.variants:
        users = stats.variants.get(variant.id, ExposureTotals()).users
        m = stats.metrics.get(variant.id, {}).get(metric)
        if analysis == "conversion":
            arms.append(ArmStats.from_conversions(users, min(m.users if m else 0, users)))
        else:
            arms.append(ArmStats(users, m.sum if m else 0.0, m.sum_squares if m else 0.0))
    return arms


class _ByIndex:
    """Periods in order with their statistics by arm index: the UUID lookups done once, not once per
    metric and analysis (a day of the largest bandit has 500 periods x 20 arms x 100 metrics)."""

    def __init__(self, experiment: Experiment, periods: Mapping[int, PeriodStats]) -> None:
        ids = [v.id for v in experiment.variants]
        ordered = [periods[t] for t in sorted(periods)]
        self.users = [[p.variants.get(i, ExposureTotals()).users for i in ids] for p in ordered]
        self.metrics = [[p.metrics.get(i, {}) for i in ids] for p in ordered]

    def arms(self, metric: str, analysis: Literal["conversion", "value"]) -> list[list[ArmStats]]:
        """Each period's arms as `arm_stats` gives them."""
        out = []
        for users, metrics in zip(self.users, self.metrics, strict=True):
            stats = [m.get(metric) for m in metrics]
            if analysis == "conversion":
                out.append(
                    [
                        ArmStats.from_conversions(n, min(m.users if m else 0, n))
                        for n, m in zip(users, stats, strict=True)
                    ]
                )
            else:
                out.append(
                    [
                        ArmStats(n, m.sum if m else 0.0, m.sum_squares if m else 0.0)
                        for n, m in zip(users, stats, strict=True)
                    ]
                )
        return out


def _estimates(
    periods: _ByIndex, metric: str, analysis: Literal["conversion", "value"]
) -> tuple[PeriodWeightedArm, ...] | None:
    if not periods.users:
        return None
    try:
        return period_weighted_estimates(periods.arms(metric, analysis))
    except InvalidPeriodStatistics:
        return None  # non-finite legacy sums: the pooled statistics report them as errors


def period_weighted(pooled: VariantMetrics, periods: Mapping[int, PeriodStats]) -> VariantMetrics:
    """`pooled` with every metric's per-arm statistics replaced by period-weighted equivalents
    (module docstring). Exposed users and event counts stay as they are."""
    experiment = pooled.experiment
    names = sorted({name for per in pooled.metrics.values() for name in per})
    metrics: dict[UUID, dict[str, MetricStats]] = {v.id: {} for v in experiment.variants}
    by_index = _ByIndex(experiment, periods)
    for name in names:
        conversion = _estimates(by_index, name, "conversion")
        value = _estimates(by_index, name, "value")
        for index, variant in enumerate(experiment.variants):
            original = pooled.metrics.get(variant.id, {}).get(name)
            if original is None:
                continue
            if conversion is None or value is None:
                metrics[variant.id][name] = original
                continue
            rate, mean = conversion[index], value[index]
            n = mean.users
            as_value = mean.as_stats()
            metrics[variant.id][name] = MetricStats(
                count=original.count,
                sum=as_value.sum,
                sum_squares=as_value.sum_squares,
                users=min(n, max(0, round(n * rate.mean))),
                unattributed=original.unattributed,
            )
    return VariantMetrics(experiment, dict(pooled.variants), metrics)


def periods_with_users(periods: Mapping[int, PeriodStats]) -> list[int]:
    """The period numbers in which some arm has exposed users, in order."""
    return sorted(t for t, s in periods.items() if any(v.users for v in s.variants.values()))


def expected_arm_users(
    experiment: Experiment,
    periods: Mapping[int, PeriodStats],
    period_weights: Mapping[int, Sequence[float]],
) -> list[float]:
    """Each arm's Σ_t N_t · weight_(a,t) (the SRM's expectation), in variant order: `period_weights[t]`
    the weights closed period t was bucketed with; periods not closed yet used the current weights."""
    numbers = periods_with_users(periods)
    if not numbers:
        return [0.0] * len(experiment.variants)
    current = experiment.serving_weights()
    n_t = [sum(v.users for v in periods[t].variants.values()) for t in numbers]
    return list(expected_users(n_t, [list(period_weights.get(t, current)) for t in numbers]))


@dataclass(frozen=True)
class PeriodWeightedMetrics(VariantMetrics):
    """A bandit's statistics at some moment, period-weighted (`period_weighted`), with the users each
    arm should have had by then under the weights in force when they were enrolled (variant order)."""

    expected_users: tuple[float, ...] = ()

    @classmethod
    def of(
        cls, day: VariantMetrics, metrics: dict[UUID, dict[str, MetricStats]], expected_users: Sequence[float]
    ) -> PeriodWeightedMetrics:
        """`day` (its users, and whatever else it carries) with period-weighted `metrics`."""
        carried = {f.name: getattr(day, f.name) for f in fields(VariantMetrics)}
        return cls(**{**carried, "metrics": metrics, "expected_users": tuple(expected_users)})


def weighted_day(
    pooled: VariantMetrics,
    periods: Mapping[int, PeriodStats],
    period_weights: Mapping[int, Sequence[float]],
    metrics: Collection[str] | None = None,
) -> PeriodWeightedMetrics:
    """A bandit's point of the series: `pooled` (its statistics at the end of a day) with the metrics
    (`metrics`: only these; None: all) period-weighted from `periods` (each period's statistics at the
    end of the same day), and the SRM's expected users then."""
    asked = pooled
    if metrics is not None:
        wanted = set(metrics)
        asked = VariantMetrics(
            pooled.experiment,
            pooled.variants,
            {v: {k: m for k, m in per.items() if k in wanted} for v, per in pooled.metrics.items()},
        )
    periods = {t: periods[t] for t in periods_with_users(periods)}  # as period_stats reads them
    weighted = period_weighted(asked, periods)
    expected = expected_arm_users(pooled.experiment, periods, period_weights)
    return PeriodWeightedMetrics.of(pooled, weighted.metrics, expected)


def period_folds(
    periods: Mapping[str, int],
    old_users: Mapping[UserKey, UserState],
    old_user_metrics: Mapping[UserMetricKey, UserMetric],
    new_users: Mapping[UserKey, UserState],
    new_user_metrics: Mapping[UserMetricKey, UserMetric],
    *,
    check_finite: bool = True,
) -> dict[int, Fold]:
    """The fold of `new_users` (abtest.analysis.rollup.fold) split by the period that enrolled each user
    (`periods`: user id -> period number; a user without one counts in period 1, as everywhere)."""
    period_of = {key: periods.get(key[1], 1) for key in new_users}
    parts: dict[
        int,
        tuple[
            dict[UserKey, UserState],
            dict[UserMetricKey, UserMetric],
            dict[UserKey, UserState],
            dict[UserMetricKey, UserMetric],
        ],
    ] = {}

    def part(number: int) -> tuple[Any, ...]:
        return parts.setdefault(number, ({}, {}, {}, {}))

    for key, state in new_users.items():
        part(period_of[key])[2][key] = state
    for key, old in old_users.items():
        if key in period_of:
            part(period_of[key])[0][key] = old
    for mkey, metric in old_user_metrics.items():
        number = period_of.get((mkey[0], mkey[1]))
        if number is not None:
            part(number)[1][mkey] = metric
    for mkey, metric in new_user_metrics.items():
        number = period_of.get((mkey[0], mkey[1]))
        if number is not None:
            part(number)[3][mkey] = metric
    return {
        number: fold(olds, old_metrics, news, new_metrics, check_finite=check_finite)
        for number, (olds, old_metrics, news, new_metrics) in sorted(parts.items())
    }


def add_period_folds(
    experiment: Experiment,
    periods: dict[int, PeriodStats],
    folds: Mapping[int, Fold],
    metrics: Collection[str] | None = None,
) -> None:
    """Add per-period fold deltas to running per-period statistics, in place (`metrics`: only these)."""
    for number, delta in folds.items():
        if number not in periods:
            periods[number] = PeriodStats(
                {v.id: ExposureTotals() for v in experiment.variants}, {v.id: {} for v in experiment.variants}
            )
        stats = periods[number]
        for (_, variant_id), totals in delta.variants.items():
            stats.variants.setdefault(variant_id, ExposureTotals()).add(totals)
        for (_, variant_id, name), m in delta.metrics.items():
            if metrics is None or name in metrics:
                stats.metrics.setdefault(variant_id, {}).setdefault(name, MetricStats()).add(m)


class BanditArm(BaseModel):
    """One arm of a bandit: its users, the period-weighted estimate of the bandit metric, its share."""

    id: UUID
    name: str
    users: int = Field(description="Exposed users over all periods")
    expected_users: float = Field(description="Σ_t N_t · weight in period t: what the SRM check expects")
    mean: float | None = Field(description="Period-weighted mean of the bandit metric (null: not computable)")
    standard_error: float | None = Field(
        description="Square root of the period-weighted variance of the mean"
    )
    weight: float = Field(description="The weight new users are bucketed with now")
    p_best: float | None = Field(description="P(best) at the last reweight (null before the first)")


class BanditEstimates(BaseModel):
    """A bandit experiment's period-weighted view of its own metric, and its SRM check."""

    metric: str
    analysis: Literal["conversion", "value"]
    direction: Literal["higher", "lower"]
    period: int = Field(description="The open period")
    periods_with_users: int
    arms: list[BanditArm]
    srm_p_value: float | None = Field(description="Users against Σ_t N_t · weight_(a,t); null without users")
    srm_flag: bool


def bandit_estimates(
    experiment: Experiment,
    periods: Mapping[int, PeriodStats],
    period_weights: Mapping[int, Sequence[float]],
    p_best: Sequence[float] | None,
) -> BanditEstimates:
    """The bandit block of /results: per arm the period-weighted estimate and the expected users.

    `period_weights[t]` are the weights of closed period t (weights_before of its row); periods not
    closed yet were bucketed with the current weights.
    """
    allocation = experiment.allocation
    assert allocation.is_bandit
    assert experiment.bandit is not None
    assert allocation.metric is not None
    assert allocation.analysis is not None
    assert allocation.direction is not None
    current = experiment.serving_weights()
    numbers = periods_with_users(periods)
    users = [
        sum(periods[t].variants.get(v.id, ExposureTotals()).users for t in numbers)
        for v in experiment.variants
    ]
    expected = expected_arm_users(experiment, periods, period_weights)
    estimates = _estimates(
        _ByIndex(experiment, {t: periods[t] for t in numbers}), allocation.metric, allocation.analysis
    )
    srm_p, srm_flag = bandit_srm(users, expected)
    arms = []
    for index, variant in enumerate(experiment.variants):
        estimate = estimates[index] if estimates is not None else None
        finite = estimate is not None and estimate.users > 0 and math.isfinite(estimate.mean)
        arms.append(
            BanditArm(
                id=variant.id,
                name=variant.name,
                users=users[index],
                expected_users=expected[index],
                mean=estimate.mean if finite and estimate else None,
                standard_error=math.sqrt(estimate.variance_of_mean) if finite and estimate else None,
                weight=current[index],
                p_best=p_best[index] if p_best is not None else None,
            )
        )
    return BanditEstimates(
        metric=allocation.metric,
        analysis=allocation.analysis,
        direction=allocation.direction,
        period=experiment.bandit.period,
        periods_with_users=len(numbers),
        arms=arms,
        srm_p_value=srm_p,
        srm_flag=srm_flag,
    )


def bandit_srm(users: Sequence[int], expected: Sequence[float]) -> tuple[float | None, bool]:
    """The chi-squared SRM over the arms expected to have users; (None, False) without users."""
    live = [(n, e) for n, e in zip(users, expected, strict=True) if e > 0]
    if len(live) < 2 or sum(n for n, _ in live) == 0:
        return (None, False) if sum(users) == 0 else (1.0, False)
    result = srm_check([n for n, _ in live], [e for _, e in live])
    return result.p_value, result.flag
