"""Results over time: one point per UTC day, each the verdict as if the results were read at that day's end.

Every point is recomputed from that day's cumulative per-variant sufficient statistics (the daily
snapshots), with the same engine and the same call as /results, so the last point is /results for the
same data. Days without events repeat the day before (cumulative statistics do not change).
The fixed-horizon interval of an early point is "unadjusted: peeking"; the sequential interval is
valid at every point.

Bounded for any experiment: the series covers only the UTC days from the experiment's start to its
completion (or today); a day outside counts on the nearest day inside (statistics are cumulative, so
the state at the end of the first day includes anything dated before it). Points are daily for the
first DAILY_DAYS days from the start, then one per week (the last day of each 7-day period, and always
the last day); when that would exceed MAX_SERIES_POINTS points, the period doubles (2, 4, ... weeks).
A coarser point is still exact: it is that day's cumulative result, not an average.

A bandit's days are period-weighted (abtest.analysis.bandits.PeriodWeightedMetrics, docs/bandits.md):
each point analyses the period-weighted estimates of the statistics at that day's end, and its SRM
compares the users with Σ_t N_t · weight_(a,t), as /results does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from abtest.analysis.bandits import PeriodWeightedMetrics, bandit_srm
from abtest.analysis.defined_rollup import DefinedStats, kept_data
from abtest.analysis.results import SrmVerdict, metric_analysis, srm_verdict
from abtest.analysis.roles import variant_moments
from abtest.analysis.rollup import VariantMetrics
from abtest.domain.metric_definitions import MetricDefinition
from abtest.limits import MAX_SERIES_POINTS
from abtest.stats.compare import compare_moments

Analysis = Literal["conversion", "value"]
DAY_BOUNDARY = "UTC"
DAILY_DAYS = 91  # 13 weeks of daily points from the start, then weekly ones
WEEK_DAYS = 7


@dataclass(frozen=True)
class DailyMetrics:
    """An experiment's statistics now, and cumulative at the end of each UTC day that has events."""

    current: VariantMetrics
    days: list[tuple[date, VariantMetrics]]
    waiting_users: int = 0  # users with conversions who were never exposed (not counted yet)
    waiting_conversions: int = 0


class SeriesVariant(BaseModel):
    id: UUID
    name: str
    users: int = Field(description="Exposed users by the end of the day (cumulative)")
    converted: int = Field(description="Exposed users with at least one conversion of the metric")
    sum: float = Field(description="Sum of the metric's values over exposed users")
    value: float | None = Field(description="Conversion rate (conversion) or mean per user (value)")


class SeriesComparison(BaseModel):
    variant_id: UUID
    variant_name: str
    lift: float | None = Field(description="Relative lift against the control")
    ci: list[float] | None = Field(description="Fixed-horizon interval of the relative lift (unadjusted)")
    p_value: float | None
    sequential_ci: list[float] | None = Field(description="Always-valid interval of the relative lift")
    sequential_p_value: float | None
    chance_to_win: float | None
    error: str | None = None


class SeriesPoint(BaseModel):
    date: date
    srm_p_value: float
    srm_flag: bool
    srm_sequential_p_value: float | None = Field(
        default=None, description="The sequential SRM p-value at the day's last rollup (null before it)"
    )
    variants: list[SeriesVariant] = Field(description="In stored order; the first is the control")
    comparisons: list[SeriesComparison] = Field(description="Each treatment against the control")


class ExperimentTimeseries(BaseModel):
    experiment_id: UUID
    experiment_name: str
    status: str
    metric: str | None = Field(description="The metric analysed (null: the experiment has no conversions)")
    metrics: list[str] = Field(description="Every metric of the experiment")
    analysis: Analysis
    alpha: float
    day_boundary: str = Field(default=DAY_BOUNDARY, description="Days are UTC calendar days")
    daily_until: date | None = Field(
        default=None,
        description=f"Points are daily up to this day ({DAILY_DAYS} days from the start), then one per "
        "`step_days` days and the last day (null: every point is daily)",
    )
    step_days: int = Field(default=1, description="Days between points after `daily_until` (7, 14, 28, ...)")
    points: list[SeriesPoint] = Field(
        description="Cumulative, from the first day with events (not before the start) to the last (not "
        f"after the completion or today); at most {MAX_SERIES_POINTS + 1}"
    )


def metric_names(stats: VariantMetrics) -> list[str]:
    """Every metric any variant has, sorted (the order /results uses)."""
    return sorted({name for per_variant in stats.metrics.values() for name in per_variant})


