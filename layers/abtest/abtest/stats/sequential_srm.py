"""Sequential (anytime-valid) sample ratio mismatch test: a Dirichlet-multinomial Bayes factor.

Lindon & Malek (2022), "Anytime-valid inference for multinomial count data", as Optimizely's `ssrm-test`
0.1.5 computes it (`sequential_p_values`). Under the null the users of a check are multinomial with the
expected shares `p`; under the alternative their shares are unknown, with a Dirichlet prior of mean `p`
and concentration `c` (10,000 by default), i.e. parameters `alpha = p * c`. The Bayes factor BF_t of the
alternative over the null after t checks is a nonnegative martingale under the null, so by Ville's
inequality P(BF_t >= 1/a for some t) <= a: the p-value `min(1, 1/BF_1, ..., 1/BF_t)` may be looked at after
every check, for as long as the experiment runs, and falls below a with probability at most a when the
split is right. A daily chi-squared test does not have this guarantee: its false alarms add up.

When the expected shares change (a bandit reweights), the experiment's test is a product of tests: one
per period, each on that period's new users against that period's shares, started afresh at the period's
first check. The running product of the periods' Bayes factors is still a test martingale (a finished
period's factor is a constant once it closes), so the same p-value rule holds for the whole life.

Numerics: everything is accumulated in log space, as the reference does, one check at a time, with the
same operations in the same order, so the p-values agree with the reference to the last few bits rather
than to the rounding of a different formula. Two details make that so: `_log_gamma` equals the Cephes
`lgam` behind scipy's `gammaln`/`loggamma` for x >= 1000 (there `math.lgamma` is off by a few ulps of a
number near 1e7, i.e. by 1e-9 in a p-value), and `_sum` adds in numpy's order (pairwise in blocks of
eight), since Python's `sum` is compensated from 3.12 on and so rounds differently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = [
    "DEFAULT_CONCENTRATION",
    "SEQUENTIAL_SRM_THRESHOLD",
    "SequentialSrm",
    "sequential_srm_p_values",
]

# The alarm fires when the sequential p-value falls below this; the same default as the chi-squared
# check (GrowthBook's SRM threshold), but now it bounds the false-alarm rate over the whole experiment.
SEQUENTIAL_SRM_THRESHOLD = 0.001
# How tightly the alternative's Dirichlet prior concentrates around the expected shares: ssrm-test's
# default. Larger detects smaller imbalances eventually but needs more users to move at all.
DEFAULT_CONCENTRATION = 10_000.0
# Shares must add up to 1 (as the service's variant weights do, within 1e-9): the null is a multinomial.
_SHARE_SUM_TOLERANCE = 1e-9
# 0.5 * log(2 * pi), the constant of Stirling's series.
_HALF_LOG_TWO_PI = 0.91893853320467274178


def _log_gamma(x: float) -> float:
    """log Gamma(x) for x > 0: Stirling's series from 1000 on (as Cephes does), math.lgamma below.

    From x = 1000 the series to the x^-5 term is exact to far below one ulp, and written this way it
    rounds exactly as the reference's Cephes `lgam`; past 1e8 the correction is below half an ulp of the
    result, so it is left out, as there.
    """
    # Counts arrive as ints: round once to a float, as numpy does, or x * x below would be exact.
    x = float(x)
    if x < 1000.0:
        return math.lgamma(x)
    q = (x - 0.5) * math.log(x) - x + _HALF_LOG_TWO_PI
    if x > 1.0e8:
        return q
    r = 1.0 / (x * x)
    return q + ((r / 1260.0 - 1.0 / 360.0) * r + 1.0 / 12.0) / x


def _sum(values: Sequence[float]) -> float:
    """Sum in numpy's order: left to right below 8 terms, then eight running sums combined pairwise
    (blocks of at most 128, halved recursively), so that it rounds as the reference's `ndarray.sum`."""
    n = len(values)
    if n < 8:
        total = 0.0
        for value in values:
            total += value
        return total
    if n <= 128:
        partial = [float(value) for value in values[:8]]
        i = 8
        while i < n - n % 8:
            for j in range(8):
                partial[j] += values[i + j]
            i += 8
        total = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + (
            (partial[4] + partial[5]) + (partial[6] + partial[7])
        )
        while i < n:
            total += values[i]
            i += 1
        return total
    half = n // 2
    half -= half % 8
    return _sum(values[:half]) + _sum(values[half:])


