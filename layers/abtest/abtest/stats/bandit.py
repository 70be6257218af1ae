"""Multi-armed bandit reweighting: a Gaussian posterior per arm, exact P(best), floored weights.

The method is GrowthBook's (gbstats `bayesian/bandits.py` with its production settings: a proper
N(0, 10^4) prior on each arm's mean, Thompson-sampling weights = P(best) with a per-arm floor, no
"top two"), with three deliberate differences:

- **P(best) is an integral, not 10,000 random draws.** P(arm i is best) = ∫ φ_i(x) Π_{j≠i} Φ_j(x) dx
  over the posteriors, computed by adaptive Gauss-Kronrod quadrature (`abtest.stats.quadrature`) to
  about 1e-12, with breakpoints at every arm's posterior mean and ±2, ±5 and ±8 standard deviations,
  so that a narrow posterior next to a wide one (an arm still at the prior beside arms with data) is
  resolved. Same input, same floats: a reweight can be replayed bit for bit from its stored inputs.
- **An arm whose sample variance is 0** (no conversions yet) takes the pooled within-arm variance of
  all arms, Σ(n_a - 1)·s_a² / Σ(n_a - 1). gbstats drops such an arm's data and leaves it the wide
  prior, which hands a starving arm about half of the traffic. If every arm's variance is 0 there is
  nothing to learn from: outcome `no_variance`, weights kept.
- **Impossible statistics are refused** (a negative variance, sum_squares < sum²/n; non-finite values;
  negative or fractional user counts): outcome `invalid_statistics` naming the arm, weights kept.
  gbstats turns them into NaN weights labelled "successfully updated".

Inputs are per-arm sufficient statistics (users n, sum, sum_squares) as gbstats' `SampleMeanStatistic`
takes them; a conversion metric is sum = sum_squares = conversions. The mean is sum/n and the sample
variance (sum_squares - sum²/n)/(n - 1), 0 for n < 2, as gbstats computes them. For a bandit that has
run for several periods, pass the period-weighted statistics of `abtest.stats.bandit_periods`.

Standard library only, like the rest of the statistics engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from abtest.stats.distributions import norm_cdf, norm_pdf
from abtest.stats.quadrature import integrate

__all__ = [
    "DEFAULT_MIN_USERS_PER_ARM",
    "DEFAULT_MIN_WEIGHT",
    "PRIOR_MEAN",
    "PRIOR_VARIANCE",
    "ArmPosterior",
    "ArmStats",
    "BanditResult",
    "Direction",
    "Outcome",
    "bandit_reweight",
    "floored_weights",
    "invalid_reason",
    "probability_best",
    "sample_variance",
]

Direction = Literal["higher", "lower"]
Outcome = Literal["updated", "not_enough_users", "no_variance", "invalid_statistics"]

# GrowthBook's production bandit prior (gbstats `preprocess_bandits`): N(0, 10^4) on each arm's mean.
PRIOR_MEAN = 0.0
PRIOR_VARIANCE = 1e4
DEFAULT_MIN_WEIGHT = 0.01
DEFAULT_MIN_USERS_PER_ARM = 100

# sum_squares - sum²/n is computed from two large nearly equal numbers; within this relative
# distance of zero it is rounding, not data: it counts as a variance of 0, and only a difference
# further below zero is an impossible (negative) variance.
VARIANCE_TOLERANCE = 1e-12
# The integrals run over ±10 posterior standard deviations: the mass beyond is below 2e-23.
_TAIL_SDS = 10.0
# Breakpoints at each mean ± these many sds. The outermost matters: between 5 and 8 sd a narrow
# arm's cdf still moves by 3e-7, which a wide piece of a wide arm's integral would step over unseen
# (measured: a 2e-12 error with only ±2 and ±5); beyond 8 sd it moves by less than 1e-15.
_BREAKPOINT_SDS = (2.0, 5.0, 8.0)
# Absolute tolerance on the sum of the quadrature's error estimates (|Kronrod - Gauss|, a generous
# bound: the Kronrod result itself is far more accurate than the embedded Gauss rule).
_P_BEST_TOLERANCE = 1e-12
_P_BEST_MAX_ERROR = 1e-8


@dataclass(frozen=True, slots=True)
class ArmStats:
    """One arm's sufficient statistics: users, and the sum and sum of squares of their values."""

    users: float
    sum: float
    sum_squares: float

    @classmethod
    def from_conversions(cls, users: float, conversions: float) -> ArmStats:
        """A conversion metric: every value is 0 or 1, so sum = sum_squares = conversions."""
        return cls(users, conversions, conversions)

    @property
    def mean(self) -> float:
        """sum / users, 0 with no users (as gbstats)."""
        return self.sum / self.users if self.users > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ArmPosterior:
    """An arm's Gaussian posterior on its mean, and the data variance that went into it.

    `variance_used` is the arm's own sample variance, or the pooled one when its own is 0 (`pooled`).
    """

    mean: float
    variance: float
    sample_mean: float
    variance_used: float
    pooled: bool

    @property
    def standard_deviation(self) -> float:
        """Posterior standard deviation."""
        return math.sqrt(self.variance)