def filled_days(days: list[tuple[date, VariantMetrics]]) -> list[tuple[date, VariantMetrics]]:
    """One entry per calendar day from the first to the last, a missing day repeating the day before."""
    filled: list[tuple[date, VariantMetrics]] = []
    for day, stats in sorted(days, key=lambda item: item[0]):
        while filled and filled[-1][0] + timedelta(days=1) < day:
            filled.append((filled[-1][0] + timedelta(days=1), filled[-1][1]))
        filled.append((day, stats))
    return filled


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of an instant."""
    return moment.astimezone(UTC).date()


def within(
    days: list[tuple[date, VariantMetrics]], first: date | None, last: date
) -> list[tuple[date, VariantMetrics]]:
    """The days inside [first, last] (first None: no lower bound); a day outside counts on the nearest
    day inside, the latest state winning (statistics are cumulative)."""
    clipped: dict[date, VariantMetrics] = {}
    for day, stats in sorted(days, key=lambda item: item[0]):
        if first is not None and day < first:
            day = first
        clipped[min(day, last)] = stats
    return sorted(clipped.items())


def thinned(
    filled: list[tuple[date, VariantMetrics]], start: date
) -> tuple[list[tuple[date, VariantMetrics]], date | None, int]:
    """The points kept of consecutive days: daily for DAILY_DAYS days from `start`, then the last day of
    each period of `step` days and the last day; returns (points, daily_until or None, step)."""
    if not filled or (filled[-1][0] - start).days < DAILY_DAYS:
        return filled, None, 1
    daily_until = start + timedelta(days=DAILY_DAYS - 1)
    step = WEEK_DAYS
    while True:
        kept = [
            (day, stats)
            for index, (day, stats) in enumerate(filled)
            if day <= daily_until or (day - daily_until).days % step == 0 or index == len(filled) - 1
        ]
        if len(kept) <= MAX_SERIES_POINTS + 1:
            return kept, daily_until, step
        step *= 2


def _interval(interval: tuple[float, float] | None) -> list[float] | None:
    return list(interval) if interval is not None else None


def _srm(stats: VariantMetrics, users: list[int]) -> SrmVerdict:
    """A day's SRM: against the weights, or a bandit's expected users (module docstring)."""
    if isinstance(stats, PeriodWeightedMetrics):  # a bandit: its weights moved
        p_value, flag = bandit_srm(users, stats.expected_users)
        return SrmVerdict(p_value=p_value, flag=flag)
    return srm_verdict(users, [v.weight for v in stats.experiment.variants])


def series_point(
    day: date, stats: VariantMetrics, metric: str | None, analysis: Analysis, alpha: float
) -> SeriesPoint:
    """The point of one day: users per variant, and each treatment's lift, intervals and chance to win,
    exactly as /results computes them for that day's statistics (only the analysis asked for: a point
    of the largest experiment costs half as much)."""
    experiment = stats.experiment
    users = [stats.variants[v.id].users for v in experiment.variants]
    srm = _srm(stats, users)
    variants: list[SeriesVariant] = []
    for variant, exposed in zip(experiment.variants, users, strict=True):
        metric_stats = stats.metrics.get(variant.id, {}).get(metric or "")
        converted = metric_stats.users if metric_stats else 0
        total = metric_stats.sum if metric_stats else 0.0
        value = None
        if exposed:
            value = converted / exposed if analysis == "conversion" else total / exposed
        variants.append(
            SeriesVariant(
                id=variant.id, name=variant.name, users=exposed, converted=converted, sum=total, value=value
            )
        )
    comparisons: list[SeriesComparison] = []
    measured = metric is not None and any(metric in per for per in stats.metrics.values())
    block = metric_analysis(stats, metric, analysis, alpha=alpha, mde=None) if metric and measured else None
    for index, variant in enumerate(experiment.variants[1:], start=1):
        if block is None:
            comparisons.append(
                SeriesComparison(
                    variant_id=variant.id,
                    variant_name=variant.name,
                    lift=None,
                    ci=None,
                    p_value=None,
                    sequential_ci=None,
                    sequential_p_value=None,
                    chance_to_win=None,
                    error="no_data",
                )
            )
            continue
        comparison = next(c for c in block.comparisons if c.treatment_index == index)
        relative = comparison.relative
        sequential = comparison.sequential_relative
        comparisons.append(
            SeriesComparison(
                variant_id=variant.id,
                variant_name=variant.name,
                lift=relative.estimate,
                ci=_interval(relative.ci),
                p_value=relative.p_value,
                sequential_ci=_interval(sequential.ci),
                sequential_p_value=sequential.p_value,
                chance_to_win=comparison.bayes_relative.chance_to_win,
                error=relative.error,
            )
        )
    return SeriesPoint(
        date=day,
        srm_p_value=srm.p_value,
        srm_flag=srm.flag,
        variants=variants,
        comparisons=comparisons,
    )


def defined_point(
    day: date, stats: VariantMetrics, definition: MetricDefinition, alpha: float
) -> SeriesPoint:
    """The point of one day for a metric definition the rollup keeps (abtest.analysis.defined_rollup):
    each variant's value (rate, mean or ratio, after window and cap) and each treatment against the
    control, exactly as /results analyses the definition (abtest.analysis.roles)."""
    experiment = stats.experiment
    users = [stats.variants[v.id].users for v in experiment.variants]
    srm = _srm(stats, users)
    per_variant = variant_moments(definition, kept_data(stats, definition.name, definition.definition))
    variants = []
    for variant, exposed, moments in zip(experiment.variants, users, per_variant, strict=True):
        kept = stats.defined.get(variant.id, {}).get(definition.name, DefinedStats())
        value = moments.mean if exposed else None
        variants.append(
            SeriesVariant(
                id=variant.id,
                name=variant.name,
                users=exposed,
                converted=kept.users,
                sum=kept.sum_x,
                value=value,
            )
        )
    comparisons = []
    for variant, treatment in zip(experiment.variants[1:], per_variant[1:], strict=True):
        compared = compare_moments(per_variant[0], treatment, alpha=alpha)
        relative, sequential = compared["relative"], compared["sequential_relative"]
        comparisons.append(
            SeriesComparison(
                variant_id=variant.id,
                variant_name=variant.name,
                lift=relative["estimate"],
                ci=relative["ci"],
                p_value=relative["p_value"],
                sequential_ci=sequential["ci"],
                sequential_p_value=sequential["p_value"],
                chance_to_win=compared["bayes_relative"]["chance_to_win"],
                error=relative["error"],
            )
        )
    return SeriesPoint(
        date=day, srm_p_value=srm.p_value, srm_flag=srm.flag, variants=variants, comparisons=comparisons
    )


def series_days(
    daily: DailyMetrics, today: date | None = None
) -> tuple[list[tuple[date, VariantMetrics]], date | None, int]:
    """The days the series shows (module docstring): inside the experiment's dates, then thinned.
    Returns (days, daily_until, step_days)."""
    experiment = daily.current.experiment
    first = utc_day(experiment.started_at) if experiment.started_at is not None else None
    if experiment.completed_at is not None:
        last = utc_day(experiment.completed_at)
    else:
        last = today if today is not None else datetime.now(UTC).date()
    filled = filled_days(within(daily.days, first, last))
    return thinned(filled, first if first is not None else (filled[0][0] if filled else last))


def source_days(daily: DailyMetrics, today: date | None = None) -> set[date]:
    """The days of `daily.days` whose statistics the series shows (series_days: a day without events
    repeats the day before, and past DAILY_DAYS the days are thinned): at most MAX_SERIES_POINTS + 1
    whatever the history, so a read that computes each day's statistics need compute only these. Every
    day when two days share one statistics object (then which one a point shows is ambiguous)."""
    by_identity = {id(stats): day for day, stats in daily.days}
    if len(by_identity) != len(daily.days):
        return {day for day, _ in daily.days}
    shown, _, _ = series_days(daily, today)
    return {by_identity[id(stats)] for _, stats in shown}


def timeseries_report(
    daily: DailyMetrics,
    metric: str | None = None,
    analysis: Analysis = "conversion",
    alpha: float = 0.05,
    *,
    today: date | None = None,
    definition: MetricDefinition | None = None,
) -> ExperimentTimeseries:
    """The time series of one metric (default: the first by name). Raises KeyError for an unknown metric.
    `today` (default: the current UTC day) ends the series of an experiment not completed. With a
    `definition` the rollup keeps, the series of that definition (`metric` is its name; its `analysis`
    follows its type: conversion for a proportion, value for a mean or a ratio)."""
    experiment = daily.current.experiment
    names = metric_names(daily.current)
    if definition is not None:
        metric = definition.name
        analysis = "conversion" if definition.definition.type == "proportion" else "value"
    elif metric is None:
        metric = names[0] if names else None
    elif metric not in names:
        raise KeyError(metric)
    days, daily_until, step = series_days(daily, today)
    if definition is not None:
        points = [defined_point(day, stats, definition, alpha) for day, stats in days]
    else:
        points = [series_point(day, stats, metric, analysis, alpha) for day, stats in days]
    return ExperimentTimeseries(
        experiment_id=experiment.id,
        experiment_name=experiment.name,
        status=experiment.status.value,
        metric=metric,
        metrics=names,
        analysis=analysis,
        alpha=alpha,
        daily_until=daily_until,
        step_days=step,
        points=points,
    )