def _log_predictive(counts: Sequence[int], alpha: Sequence[float]) -> float:
    """log P(counts | Dirichlet(alpha)-multinomial): one check's density under the alternative."""
    after = [a + n for a, n in zip(alpha, counts, strict=True)]
    return (
        _log_gamma(sum(counts) + 1)
        - _sum([_log_gamma(n + 1) for n in counts])
        + _log_gamma(_sum(alpha))
        - _sum([_log_gamma(a) for a in alpha])
        + _sum([_log_gamma(a) for a in after])
        - _log_gamma(_sum(after))
    )


def _log_multinomial(counts: Sequence[int], shares: Sequence[float]) -> float:
    """log P(counts | multinomial(shares)): one check's density under the null (0 log 0 = 0)."""
    terms = [(n * math.log(p) if n else 0.0) - _log_gamma(n + 1) for n, p in zip(counts, shares, strict=True)]
    return _log_gamma(sum(counts) + 1) + _sum(terms)


def _p_value(log_bayes_factor: float) -> float:
    """1 / BF as the reference computes it (1 / exp), with its limits: 0 past overflow, 1 for BF <= 1."""
    if log_bayes_factor <= 0.0:
        return 1.0
    try:
        return 1.0 / math.exp(log_bayes_factor)
    except OverflowError:
        return 0.0


def _check_shares(expected: Sequence[float]) -> tuple[float, ...]:
    shares = tuple(float(p) for p in expected)
    if len(shares) < 2:
        raise ValueError("need at least two variants")
    if not all(math.isfinite(p) and p > 0 for p in shares):
        raise ValueError("expected shares must be positive and finite")
    if abs(math.fsum(shares) - 1.0) > _SHARE_SUM_TOLERANCE:
        raise ValueError(f"expected shares must add up to 1 (they add up to {math.fsum(shares)!r})")
    return shares


