"""Folding users' recomputed state into per-variant sufficient statistics (pure; no SQL).

Statistics are per user, the unit of randomisation, and over exposed users only:
- per variant: exposure events and exposed users;
- per variant and metric: attributed conversion events (`count`), the sum and the sum of squares of
  per-user totals, and converting users (exposed users with at least one attributed conversion);
  plus `unattributed`: conversions that do not count (yet), because the user has no exposure or the
  conversion happened before the user's first exposure.

Attribution: a conversion counts when it happened at or after the user's first exposure (the
earliest exposure's `occurred_at`). Since a late-arriving exposure can move that first exposure
earlier, the storage layer recomputes every touched user's state from their raw events, and `fold`
turns "stored state -> recomputed state" into deltas. Both the scheduled rollup and the metrics
endpoint (for the tail not yet rolled up) use it, so the two always agree, and folding a user twice is
harmless (the second fold finds nothing changed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from abtest.analysis.defined_rollup import DefinedStats
from abtest.domain.experiments import Experiment

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
    """A user's attributed conversions (count, total value) and unattributed ones for one metric."""

    variant_id: UUID
    count: int = 0
    total: float = 0.0
    unattributed: int = 0


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
    unattributed: int = 0

    def add(self, other: MetricStats) -> None:
        self.count += other.count
        self.sum += other.sum
        self.sum_squares += other.sum_squares
        self.users += other.users
        self.unattributed += other.unattributed

    def finite(self) -> bool:
        return math.isfinite(self.sum) and math.isfinite(self.sum_squares)


@dataclass(frozen=True)
class VariantMetrics:
    """Sufficient statistics of one experiment, per variant and per variant and metric."""

    experiment: Experiment
    variants: dict[UUID, ExposureTotals]
    metrics: dict[UUID, dict[str, MetricStats]]
    # The kept metric definitions (abtest.analysis.defined_rollup), per variant and definition name,
    # where the read fills them (the rollups' reads do; a per-phase read does not).
    defined: dict[UUID, dict[str, DefinedStats]] = field(default_factory=dict)


@dataclass(frozen=True)
class RunningAllocation:
    """A running experiment and its rolled-up exposed users per variant, in stored order."""

    experiment: Experiment
    users: list[int]


class FoldError(ArithmeticError):
    """An experiment's statistics are not representable (non-finite); nothing of it is stored."""


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
    new_users: Mapping[UserKey, UserState],
    new_user_metrics: Mapping[UserMetricKey, UserMetric],
    *,
    check_finite: bool = True,
) -> Fold:
    """Replace the stored contribution of every user in `new_users` by their recomputed one.

    `new_users` holds every touched user's full recomputed state and `new_user_metrics` all their
    metrics; `old_*` what is stored for them (missing: nothing yet). Raises FoldError if a delta is
    not a finite number (unless `check_finite=False`, for reads that report such sums as null), so
    a broken experiment is refused whole instead of poisoning the tables.
    """
    result = Fold(users=dict(new_users))
    old_by_user: dict[UserKey, list[UserMetricKey]] = {}
    for key in old_user_metrics:
        old_by_user.setdefault((key[0], key[1]), []).append(key)
    new_by_user: dict[UserKey, list[UserMetricKey]] = {}
    for key in new_user_metrics:
        new_by_user.setdefault((key[0], key[1]), []).append(key)
    for user_key, after in new_users.items():
        experiment_id = user_key[0]
        before = old_users.get(user_key)
        was_exposed = before is not None and before.exposures > 0
        is_exposed = after.exposures > 0
        if before is not None:
            _variant_delta(result, experiment_id, before, -1)
        _variant_delta(result, experiment_id, after, +1)
        for key in old_by_user.get(user_key, []):
            _metric_delta(result, key, old_user_metrics[key], was_exposed, -1)
        for key in new_by_user.get(user_key, []):
            metric = new_user_metrics[key]
            result.user_metrics[key] = metric
            _metric_delta(result, key, metric, is_exposed, +1)
    for delta in result.metrics.values() if check_finite else ():
        if not delta.finite():
            raise FoldError("a sum or sum of squares is not a finite number")
    return result


def _variant_delta(result: Fold, experiment_id: UUID, state: UserState, sign: int) -> None:
    delta = result.variants.setdefault((experiment_id, state.variant_id), ExposureTotals())
    delta.exposures += sign * state.exposures
    delta.users += sign * int(state.exposures > 0)


def _metric_delta(result: Fold, key: UserMetricKey, metric: UserMetric, exposed: bool, sign: int) -> None:
    experiment_id, _, metric_name = key
    delta = result.metrics.setdefault((experiment_id, metric.variant_id, metric_name), MetricStats())
    delta.unattributed += sign * metric.unattributed
    if exposed:
        delta.count += sign * metric.count
        delta.sum += sign * metric.total
        delta.sum_squares += sign * metric.total * metric.total
        delta.users += sign * int(metric.count > 0)
