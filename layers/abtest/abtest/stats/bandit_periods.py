"""Period-weighted estimates for bandit experiments, and the SRM expectation under changing weights.

A bandit changes its weights from period to period. Pooling all of an arm's users ignores that: the
arm that wins gets most of its users late, the others early, so any drift over time (weekday,
season, novelty) lands unevenly on the arms and the pooled comparison can even reverse (Simpson's
paradox). The period-weighted estimator gives every period the same weight in every arm, its share
of all users: with N_t the users of all arms enrolled in period t and N = Σ_t N_t, w_t = N_t / N,

    mean_a            = Σ_t w_t · mean_(a,t)
    variance of mean  = Σ_t w_t² · s²_(a,t) / n_(a,t)

(s² the sample variance with n - 1; a period in which the arm's sample variance is 0 takes the arm's
pooled within-period variance, so a few users without a conversion do not make the estimate look
exact). This is GrowthBook's estimator for bandits. A period in which
some arm has fewer than 2 users (no users, or one user whose variance is unknown) is merged into the
next period (the last one into the one before it), so that every term is defined.

`period_weighted_estimates` returns, per arm, its users, mean and variance of the mean, and
`PeriodWeightedArm.as_stats` writes them as the (users, sum, sum_squares) triple that
`abtest.stats.bandit.bandit_reweight` and `python -m abtest.stats bandit` take: sum = n·m and
sum_squares = (n - 1)·n·v + n·m², from which the mean is again m and the variance of the mean v.

Under changing weights the users an arm should have are Σ_t N_t · weight_(a,t), not N · weight_a:
`expected_users` gives that expectation and `bandit_srm_check` tests the counts against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from abtest.stats.bandit import ArmStats, invalid_reason, sample_variance
from abtest.stats.srm import SrmResult, srm_check

__all__ = [
    "MIN_USERS_PER_PERIOD",
    "InvalidPeriodStatistics",
    "PeriodWeightedArm",
    "bandit_srm_check",
    "expected_users",
    "period_weighted_estimates",
]

MIN_USERS_PER_PERIOD = 2


class InvalidPeriodStatistics(ValueError):
    """Statistics of one arm in one period that cannot come from real data (see `invalid_reason`)."""

    def __init__(self, message: str, *, period: int, arm: int) -> None:
        super().__init__(message)
        self.period = period
        self.arm = arm


@dataclass(frozen=True, slots=True)
class PeriodWeightedArm:
    """One arm's period-weighted mean and variance of that mean, over all its `users`."""

    users: int
    mean: float
    variance_of_mean: float

    def as_stats(self) -> ArmStats:
        """The (users, sum, sum_squares) triple with this mean and variance of the mean.

        sum = n·m and sum_squares = (n - 1)·n·v + n·m², so that sum/n = m and
        (sum_squares - sum²/n)/(n - 1)/n = v: the bandit computes its posterior from exactly these.
        """
        n, m, v = self.users, self.mean, self.variance_of_mean
        if n == 0:
            return ArmStats(0, 0.0, 0.0)
        return ArmStats(n, n * m, (n - 1) * n * v + n * m * m)


def _merge(first: Sequence[ArmStats], second: Sequence[ArmStats]) -> list[ArmStats]:
    return [
        ArmStats(a.users + b.users, a.sum + b.sum, a.sum_squares + b.sum_squares)
        for a, b in zip(first, second, strict=True)
    ]


def _merged_periods(
    periods: Sequence[Sequence[ArmStats]], period_users: Sequence[float]
) -> list[tuple[list[ArmStats], float]]:
    """Periods in which some arm has fewer than MIN_USERS_PER_PERIOD users merged into the next."""
    merged: list[tuple[list[ArmStats], float]] = []
    pending: list[ArmStats] | None = None
    pending_users = 0.0
    for arms, users in zip(periods, period_users, strict=True):
        pending = list(arms) if pending is None else _merge(pending, arms)
        pending_users += users
        if all(arm.users >= MIN_USERS_PER_PERIOD for arm in pending):
            merged.append((pending, pending_users))
            pending, pending_users = None, 0.0
    if pending is not None:
        if merged:  # the last periods had too few users: they join the period before them
            last_arms, last_users = merged.pop()
            merged.append((_merge(last_arms, pending), last_users + pending_users))
        else:
            merged.append((pending, pending_users))
    return merged


