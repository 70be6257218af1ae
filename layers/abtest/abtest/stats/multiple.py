"""Multiple-comparison adjustment of p-values across treatments and metrics.

- "holm": Holm (1979) step-down family-wise error control, p_(i) -> max_(j <= i) min(1, (m - j + 1) p_(j));
- "bh": Benjamini & Hochberg (1995) false discovery rate, p_(i) -> min_(j >= i) min(1, m p_(j) / j).
Both match `statsmodels.stats.multitest.multipletests` ("holm", "fdr_bh"). Missing p-values (None, from
comparisons that could not be made) are left out of the family and stay None.
"""

from __future__ import annotations

from collections.abc import Sequence

from abtest.stats.inputs import Correction

__all__ = ["adjust_p_values"]


def adjust_p_values(p_values: Sequence[float | None], method: Correction) -> list[float | None]:
    """Adjusted p-values in the input order; None entries are skipped and returned as None."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    for p, _ in present:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must be in [0, 1], got {p!r}")
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    ordered = sorted(present)
    if method == "holm":
        running = 0.0
        for rank, (p, index) in enumerate(ordered):
            running = max(running, min(1.0, (m - rank) * p))
            adjusted[index] = running
    elif method == "bh":
        running = 1.0
        for rank in range(m - 1, -1, -1):
            p, index = ordered[rank]
            # p / (j / m) rather than m p / j: the same rounding as statsmodels, and never below p.
            running = min(running, p / ((rank + 1) / m))
            adjusted[index] = running
    else:
        raise ValueError(f"unknown method {method!r}; use 'holm' or 'bh'")
    return adjusted