@dataclass(frozen=True, slots=True)
class BanditResult:
    """The outcome of one reweight.

    `weights` are the new weights on `updated` and the current ones otherwise. `p_best` (and the
    posteriors) are there whenever a posterior exists, including on `not_enough_users`; they are
    None on `no_variance` and `invalid_statistics`. `arm` is the offending arm's index on
    `invalid_statistics`; `message` says in words what happened.
    """

    outcome: Outcome
    weights: tuple[float, ...]
    p_best: tuple[float, ...] | None
    posteriors: tuple[ArmPosterior, ...] | None
    arm: int | None
    message: str


def invalid_reason(arm: ArmStats) -> str | None:
    """Why these statistics cannot come from real data, or None when they can."""
    n, total, squares = arm.users, arm.sum, arm.sum_squares
    if not (math.isfinite(n) and math.isfinite(total) and math.isfinite(squares)):
        return "users, sum and sum_squares must be finite numbers"
    if n < 0:
        return f"users cannot be negative (got {n})"
    if n != math.floor(n):
        return f"users must be a whole number (got {n})"
    if n == 0:
        if total != 0 or squares != 0:
            return "an arm with no users must have sum and sum_squares 0"
        return None
    if squares < 0:
        return f"sum_squares cannot be negative (got {squares})"
    square_of_sum = total * total / n
    if not math.isfinite(square_of_sum):
        return "sum is too large"
    if squares - square_of_sum < -VARIANCE_TOLERANCE * max(squares, square_of_sum):
        return (
            f"sum_squares ({squares!r}) is below sum^2/users ({square_of_sum!r}): "
            "the variance would be negative"
        )
    return None


def sample_variance(arm: ArmStats) -> float:
    """(sum_squares - sum²/n)/(n - 1) as gbstats computes it; 0 for n < 2 or within rounding of 0.

    The arm must be valid (`invalid_reason(arm) is None`); a difference within rounding of zero,
    including slightly below it, is 0.
    """
    n = arm.users
    if n < 2:
        return 0.0
    square_of_sum = arm.sum * arm.sum / n
    excess = arm.sum_squares - square_of_sum
    if excess <= VARIANCE_TOLERANCE * max(arm.sum_squares, square_of_sum):
        return 0.0
    return excess / (n - 1)


def _pooled_variance(arms: Sequence[ArmStats], variances: Sequence[float]) -> float:
    """Σ(n_a - 1)·s_a² / Σ(n_a - 1) over the arms with at least 2 users; 0 when there is none."""
    numerator = math.fsum(
        (arm.users - 1) * v for arm, v in zip(arms, variances, strict=True) if arm.users >= 2
    )
    denominator = math.fsum(arm.users - 1 for arm in arms if arm.users >= 2)
    return numerator / denominator if numerator > 0 and denominator > 0 else 0.0


