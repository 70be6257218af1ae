"""Post-stratified effect estimates (pure), as GrowthBook's gbstats computes them for count metrics
(`EffectMomentsPostStratification` with `ProportionStatistic` / `SampleMeanStatistic` cells, in the
growthbook repository's packages/stats; tests/golden/post_strat_vectors.json holds its numbers).

Per stratum k (a cell with n_k = n_a + n_b users, control a, treatment b): the control mean m_a, the
effect e = m_b - m_a, and their covariance scaled by n_k: Var(m_a) = v_a n_k / n_a,
Var(e) = v_b n_k / n_b + v_a n_k / n_a, Cov(m_a, e) = -v_a n_k / n_a. With the strata shares
nu_k = n_k / N, the combined moments are mu = sum_k nu_k (m_a, e)_k and
Cov = A (diag(nu) - nu nu^T) A^T / N + sum_k nu_k Cov_k / N (A: the 2 x K matrix of cell means, the
first term the multinomial uncertainty of the shares). The absolute effect is mu_1 with variance
Cov_11; the relative one mu_1 / |mu_0| by the delta method. Cells without variance in either arm are
merged into the largest cell first; a single remaining cell falls back to the plain estimate.
Variances: a proportion p(1 - p); a mean (sum_squares - sum^2 / n) / (n - 1) (merged cells of a
proportion become means, as in gbstats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from abtest.stats.distributions import norm_isf, norm_sf
from abtest.stats.outputs import Interval

ZERO_VARIANCE = "zero_variance"
ZERO_BASELINE = "zero_baseline"


@dataclass(frozen=True)
class CellStat:
    """One arm of one stratum: users, the sum and the sum of squares of the per-user values."""

    n: int
    sum: float
    sum_squares: float
    proportion: bool = False  # a conversion (0/1 per user): variance p(1 - p)

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        if self.proportion:
            return self.mean * (1 - self.mean)
        if self.n <= 1:
            return 0.0
        return (self.sum_squares - self.sum**2 / self.n) / (self.n - 1)

    def __add__(self, other: CellStat) -> CellStat:
        # gbstats: adding statistics gives a sample mean (sum_squares of a proportion is its sum).
        return CellStat(
            self.n + other.n,
            self.sum + other.sum,
            self._squares + other._squares,
        )

    @property
    def _squares(self) -> float:
        return self.sum if self.proportion else self.sum_squares


@dataclass(frozen=True)
class EffectMoments:
    estimate: float
    se: float
    error: str | None = None


def _plain(a: CellStat, b: CellStat, relative: bool) -> EffectMoments:
    var_a, var_b = a.variance, b.variance
    if relative:
        variance = 0.0 if a.mean == 0 else var_b / b.n / a.mean**2 + var_a / a.n * b.mean**2 / a.mean**4
    else:
        variance = var_b / b.n + var_a / a.n
    if var_a <= 0 or var_b <= 0 or variance <= 0:
        return EffectMoments(0.0, 0.0, ZERO_VARIANCE)
    if a.mean == 0:
        return EffectMoments(0.0, 0.0, ZERO_BASELINE)
    estimate = (b.mean - a.mean) / abs(a.mean) if relative else b.mean - a.mean
    return EffectMoments(estimate, math.sqrt(variance))


def _total(cells: Sequence[tuple[CellStat, CellStat]]) -> tuple[CellStat, CellStat]:
    if len(cells) == 1:
        return cells[0]
    a, b = cells[0]
    for more_a, more_b in cells[1:]:
        a, b = a + more_a, b + more_b
    return a, b


def post_stratified(cells: Sequence[tuple[CellStat, CellStat]], *, relative: bool) -> EffectMoments:
    """The post-stratified effect of treatment (second) over control (first) across strata."""
    total_a, total_b = _total(cells)
    if total_a.variance <= 0 or total_b.variance <= 0:
        return EffectMoments(0.0, 0.0, ZERO_VARIANCE)
    if total_a.mean == 0:
        return EffectMoments(0.0, 0.0, ZERO_BASELINE)
    ordered = sorted(cells, key=lambda cell: cell[0].n + cell[1].n, reverse=True)
    kept = [ordered[0]]
    for a, b in ordered[1:]:
        if a.variance > 0 and b.variance > 0:
            kept.append((a, b))
        else:
            kept[0] = (kept[0][0] + a, kept[0][1] + b)
    if len(kept) == 1:
        return _plain(*kept[0], relative)
    rows = []  # (n, control mean, effect, var control mean, var effect, cov)
    for a, b in kept:
        if a.variance <= 0 or b.variance <= 0:
            return EffectMoments(0.0, 0.0, ZERO_VARIANCE)
        n = a.n + b.n
        var_a = a.variance * n / a.n
        var_b = b.variance * n / b.n
        rows.append((n, a.mean, b.mean - a.mean, var_a, var_b + var_a, -var_a))
    total = sum(row[0] for row in rows)
    nu = [row[0] / total for row in rows]
    mean0 = sum(w * row[1] for w, row in zip(nu, rows, strict=True))
    mean1 = sum(w * row[2] for w, row in zip(nu, rows, strict=True))
    # A (diag(nu) - nu nu^T) A^T / N = (sum nu x y - (sum nu x)(sum nu y)) / N for rows x, y of A.
    c00 = sum(w * row[1] * row[1] for w, row in zip(nu, rows, strict=True)) - mean0 * mean0
    c11 = sum(w * row[2] * row[2] for w, row in zip(nu, rows, strict=True)) - mean1 * mean1
    c01 = sum(w * row[1] * row[2] for w, row in zip(nu, rows, strict=True)) - mean0 * mean1
    c00 += sum(w * row[3] for w, row in zip(nu, rows, strict=True))
    c11 += sum(w * row[4] for w, row in zip(nu, rows, strict=True))
    c01 += sum(w * row[5] for w, row in zip(nu, rows, strict=True))
    c00, c11, c01 = c00 / total, c11 / total, c01 / total
    if relative:
        if mean0 == 0:
            return EffectMoments(0.0, 0.0, ZERO_BASELINE)
        g0, g1 = -mean1 / mean0**2, 1 / mean0
        variance = g0 * g0 * c00 + 2 * g0 * g1 * c01 + g1 * g1 * c11
        estimate = mean1 / abs(mean0)
    else:
        variance, estimate = c11, mean1
    if variance <= 0:
        return EffectMoments(0.0, 0.0, ZERO_VARIANCE)
    if mean0 == 0:
        return EffectMoments(0.0, 0.0, ZERO_BASELINE)
    return EffectMoments(estimate, math.sqrt(variance))


class PostStratifiedBlock(BaseModel):
    """A post-stratified estimate with its normal interval and two-sided p-value."""

    estimate: float | None = Field(description="Point estimate (relative lift or absolute difference)")
    se: float | None
    ci: Interval | None
    p_value: float | None
    error: str | None = Field(description="Why it could not be computed: zero_variance, zero_baseline")


def post_stratified_block(moments: EffectMoments, alpha: float) -> PostStratifiedBlock:
    """The estimate as an API block: estimate +- z_(1 - alpha/2) se, p from the normal."""
    if moments.error is not None:
        return PostStratifiedBlock(estimate=None, se=None, ci=None, p_value=None, error=moments.error)
    z = norm_isf(alpha / 2)
    half = z * moments.se
    p_value = min(1.0, 2 * norm_sf(abs(moments.estimate) / moments.se))
    return PostStratifiedBlock(
        estimate=moments.estimate,
        se=moments.se,
        ci=(moments.estimate - half, moments.estimate + half),
        p_value=p_value,
        error=None,
    )