@dataclass(frozen=True, slots=True)
class SequentialSrm:
    """The running state of one experiment's sequential SRM test (immutable: each step returns a new one).

    Plain numbers only, so that it can be stored between rollups and resumed exactly. Start one with
    `SequentialSrm.start(shares)`, feed each check's NEW users per variant to `add`, and call `reweight`
    when the expected shares change. `p_value` is the anytime-valid p-value after the checks so far.
    """

    expected: tuple[float, ...]
    """The current period's expected shares (sum 1)."""
    concentration: float
    posterior: tuple[float, ...]
    """The current period's Dirichlet parameters: prior `expected * concentration` plus its users so far."""
    log_marginal_alternative: float
    """log P(current period's checks | alternative)."""
    log_marginal_null: float
    """log P(current period's checks | null)."""
    log_bayes_factor_closed: float
    """Sum of the log Bayes factors of the periods already closed by `reweight` (0 before the first)."""
    p_value: float
    """min(1, 1/BF) over every check so far: never increases."""
    checks: int = 0
    periods: int = 1

    @classmethod
    def start(
        cls, expected: Sequence[float], *, concentration: float = DEFAULT_CONCENTRATION
    ) -> SequentialSrm:
        """A test with no users yet (p-value 1) against `expected` shares (positive, summing to 1)."""
        if not (math.isfinite(concentration) and concentration > 0):
            raise ValueError("concentration must be positive and finite")
        shares = _check_shares(expected)
        return cls(
            expected=shares,
            concentration=float(concentration),
            posterior=tuple(p * concentration for p in shares),
            log_marginal_alternative=0.0,
            log_marginal_null=0.0,
            log_bayes_factor_closed=0.0,
            p_value=1.0,
        )

    @property
    def log_bayes_factor(self) -> float:
        """log of the product of every period's Bayes factor (alternative over null) so far."""
        return self.log_bayes_factor_closed + (self.log_marginal_alternative - self.log_marginal_null)

    @property
    def period_log_bayes_factor(self) -> float:
        """log Bayes factor of the current period alone."""
        return self.log_marginal_alternative - self.log_marginal_null

    def add(self, counts: Sequence[int]) -> SequentialSrm:
        """The state after one more check that saw `counts[i]` new users in variant i (not cumulative)."""
        if len(counts) != len(self.expected):
            raise ValueError(f"expected {len(self.expected)} counts, one per variant, got {len(counts)}")
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts):
            raise ValueError("counts must be nonnegative integers")
        log_alternative = self.log_marginal_alternative + _log_predictive(counts, self.posterior)
        log_null = self.log_marginal_null + _log_multinomial(counts, self.expected)
        log_bayes_factor = self.log_bayes_factor_closed + (log_alternative - log_null)
        return replace(
            self,
            posterior=tuple(a + n for a, n in zip(self.posterior, counts, strict=True)),
            log_marginal_alternative=log_alternative,
            log_marginal_null=log_null,
            p_value=min(_p_value(log_bayes_factor), self.p_value),
            checks=self.checks + 1,
        )

    def reweight(self, expected: Sequence[float]) -> SequentialSrm:
        """Close the current period and start a new one against new `expected` shares.

        The new period's test starts from its prior, on its own new users only; the closed period's Bayes
        factor stays in the product and the p-value keeps its running minimum.
        """
        shares = _check_shares(expected)
        if len(shares) != len(self.expected):
            raise ValueError("the number of variants cannot change")
        return replace(
            self,
            expected=shares,
            posterior=tuple(p * self.concentration for p in shares),
            log_marginal_alternative=0.0,
            log_marginal_null=0.0,
            log_bayes_factor_closed=self.log_bayes_factor,
            periods=self.periods + 1,
        )

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready plain values (floats survive a JSON round trip exactly)."""
        return {
            "expected": list(self.expected),
            "concentration": self.concentration,
            "posterior": list(self.posterior),
            "log_marginal_alternative": self.log_marginal_alternative,
            "log_marginal_null": self.log_marginal_null,
            "log_bayes_factor_closed": self.log_bayes_factor_closed,
            "p_value": self.p_value,
            "checks": self.checks,
            "periods": self.periods,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SequentialSrm:
        """The state `to_dict` wrote, to resume the test where it stopped; raises ValueError if unusable."""
        missing = sorted(set(_FIELDS) - set(data))
        if missing:
            raise ValueError(f"sequential SRM state is missing {', '.join(missing)}")
        expected = _check_shares(data["expected"])
        posterior = tuple(float(a) for a in data["posterior"])
        if len(posterior) != len(expected) or not all(math.isfinite(a) and a > 0 for a in posterior):
            raise ValueError("sequential SRM state has an unusable posterior")
        p_value = float(data["p_value"])
        if not 0.0 <= p_value <= 1.0:
            raise ValueError("sequential SRM state has a p-value outside [0, 1]")
        return cls(
            expected=expected,
            concentration=float(data["concentration"]),
            posterior=posterior,
            log_marginal_alternative=float(data["log_marginal_alternative"]),
            log_marginal_null=float(data["log_marginal_null"]),
            log_bayes_factor_closed=float(data["log_bayes_factor_closed"]),
            p_value=p_value,
            checks=int(data["checks"]),
            periods=int(data["periods"]),
        )

    def flagged(self, threshold: float = SEQUENTIAL_SRM_THRESHOLD) -> bool:
        """True when the p-value is below `threshold` (the alarm; it stays on, as the p-value never rises)."""
        return self.p_value < threshold


_FIELDS = tuple(field.name for field in fields(SequentialSrm))


def sequential_srm_p_values(
    checks: Iterable[Sequence[int]],
    expected: Sequence[float],
    *,
    concentration: float = DEFAULT_CONCENTRATION,
) -> list[float]:
    """The p-value after each check, for per-check new-user counts against fixed `expected` shares.

    Equals ssrm-test's `sequential_p_values(checks, expected, dirichlet_concentration=concentration)`.
    """
    state = SequentialSrm.start(expected, concentration=concentration)
    p_values = []
    for counts in checks:
        state = state.add(counts)
        p_values.append(state.p_value)
    return p_values