def _posterior(arm: ArmStats, own_variance: float, pooled_variance: float) -> ArmPosterior:
    # The same arithmetic as gbstats' Bandits.posterior_mean / posterior_variance.
    variance_used = own_variance if own_variance > 0 else pooled_variance
    prior_precision = 1.0 / PRIOR_VARIANCE
    data_precision = arm.users / variance_used if arm.users > 0 else 0.0
    posterior_variance = 1.0 / (prior_precision + data_precision)
    posterior_mean = posterior_variance * (prior_precision * PRIOR_MEAN + data_precision * arm.mean)
    return ArmPosterior(
        mean=posterior_mean,
        variance=posterior_variance,
        sample_mean=arm.mean,
        variance_used=variance_used,
        pooled=own_variance <= 0 < arm.users,
    )


def _p_first(index: int, means: Sequence[float], sds: Sequence[float]) -> float:
    """P(X_index > X_j for every j != index), X_j ~ N(means[j], sds[j]^2) independent.

    The integral runs over u = x - means[index]: with means near 1e6 and standard deviations near
    1e-4, x - means[j] computed from x itself would lose six digits to cancellation, while the
    offsets means[j] - means[index] are exact or nearly so.
    """
    sd = sds[index]
    # (offset of arm j's mean from this arm's, sd of arm j) for the other arms.
    others = [(m - means[index], s) for j, (m, s) in enumerate(zip(means, sds, strict=True)) if j != index]
    low, high = -_TAIL_SDS * sd, _TAIL_SDS * sd
    # Below another arm's mean - 10 sd that arm beats this one with probability 1 - 1e-23: the
    # integrand is negligible there, so the range starts at the highest such point.
    for offset, other_sd in others:
        low = max(low, offset - _TAIL_SDS * other_sd)
    if not low < high:
        return 0.0
    # An arm whose cdf is already exactly 1.0 at `low` multiplies by 1.0 everywhere on the range:
    # leaving it out changes no bit of the result and saves its evaluations.
    others = [(offset, s) for offset, s in others if norm_cdf((low - offset) / s) < 1.0]
    breakpoints = {low, high}
    for offset, s in [(0.0, sd), *others]:
        for c in (0.0, *_BREAKPOINT_SDS, *(-c for c in _BREAKPOINT_SDS)):
            u = offset + c * s
            if low < u < high:
                breakpoints.add(u)

    def integrand(u: float) -> float:
        value = norm_pdf(u / sd) / sd
        for offset, other_sd in others:
            value *= norm_cdf((u - offset) / other_sd)
            if value == 0.0:
                break
        return value

    result = integrate(integrand, sorted(breakpoints), tolerance=_P_BEST_TOLERANCE)
    if result.error > _P_BEST_MAX_ERROR:  # never seen; a wrong weight must not pass silently
        raise ArithmeticError(f"P(best) did not converge (error estimate {result.error:.3g})")
    return min(1.0, result.value)


def probability_best(
    means: Sequence[float], standard_deviations: Sequence[float], direction: Direction = "higher"
) -> tuple[float, ...]:
    """P(best) of independent Gaussians N(means[i], sd[i]^2): the highest, or the lowest for "lower".

    Deterministic numerical integration, accurate to about 1e-12 even when the standard deviations
    differ by orders of magnitude. Every standard deviation must be positive and finite.
    """
    if len(means) != len(standard_deviations) or len(means) < 2:
        raise ValueError("need at least two arms and one standard deviation per mean")
    if not all(math.isfinite(m) for m in means):
        raise ValueError("means must be finite")
    if not all(math.isfinite(s) and s > 0 for s in standard_deviations):
        raise ValueError("standard deviations must be positive and finite")
    if direction not in ("higher", "lower"):
        raise ValueError("direction must be 'higher' or 'lower'")
    # The lowest of X is the highest of -X.
    signed = [m if direction == "higher" else -m for m in means]
    return tuple(_p_first(i, signed, standard_deviations) for i in range(len(means)))


