"""The metrics report: per-variant, per-user statistics in the original API's shape (pure).

Where it deliberately differs from the original sketch: `unique_users` counts exposed users, and
`conversion_rate` is converting users / exposed users (the sketch divided conversion events by
exposure events). `mean` is the mean per exposed user of the per-user total (sum / unique_users),
the quantity a t-test on a mean metric compares. `users` and `sum_squares` are added so clients can
compute variances. Only conversions at or after the user's first exposure count; the others are
`unattributed` (waiting for an exposure, or before it). A sum that is not a finite number (only
legacy data stored before the value bound can produce one) is reported as null.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from uuid import UUID

from pydantic import BaseModel, Field

from abtest.analysis.defined_rollup import DefinedStats
from abtest.analysis.rollup import MetricStats, VariantMetrics
from abtest.domain.overrides import OverrideCounts


class MetricSummary(BaseModel):
    count: int = Field(description="Attributed conversion events (at or after the user's first exposure)")
    sum: float | None = Field(description="Sum of attributed values; null if not representable")
    mean: float | None = Field(description="sum / unique_users (per exposed user); null without users")
    conversion_rate: float | None = Field(description="users / unique_users; null without users")
    users: int = Field(description="Exposed users with at least one attributed conversion of this metric")
    sum_squares: float | None = Field(
        description="Sum over exposed users of the squared per-user total; null if not representable"
    )
    unattributed: int = Field(
        description="Conversions that do not count: the user is not exposed yet, or they precede the "
        "user's first exposure"
    )


class DefinedSummary(BaseModel):
    """A metric definition the rollup keeps (an absolute cap, a conversion window, or a ratio), after its
    window and cap, over exposed users (docs/metrics-and-decisions.md)."""

    count: int = Field(description="Conversions of its metric (a ratio: the numerator's) that count")
    users: int = Field(description="Exposed users with at least one of them")
    sum: float | None = Field(description="Sum of per-user values after the cap (a ratio: numerators)")
    sum_squares: float | None = Field(description="Sum of squared per-user values")
    mean: float | None = Field(description="sum / unique_users; null without users")
    conversion_rate: float | None = Field(description="users / unique_users; null without users")
    denominator_sum: float | None = Field(description="A ratio: sum of per-user denominators (else 0)")
    denominator_sum_squares: float | None = Field(description="A ratio: sum of squared denominators")
    sum_products: float | None = Field(description="A ratio: sum of per-user numerator x denominator")
    ratio: float | None = Field(description="A ratio: sum / denominator_sum; null when it is 0")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _defined(stats: DefinedStats, exposed: int) -> DefinedSummary:
    return DefinedSummary(
        count=stats.count,
        users=stats.users,
        sum=_finite(stats.sum_x),
        sum_squares=_finite(stats.sum_x2),
        mean=_finite(stats.sum_x / exposed) if exposed else None,
        conversion_rate=stats.users / exposed if exposed else None,
        denominator_sum=_finite(stats.sum_y),
        denominator_sum_squares=_finite(stats.sum_y2),
        sum_products=_finite(stats.sum_xy),
        ratio=_finite(stats.sum_x / stats.sum_y) if stats.sum_y else None,
    )


class VariantReport(BaseModel):
    variant_name: str
    weight: float
    exposures: int = Field(description="Exposure events")
    unique_users: int = Field(description="Exposed users")
    conversions: dict[str, MetricSummary]
    defined_metrics: dict[str, DefinedSummary] = Field(
        default_factory=dict,
        description="The experiment's metric definitions with an absolute cap, a conversion window or a "
        "ratio (pinned versions), as /results analyses them; the others are the event metrics above",
    )


class ExperimentMetrics(BaseModel):
    experiment_id: UUID
    experiment_name: str
    status: str
    variant_metrics: dict[UUID, VariantReport] = Field(description="Keyed by variant id, in stored order")
    computed_at: datetime
    overrides: OverrideCounts = Field(
        default_factory=OverrideCounts,
        description="Forced users (overrides): counted here, never in the analysis above",
    )


def metrics_report(stats: VariantMetrics, *, overrides: OverrideCounts | None = None) -> ExperimentMetrics:
    """Build the report; every variant lists every metric any variant has (zeros where none).
    `overrides`: the experiment's forced users, reported apart (none if not given)."""
    experiment = stats.experiment
    metric_names = sorted({name for per_variant in stats.metrics.values() for name in per_variant})
    report: dict[UUID, VariantReport] = {}
    for variant in experiment.variants:
        totals = stats.variants[variant.id]
        conversions = {}
        for name in metric_names:
            metric = stats.metrics.get(variant.id, {}).get(name)
            metric = metric or MetricStats()
            exposed = totals.users
            conversions[name] = MetricSummary(
                count=metric.count,
                sum=_finite(metric.sum),
                mean=_finite(metric.sum / exposed) if exposed else None,
                conversion_rate=metric.users / exposed if exposed else None,
                users=metric.users,
                sum_squares=_finite(metric.sum_squares),
                unattributed=metric.unattributed,
            )
        report[variant.id] = VariantReport(
            variant_name=variant.name,
            weight=variant.weight,
            exposures=totals.exposures,
            unique_users=totals.users,
            conversions=conversions,
            defined_metrics={
                name: _defined(d, totals.users)
                for name, d in sorted(stats.defined.get(variant.id, {}).items())
            },
        )
    return ExperimentMetrics(
        experiment_id=experiment.id,
        experiment_name=experiment.name,
        status=experiment.status.value,
        variant_metrics=report,
        computed_at=datetime.now(UTC),
        overrides=overrides or OverrideCounts(),
    )