def period_weighted_estimates(
    periods: Sequence[Sequence[ArmStats]], period_users: Sequence[float] | None = None
) -> tuple[PeriodWeightedArm, ...]:
    """Each arm's period-weighted mean and variance of the mean from per-period per-arm statistics.

    `periods[t][a]` holds arm a's statistics among the users enrolled in period t (in period order);
    `period_users[t]` is N_t, all arms' users enrolled in period t (default: the sum over the arms).
    Raises `InvalidPeriodStatistics` naming the period and arm of impossible statistics, and
    ValueError for inconsistent shapes.
    """
    if not periods:
        raise ValueError("need at least one period")
    k = len(periods[0])
    if k < 1 or any(len(arms) != k for arms in periods):
        raise ValueError("every period needs the same number of arms (at least one)")
    for t, arms in enumerate(periods):
        for a, arm in enumerate(arms):
            reason = invalid_reason(arm)
            if reason is not None:
                raise InvalidPeriodStatistics(f"periods[{t}][{a}]: {reason}", period=t, arm=a)
    if period_users is None:
        period_users = [math.fsum(arm.users for arm in arms) for arms in periods]
    if len(period_users) != len(periods):
        raise ValueError("expected one total of users per period")
    if not all(math.isfinite(n) and n >= 0 for n in period_users):
        raise ValueError("the users per period must be finite and non-negative")
    merged = _merged_periods(periods, period_users)
    total = math.fsum(users for _, users in merged)
    estimates = []
    for a in range(k):
        users = int(math.fsum(arms[a].users for arms, _ in merged))
        if total <= 0 or users == 0:
            estimates.append(PeriodWeightedArm(users, 0.0, 0.0))
            continue
        pooled = _pooled_variance([arms[a] for arms, _ in merged])
        mean_terms, variance_terms = [], []
        for arms, period_total in merged:
            arm = arms[a]
            if arm.users == 0:  # only possible when everything merged into one period
                continue
            share = period_total / total
            mean_terms.append(share * arm.mean)
            # A period in which the arm's values are all equal (no conversion among its few users
            # since the weights moved away from it) says nothing about the spread: its variance
            # would be 0 and the arm's estimate falsely precise. It takes the arm's pooled
            # within-period variance instead, as the bandit does for an arm without variance.
            variance = sample_variance(arm) or pooled
            variance_terms.append(share * share * variance / arm.users)
        estimates.append(PeriodWeightedArm(users, math.fsum(mean_terms), math.fsum(variance_terms)))
    return tuple(estimates)


def _pooled_variance(periods: Sequence[ArmStats]) -> float:
    """An arm's pooled within-period variance Σ(n_t - 1)·s²_t / Σ(n_t - 1) (0 with no degrees of freedom)."""
    degrees = math.fsum(max(arm.users - 1, 0) for arm in periods)
    if degrees <= 0:
        return 0.0
    return math.fsum(max(arm.users - 1, 0) * sample_variance(arm) for arm in periods) / degrees


def expected_users(
    period_users: Sequence[float], period_weights: Sequence[Sequence[float]]
) -> tuple[float, ...]:
    """Each arm's expected users Σ_t N_t · weight_(a,t), the weights being those in force in period t.

    The weights of a period should sum to 1 (they are normalised here, so they need not exactly).
    """
    if len(period_users) != len(period_weights) or not period_weights:
        raise ValueError("expected one set of weights per period (at least one period)")
    k = len(period_weights[0])
    if any(len(weights) != k for weights in period_weights):
        raise ValueError("every period needs the same number of weights")
    expected = []
    for a in range(k):
        terms = []
        for users, weights in zip(period_users, period_weights, strict=True):
            total_weight = math.fsum(weights)
            if not (math.isfinite(total_weight) and total_weight > 0):
                raise ValueError("a period's weights must be finite with a positive sum")
            terms.append(users * weights[a] / total_weight)
        expected.append(math.fsum(terms))
    return tuple(expected)


def bandit_srm_check(
    users: Sequence[int], period_users: Sequence[float], period_weights: Sequence[Sequence[float]]
) -> SrmResult:
    """The SRM check of a bandit: each arm's users against Σ_t N_t · weight_(a,t).

    `users[a]` is arm a's users over all periods; checking against today's weights instead would raise
    a false alarm on every bandit whose weights moved.
    """
    return srm_check(users, expected_users(period_users, period_weights))