def floored_weights(p_best: Sequence[float], min_weight: float) -> tuple[float, ...]:
    """f + (1 - K·f)·p/Σp with f = min_weight (gbstats' additive floor); uniform when K·f >= 1."""
    k = len(p_best)
    if k * min_weight >= 1.0:
        return tuple(1.0 / k for _ in range(k))
    total = math.fsum(p_best)
    if not (math.isfinite(total) and total > 0) or any(p < 0 or not math.isfinite(p) for p in p_best):
        raise ArithmeticError(f"P(best) must be finite, non-negative and not all 0: {list(p_best)}")
    scale = 1.0 - k * min_weight
    return tuple(min_weight + scale * (p / total) for p in p_best)


def _check_settings(
    k: int, weights: Sequence[float], direction: str, min_weight: float, min_users_per_arm: float
) -> None:
    if k < 2:
        raise ValueError("a bandit needs at least two arms")
    if len(weights) != k:
        raise ValueError(f"expected one current weight per arm ({k}), got {len(weights)}")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError("current weights must be finite and non-negative")
    if direction not in ("higher", "lower"):
        raise ValueError("direction must be 'higher' or 'lower'")
    if not (math.isfinite(min_weight) and 0 <= min_weight <= 1):
        raise ValueError("min_weight must be between 0 and 1")
    if not (math.isfinite(min_users_per_arm) and min_users_per_arm >= 0):
        raise ValueError("min_users_per_arm must be a non-negative number")


def bandit_reweight(
    arms: Sequence[ArmStats],
    current_weights: Sequence[float] | None = None,
    *,
    direction: Direction = "higher",
    min_weight: float = DEFAULT_MIN_WEIGHT,
    min_users_per_arm: float = DEFAULT_MIN_USERS_PER_ARM,
) -> BanditResult:
    """One reweight of a bandit: the new weights from each arm's statistics, or why the weights stay.

    Outcomes, checked in this order: `invalid_statistics` (some arm's statistics are impossible; the
    first such arm is named), `not_enough_users` (some arm has fewer than `min_users_per_arm`
    users), `no_variance` (every arm's sample variance is 0), `updated`. Only `updated` changes the
    weights. `current_weights` default to uniform. Bad settings (not the statistics) raise ValueError.
    """
    k = len(arms)
    kept = (
        tuple(float(w) for w in current_weights)
        if current_weights is not None
        else tuple(1.0 / k for _ in arms)
    )
    _check_settings(k, kept, direction, min_weight, min_users_per_arm)
    for index, arm in enumerate(arms):
        reason = invalid_reason(arm)
        if reason is not None:
            return BanditResult("invalid_statistics", kept, None, None, index, f"arms[{index}]: {reason}")
    variances = [sample_variance(arm) for arm in arms]
    pooled = _pooled_variance(arms, variances)
    posteriors: tuple[ArmPosterior, ...] | None = None
    p_best: tuple[float, ...] | None = None
    if pooled > 0:
        posteriors = tuple(_posterior(arm, v, pooled) for arm, v in zip(arms, variances, strict=True))
        sds = [posterior.standard_deviation for posterior in posteriors]
        for index, sd in enumerate(sds):
            if not (math.isfinite(sd) and sd > 0):  # a variance too small to represent (~1e-300)
                message = f"arms[{index}]: the variance is too small to compute with"
                return BanditResult("invalid_statistics", kept, None, None, index, message)
        p_best = probability_best([posterior.mean for posterior in posteriors], sds, direction)
    short = [index for index, arm in enumerate(arms) if arm.users < min_users_per_arm]
    if short:
        first = short[0]
        message = (
            f"arms[{first}] has {arms[first].users:g} users; every arm needs at least "
            f"{min_users_per_arm:g} before the weights change"
        )
        return BanditResult("not_enough_users", kept, p_best, posteriors, None, message)
    if p_best is None:
        message = "every arm's sample variance is 0 (no conversions or constant values yet): weights kept"
        return BanditResult("no_variance", kept, None, None, None, message)
    weights = floored_weights(p_best, min_weight)
    return BanditResult("updated", weights, p_best, posteriors, None, "weights updated")
