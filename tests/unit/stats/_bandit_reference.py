"""An independent reference for the bandit tests: posteriors in numpy, P(best) by scipy's QUADPACK.

Only the tests import scipy and numpy; the code under test uses the standard library alone.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import integrate, special

PRIOR_VARIANCE = 1e4


def _log_ndtr_vector(x: np.ndarray) -> np.ndarray:
    return np.asarray(special.log_ndtr(x), dtype=float)


def exact_p_best(means: Sequence[float], sds: Sequence[float], direction: str = "higher") -> list[float]:
    """P(arm i is the highest (lowest for "lower")) by QUADPACK (scipy.integrate.quad) in log space.

    The range covers every posterior (±12 sd); each posterior's mean and ±1, 3, 6, 9 and 12 sd are
    breakpoints (QUADPACK misses a narrow tail at the edge of a wide piece), so narrow posteriors
    next to wide ones are resolved. Tolerances near 1e-14; its error estimate is checked.
    """
    sign = 1.0 if direction == "higher" else -1.0
    mu = np.array([sign * m for m in means], dtype=float)
    sd = np.array(sds, dtype=float)
    result = []
    for i in range(len(mu)):
        others = np.arange(len(mu)) != i

        # Over u = x - mu[i], so that means far from 0 lose no digits to cancellation.
        offsets = mu - mu[i]

        def integrand(
            u: float, i: int = i, others: np.ndarray = others, offsets: np.ndarray = offsets
        ) -> float:
            log_density = -0.5 * (u / sd[i]) ** 2 - math.log(sd[i] * math.sqrt(2 * math.pi))
            return math.exp(log_density + float(np.sum(_log_ndtr_vector((u - offsets[others]) / sd[others]))))

        low = float(np.min(offsets - 12 * sd))
        high = float(np.max(offsets + 12 * sd))
        points = sorted(
            {
                float(m + c * s)
                for m, s in zip(offsets, sd, strict=True)
                for c in (-12, -9, -6, -3, -1, 0, 1, 3, 6, 9, 12)
            }
            - {low, high}
        )
        points = [p for p in points if low < p < high]
        total = 0.0
        edges = [low, *points, high]
        # quad per piece: `points` with hundreds of entries would exceed its default limit.
        error = 0.0
        for a, b in itertools.pairwise(edges):
            # QUADPACK warns when it cannot reach 1e-15 on pieces where the integrand is ~0 or
            # steep; its own error estimate, checked below, is what the tests rely on.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", integrate.IntegrationWarning)
                value, piece_error = integrate.quad(integrand, a, b, epsabs=1e-15, epsrel=1e-13, limit=200)
            total += value
            error += piece_error
        assert error < 1e-11, f"the reference integral is not accurate enough ({error})"
        result.append(total)
    return result


def reference_posteriors(
    arms: Sequence[tuple[float, float, float]],
) -> tuple[list[float], list[float]]:
    """Posterior means and standard deviations: gbstats' formulas, with the pooled variance for arms
    whose sample variance is 0 (written independently of abtest.stats.bandit)."""
    n = np.array([a[0] for a in arms], dtype=float)
    total = np.array([a[1] for a in arms], dtype=float)
    squares = np.array([a[2] for a in arms], dtype=float)
    mean = np.divide(total, n, out=np.zeros_like(n), where=n > 0)
    variance = np.zeros_like(n)
    several = n > 1
    variance[several] = (squares[several] - total[several] ** 2 / n[several]) / (n[several] - 1)
    pooled = float(np.sum((n[several] - 1) * variance[several]) / np.sum(n[several] - 1))
    used = np.where(variance > 0, variance, pooled)
    data_precision = np.where(n > 0, n / used, 0.0)
    posterior_variance = 1.0 / (1.0 / PRIOR_VARIANCE + data_precision)
    posterior_mean = posterior_variance * data_precision * mean
    return posterior_mean.tolist(), np.sqrt(posterior_variance).tolist()


def reference_weights(p_best: Sequence[float], min_weight: float) -> list[float]:
    """f + (1 - K f) p / sum(p), uniform when K f >= 1."""
    k = len(p_best)
    if k * min_weight >= 1:
        return [1.0 / k] * k
    p = np.array(p_best)
    return (min_weight + (1 - k * min_weight) * p / p.sum()).tolist()
