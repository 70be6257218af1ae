"""Results over time: one point per UTC day, each the verdict as if the results were read at that day's end.

Every point is recomputed from that day's cumulative per-variant sufficient statistics (the daily
snapshots), with the same engine and the same call as /results, so the last point is /results for the
same data. Days without events repeat the day before (cumulative statistics do not change).
The fixed-horizon interval of an early point is "unadjusted: peeking"; the sequential interval is
valid at every point.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from abtest.analysis.results import ExperimentResults, results_report
from abtest.analysis.rollup import VariantMetrics

Analysis = Literal["conversion", "value"]
DAY_BOUNDARY = "UTC"


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
    points: list[SeriesPoint] = Field(description="One per UTC day from the first with events, cumulative")


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


def only_metric(stats: VariantMetrics, metric: str) -> VariantMetrics:
    """The statistics restricted to one metric (every variant keeps its users)."""
    return VariantMetrics(
        stats.experiment,
        stats.variants,
        {variant: {metric: per[metric]} if metric in per else {} for variant, per in stats.metrics.items()},
    )


def day_results(stats: VariantMetrics, metric: str | None, alpha: float) -> ExperimentResults:
    """/results of one day's statistics, for one metric (exactly what /results computes for it)."""
    restricted = only_metric(stats, metric) if metric is not None else only_metric(stats, "")
    return results_report(restricted, alpha=alpha)


def _interval(interval: tuple[float, float] | None) -> list[float] | None:
    return list(interval) if interval is not None else None


def series_point(
    day: date, stats: VariantMetrics, metric: str | None, analysis: Analysis, alpha: float
) -> SeriesPoint:
    """The point of one day: users per variant, and each treatment's lift, intervals and chance to win."""
    results = day_results(stats, metric, alpha)
    variants: list[SeriesVariant] = []
    for variant in results.variants:
        metric_stats = stats.metrics.get(variant.id, {}).get(metric or "")
        converted = metric_stats.users if metric_stats else 0
        total = metric_stats.sum if metric_stats else 0.0
        value = None
        if variant.users:
            value = converted / variant.users if analysis == "conversion" else total / variant.users
        variants.append(
            SeriesVariant(
                id=variant.id,
                name=variant.name,
                users=variant.users,
                converted=converted,
                sum=total,
                value=value,
            )
        )
    comparisons: list[SeriesComparison] = []
    metric_results = results.metrics.get(metric or "")
    block = getattr(metric_results, analysis) if metric_results is not None else None
    for index, variant in enumerate(results.variants[1:], start=1):
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
        srm_p_value=results.srm.p_value,
        srm_flag=results.srm.flag,
        variants=variants,
        comparisons=comparisons,
    )


def timeseries_report(
    daily: DailyMetrics, metric: str | None = None, analysis: Analysis = "conversion", alpha: float = 0.05
) -> ExperimentTimeseries:
    """The time series of one metric (default: the first by name). Raises KeyError for an unknown metric."""
    experiment = daily.current.experiment
    names = metric_names(daily.current)
    if metric is None:
        metric = names[0] if names else None
    elif metric not in names:
        raise KeyError(metric)
    points = [series_point(day, stats, metric, analysis, alpha) for day, stats in filled_days(daily.days)]
    return ExperimentTimeseries(
        experiment_id=experiment.id,
        experiment_name=experiment.name,
        status=experiment.status.value,
        metric=metric,
        metrics=names,
        analysis=analysis,
        alpha=alpha,
        points=points,
    )
