"""Closing a bandit's period (pure): the period-weighted statistics, the reweight, the SRM check.

Apart from abtest.domain.bandits because it loads the statistics engine, which serving and editing
experiments never need (their cold start stays light).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from abtest.domain.bandits import Allocation, Outcome
from abtest.stats.bandit import ArmStats, bandit_reweight
from abtest.stats.bandit_periods import InvalidPeriodStatistics, bandit_srm_check, period_weighted_estimates
from abtest.stats.srm import SrmResult


@dataclass(frozen=True)
class PeriodDecision:
    """What closing a period decides (stored as a BanditPeriod)."""

    arms: list[ArmStats] | None
    p_best: list[float] | None
    weights_after: list[float]
    outcome: Outcome
    error: str | None


def decide(
    periods: Sequence[Sequence[ArmStats]], weights: Sequence[float], allocation: Allocation
) -> PeriodDecision:
    """Close a period: the period-weighted statistics of `periods` (1..n, each per arm), then the
    reweight from `weights` (the closing period's). Impossible statistics keep the weights."""
    assert allocation.is_bandit
    assert allocation.direction is not None
    assert allocation.min_weight is not None
    assert allocation.min_users_per_arm is not None
    try:
        estimates = period_weighted_estimates(periods) if periods else ()
    except InvalidPeriodStatistics as exc:
        return PeriodDecision(None, None, list(weights), "invalid_statistics", str(exc))
    arms = [e.as_stats() for e in estimates] or [ArmStats(0, 0.0, 0.0) for _ in weights]
    result = bandit_reweight(
        arms,
        weights,
        direction=allocation.direction,
        min_weight=allocation.min_weight,
        min_users_per_arm=allocation.min_users_per_arm,
    )
    p_best = list(result.p_best) if result.p_best is not None else None
    if result.outcome == "invalid_statistics":
        return PeriodDecision(None, None, list(weights), result.outcome, result.message)
    return PeriodDecision(arms, p_best, list(result.weights), result.outcome, None)


def bandit_srm(
    users: Sequence[int], period_users: Sequence[Sequence[int]], period_weights: Sequence[Sequence[float]]
) -> SrmResult | None:
    """SRM of a bandit: each arm's users against Σ_t N_t · weight_(a,t); None without users."""
    totals = [sum(counts) for counts in period_users]
    if not period_users or sum(totals) == 0:
        return None
    live = [a for a in range(len(users)) if any(weights[a] > 0 for weights in period_weights)]
    if len(live) < 2:
        return None
    return bandit_srm_check(
        [users[a] for a in live],
        totals,
        [[weights[a] if math.isfinite(weights[a]) else 0.0 for a in live] for weights in period_weights],
    )
