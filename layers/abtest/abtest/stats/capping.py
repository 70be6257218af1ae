"""Capping (winsorization) of per-user totals before analysis, as GrowthBook does it.

A few extreme users (a bot, a reseller) can dominate a mean metric's variance. GrowthBook's
`cappingSettings` replace each user's total x by min(x, cap) before the sums are taken:
- `absolute`: cap = value (any positive number);
- `percentile`: cap = PERCENTILE_CONT(value) of the per-user totals pooled over all variants (value in
  (0, 1), e.g. 0.99), so that every variant is capped at the same number and the cap itself does not
  differ by treatment; with `ignore_zeros` the users whose total is 0 are left out of that percentile
  (they are still analysed).
Only the upper tail is capped, as GrowthBook's SQL (`LEAST(value, cap)`) does; negative totals are kept.

An absolute cap can be applied as each user's total is folded (it does not depend on other users). A
percentile cap depends on every user's total, so it moves as data arrive and must be computed at read
time from the stored per-user totals: one sort of all N totals (O(N log N) time, O(N) memory: about 8
bytes a user for the pooled copy plus the per-variant lists the caller holds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from abtest.stats.inputs import MeanStats
from abtest.stats.quantile import percentile_cont
from abtest.stats.ratio import RatioStats

__all__ = ["Capping", "cap_value", "capped_mean_stats", "capped_ratio_stats"]


class Capping(BaseModel):
    """`{"type": "absolute" | "percentile", "value": x, "ignore_zeros": false}` (GrowthBook's shape)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: Literal["absolute", "percentile"]
    value: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    ignore_zeros: bool = False

    @model_validator(mode="after")
    def _percentile_below_one(self) -> Capping:
        if self.type == "percentile" and not self.value < 1.0:
            raise ValueError("a percentile cap's value is a fraction in (0, 1), e.g. 0.99")
        return self


def cap_value(totals_by_variant: Sequence[Sequence[float]], capping: Capping) -> float | None:
    """The number every per-user total is capped at; None when a percentile has no totals to read."""
    if capping.type == "absolute":
        return capping.value
    pooled = sorted(
        total
        for totals in totals_by_variant
        for total in totals
        if not (capping.ignore_zeros and total == 0.0)
    )
    if not pooled:
        return None
    return percentile_cont(pooled, capping.value)


def _capped(totals: Sequence[float], cap: float | None) -> list[float]:
    return list(totals) if cap is None else [min(total, cap) for total in totals]


def capped_mean_stats(
    totals_by_variant: Sequence[Sequence[float]], capping: Capping | None
) -> list[MeanStats]:
    """Per-variant `MeanStats` (users, sum, sum of squares) of the per-user totals after capping.

    `totals_by_variant[i]` holds one total per exposed user of variant i (0 for a user with no event).
    """
    cap = cap_value(totals_by_variant, capping) if capping is not None else None
    result: list[MeanStats] = []
    for totals in totals_by_variant:
        capped = _capped(totals, cap)
        result.append(
            MeanStats(
                users=len(capped),
                sum=math.fsum(capped),
                sum_squares=math.fsum(value * value for value in capped),
            )
        )
    return result


def capped_ratio_stats(
    pairs_by_variant: Sequence[Sequence[tuple[float, float]]],
    numerator_capping: Capping | None,
    denominator_capping: Capping | None,
) -> list[RatioStats]:
    """Per-variant `RatioStats` of (numerator, denominator) per-user totals, each side capped by its own
    metric's definition (a percentile cap pooled over variants on that side), as GrowthBook caps both."""
    numerators = [[x for x, _ in pairs] for pairs in pairs_by_variant]
    denominators = [[y for _, y in pairs] for pairs in pairs_by_variant]
    x_cap = cap_value(numerators, numerator_capping) if numerator_capping is not None else None
    y_cap = cap_value(denominators, denominator_capping) if denominator_capping is not None else None
    result: list[RatioStats] = []
    for xs_raw, ys_raw in zip(numerators, denominators, strict=True):
        xs, ys = _capped(xs_raw, x_cap), _capped(ys_raw, y_cap)
        result.append(
            RatioStats(
                users=len(xs),
                sum_x=math.fsum(xs),
                sum_x2=math.fsum(x * x for x in xs),
                sum_y=math.fsum(ys),
                sum_y2=math.fsum(y * y for y in ys),
                sum_xy=math.fsum(x * y for x, y in zip(xs, ys, strict=True)),
            )
        )
    return result
