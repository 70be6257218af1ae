"""A holdout's results (pure): the measurement group (treatment: it gets every launch) against the
holdout group (control: the defaults), per metric, with the engine experiment results use.

Users are the members recorded on a covered surface while the holdout ran; per metric, a member's
value is the total of their conversions from first seen on (zero without any). Two analyses per
metric, as for experiments: `conversion` (members who converted at least once) and `value` (mean of
the per-member total). The groups are equally sized by construction, so the SRM check expects 50/50.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from abtest.analysis.results import MetricResults, SrmVerdict, _mean_analysis, srm_verdict
from abtest.domain.holdouts import Holdout
from abtest.limits import MAX_METRICS_PER_EXPERIMENT
from abtest.stats import BinomialStats, analyze
from abtest.stats.outputs import MetricAnalysis

# Control first, as the engine expects: the holdout gets the defaults, the measurement group launches.
GROUPS: tuple[Literal["holdout", "measurement"], ...] = ("holdout", "measurement")
EQUAL = [0.5, 0.5]
# Metric names in one answer (the covered experiments may have up to 100 each).


class GroupUsers(BaseModel):
    name: Literal["holdout", "measurement"]
    role: Literal["control", "treatment"]
    users: int = Field(description="Members recorded on a covered surface")


@dataclass(frozen=True)
class GroupMetric:
    """One metric in one group: members with a conversion, and the sums of the per-member totals."""

    users: int
    sum: float
    sum_squares: float


@dataclass(frozen=True)
class HoldoutStats:
    """What a holdout's results are computed from (read in one snapshot)."""

    holdout: Holdout
    members: dict[str, int]  # group -> members recorded
    metrics: dict[str, dict[str, GroupMetric]] = field(default_factory=dict)  # metric -> group -> stats


class HoldoutResults(BaseModel):
    holdout_id: UUID
    holdout_name: str
    status: str
    percent: float
    surfaces: list[str] | None = Field(description="The surfaces covered; null: every surface")
    alpha: float
    srm: SrmVerdict = Field(description="Chi-squared of the two groups' members against 50/50")
    groups: list[GroupUsers] = Field(description="The holdout (control) first, then the measurement group")
    metrics: dict[str, MetricResults] = Field(description="Per metric name, sorted by name")
    metrics_truncated: bool = Field(
        description=f"true when only the first {MAX_METRICS_PER_EXPERIMENT} names are shown"
    )
    computed_at: datetime


def holdout_results(stats: HoldoutStats, *, alpha: float = 0.05) -> HoldoutResults:
    """Compare the measurement group with the holdout group on every metric (holdout = control)."""
    holdout, members, metrics = stats.holdout, stats.members, stats.metrics
    users = [members.get(group, 0) for group in GROUPS]
    names = sorted(metrics)
    shown = names[:MAX_METRICS_PER_EXPERIMENT]
    results: dict[str, MetricResults] = {}
    for name in shown:
        per_group = metrics[name]
        binomial = []
        mean = []
        for group, n in zip(GROUPS, users, strict=True):
            metric = per_group.get(group)
            converted = min(metric.users, n) if metric is not None else 0
            binomial.append(BinomialStats(users=n, conversions=converted))
            mean.append((n, metric.sum if metric else 0.0, metric.sum_squares if metric else 0.0))
        results[name] = MetricResults(
            conversion=MetricAnalysis.model_validate(
                analyze("binomial", binomial, weights=EQUAL, alpha=alpha)
            ),
            value=MetricAnalysis.model_validate(_mean_analysis(mean, EQUAL, alpha=alpha, mde=None)),
        )
    return HoldoutResults(
        holdout_id=holdout.id,
        holdout_name=holdout.name,
        status=holdout.status.value,
        percent=holdout.percent,
        surfaces=holdout.surfaces,
        alpha=alpha,
        srm=srm_verdict(users, EQUAL),
        groups=[
            GroupUsers(name=group, role="control" if group == "holdout" else "treatment", users=n)
            for group, n in zip(GROUPS, users, strict=True)
        ],
        metrics=results,
        metrics_truncated=len(names) > len(shown),
        computed_at=datetime.now(UTC),
    )
