"""Folding new events into per-variant sufficient statistics (pure; no SQL).

Statistics are per user, the unit of randomisation, and over exposed users only:
- per variant: exposure events and exposed users;
- per variant and metric: conversion events (`count`), the sum and the sum of squares of per-user
  totals, and converting users (exposed users with at least one conversion of that metric).

A user's conversions may arrive before their first exposure; they join the statistics when the user
is first exposed. Both the scheduled rollup (events since the last horizon) and the metrics endpoint
(the tail not yet rolled up) use `fold`, so the two always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from uuid import UUID

from abtest.domain.models import Experiment

UserKey = tuple[UUID, str]  # (experiment_id, user_id)
UserMetricKey = tuple[UUID, str, str]  # (experiment_id, user_id, metric_name)
VariantKey = tuple[UUID, UUID]  # (experiment_id, variant_id)
MetricKey = tuple[UUID, UUID, str]  # (experiment_id, variant_id, metric_name)


@dataclass
class UserState:
    variant_id: UUID
    exposures: int = 0


@dataclass
class UserMetric:
    variant_id: UUID
    count: int = 0
    total: float = 0.0


@dataclass
class ExposureTotals:
    exposures: int = 0
    users: int = 0

    def add(self, other: ExposureTotals) -> None:
        self.exposures += other.exposures
        self.users += other.users


@dataclass
class MetricStats:
    count: int = 0
    sum: float = 0.0
    sum_squares: float = 0.0
    users: int = 0

    def add(self, other: MetricStats) -> None:
        self.count += other.count
        self.sum += other.sum
        self.sum_squares += other.sum_squares
        self.users += other.users


@dataclass(frozen=True)
class VariantMetrics:
    """Sufficient statistics of one experiment, per variant and per variant and metric."""

    experiment: Experiment
    variants: dict[UUID, ExposureTotals]
    metrics: dict[UUID, dict[str, MetricStats]]


@dataclass(frozen=True)
class RunningAllocation:
    """A running experiment and its rolled-up exposed users per variant, in stored order."""

    experiment: Experiment
    users: list[int]


@dataclass(frozen=True)
class NewExposures:
    """Exposure events of one user in a window."""

    experiment_id: UUID
    user_id: str
    variant_id: UUID
    count: int


@dataclass(frozen=True)
class NewConversions:
    """Conversion events of one user and metric in a window."""

    experiment_id: UUID
    user_id: str
    metric_name: str
    variant_id: UUID
    count: int
    total: float


@dataclass
class Fold:
    """New per-user states to store, and deltas to add to the per-variant statistics."""

    users: dict[UserKey, UserState] = field(default_factory=dict)
    user_metrics: dict[UserMetricKey, UserMetric] = field(default_factory=dict)
    variants: dict[VariantKey, ExposureTotals] = field(default_factory=dict)
    metrics: dict[MetricKey, MetricStats] = field(default_factory=dict)


def fold(
    old_users: Mapping[UserKey, UserState],
    old_user_metrics: Mapping[UserMetricKey, UserMetric],
    exposures: Iterable[NewExposures],
    conversions: Iterable[NewConversions],
) -> Fold:
    """Fold a window of events into the statistics, given the affected users' state before it.

    `old_user_metrics` must hold every stored metric of every user in `exposures` (a user exposed for
    the first time brings all their earlier conversions into the statistics) and of every
    (user, metric) in `conversions`. Conversions must be grouped: one entry per user and metric.
    """
    result = Fold()
    newly_exposed: set[UserKey] = set()
    for exposure in exposures:
        key = (exposure.experiment_id, exposure.user_id)
        old = old_users.get(key)
        state = result.users.get(key)
        if state is None:
            state = UserState(old.variant_id if old else exposure.variant_id, old.exposures if old else 0)
            result.users[key] = state
        delta = result.variants.setdefault((exposure.experiment_id, state.variant_id), ExposureTotals())
        if state.exposures == 0 and exposure.count > 0:
            newly_exposed.add(key)
            delta.users += 1
        state.exposures += exposure.count
        delta.exposures += exposure.count

    # Earlier conversions of users exposed for the first time now count.
    for (experiment_id, user_id, metric_name), metric in old_user_metrics.items():
        if (experiment_id, user_id) in newly_exposed and metric.count > 0:
            _add_user_total(result, experiment_id, metric.variant_id, metric_name, None, metric)

    for conversion in conversions:
        metric_key = (conversion.experiment_id, conversion.user_id, conversion.metric_name)
        before = old_user_metrics.get(metric_key)
        after = UserMetric(
            before.variant_id if before else conversion.variant_id,
            (before.count if before else 0) + conversion.count,
            (before.total if before else 0.0) + conversion.total,
        )
        result.user_metrics[metric_key] = after
        user_key = (conversion.experiment_id, conversion.user_id)
        state = result.users.get(user_key) or old_users.get(user_key)
        if state is not None and state.exposures > 0:
            _add_user_total(
                result, conversion.experiment_id, after.variant_id, conversion.metric_name, before, after
            )
    return result


def _add_user_total(
    result: Fold,
    experiment_id: UUID,
    variant_id: UUID,
    metric_name: str,
    before: UserMetric | None,
    after: UserMetric,
) -> None:
    """Replace a user's contribution `before` (None: not yet counted) by `after`."""
    old_count = before.count if before else 0
    old_total = before.total if before else 0.0
    delta = result.metrics.setdefault((experiment_id, variant_id, metric_name), MetricStats())
    delta.count += after.count - old_count
    delta.sum += after.total - old_total
    delta.sum_squares += after.total * after.total - old_total * old_total
    delta.users += int(after.count > 0) - int(old_count > 0)
