"""Adaptive Gauss-Kronrod quadrature (7-point Gauss, 15-point Kronrod) in pure Python.

The bandit's P(best) integrals are computed with it (`abtest.stats.bandit`). It is QUADPACK's QAG
strategy without extrapolation: integrate every piece of a partition with the 15-point Kronrod rule,
take |Kronrod - Gauss| as the piece's error estimate, and bisect the piece with the largest estimate
until the estimates add up to less than the tolerance. Everything happens in a fixed order with no
randomness, so the same integrand gives the same floats every time on the same platform; the final
sum is `math.fsum`, exactly rounded, so it does not depend on the order of the pieces either.

The caller passes the breakpoints: the places where the integrand changes quickly (for the bandit,
each arm's posterior mean and a few standard deviations either side). A sharp feature that falls
inside one piece without touching any of its 15 nodes could otherwise go unseen.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["QuadratureResult", "integrate"]

# Nodes (on [-1, 1], the positive half and 0) and weights of the 15-point Kronrod rule and of the
# 7-point Gauss rule embedded in it, as in QUADPACK's dqk15.
_XGK = (
    0.991455371120812639206854697526329,
    0.949107912342758524526189684047851,
    0.864864423359769072789712788640926,
    0.741531185599394439863864773280788,
    0.586087235467691130294144845693013,
    0.405845151377397166906606412076961,
    0.207784955007898467600689403773245,
    0.000000000000000000000000000000000,
)
_WGK = (
    0.022935322010529224963732008058970,
    0.063092092629978553290700663189204,
    0.104790010322250183839876322541518,
    0.140653259715525918745189590510238,
    0.169004726639267902826583426598550,
    0.190350578064785409913256402421014,
    0.204432940075298892414161999234649,
    0.209482141084727828012999174891714,
)
# Gauss weights for the Kronrod nodes of odd index (1, 3, 5) and the centre.
_WG = (
    0.129484966168869693270611432679082,
    0.279705391489276667901467771423780,
    0.381830050505118944950369775488975,
    0.417959183673469387755102040816327,
)

Integrand = Callable[[float], float]


@dataclass(frozen=True, slots=True)
class QuadratureResult:
    """The integral, the sum of the pieces' error estimates, and the number of pieces used."""

    value: float
    error: float
    pieces: int


def _kronrod15(f: Integrand, a: float, b: float) -> tuple[float, float]:
    """(Kronrod estimate, |Kronrod - Gauss|) of the integral of f over [a, b]."""
    centre = 0.5 * (a + b)
    half = 0.5 * (b - a)
    f_centre = f(centre)
    kronrod = _WGK[7] * f_centre
    gauss = _WG[3] * f_centre
    for j in range(7):
        dx = half * _XGK[j]
        pair = f(centre - dx) + f(centre + dx)
        kronrod += _WGK[j] * pair
        if j % 2 == 1:
            gauss += _WG[j // 2] * pair
    return kronrod * half, abs((kronrod - gauss) * half)


def integrate(
    f: Integrand,
    breakpoints: Sequence[float],
    *,
    tolerance: float = 1e-12,
    max_pieces: int = 20_000,
) -> QuadratureResult:
    """Integral of `f` from the smallest to the largest breakpoint, to an absolute `tolerance`.

    `breakpoints` (at least two distinct finite values, any order) start the partition. Pieces are
    bisected, largest error estimate first, until the estimates sum to at most `tolerance`, the
    largest piece can no longer be split in floating point, or `max_pieces` is reached; the result
    says how far it got (`error`), so a caller can check it.
    """
    points = sorted(set(breakpoints))
    if len(points) < 2 or not all(math.isfinite(x) for x in points):
        raise ValueError("need at least two distinct finite breakpoints")
    # Max-heap on the error estimate; ties go to the leftmost piece, so the order is fixed.
    heap: list[tuple[float, float, float, float]] = []
    for a, b in itertools.pairwise(points):
        value, error = _kronrod15(f, a, b)
        heap.append((-error, a, b, value))
    heapq.heapify(heap)
    # A running total (cheap) that is re-added exactly (fsum) whenever it claims to be done, so that
    # rounding drift in the running total can never stop the refinement early.
    total_error = math.fsum(-item[0] for item in heap)
    while len(heap) < max_pieces:
        if total_error <= tolerance:
            total_error = math.fsum(-item[0] for item in heap)
            if total_error <= tolerance:
                break
        negative_error, a, b, _ = heap[0]
        middle = 0.5 * (a + b)
        if not a < middle < b:  # the piece is as small as floating point allows
            break
        heapq.heappop(heap)
        left_value, left_error = _kronrod15(f, a, middle)
        right_value, right_error = _kronrod15(f, middle, b)
        heapq.heappush(heap, (-left_error, a, middle, left_value))
        heapq.heappush(heap, (-right_error, middle, b, right_value))
        total_error += negative_error + left_error + right_error
    return QuadratureResult(
        value=math.fsum(item[3] for item in heap),
        error=math.fsum(-item[0] for item in heap),
        pieces=len(heap),
    )
