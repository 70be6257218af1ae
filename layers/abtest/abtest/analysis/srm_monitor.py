"""The rollup's experiment monitor: sequential SRM at every check, and when exposures last grew (pure).

Each rollup tick is one check of every running experiment: the users per variant it has not seen yet
(rolled-up totals minus those of the last check) are added to the experiment's sequential SRM test
(abtest.stats.sequential_srm). A check is a list of periods, each with its expected shares and the new
users seen under them: a fixed-allocation experiment has one period per check, with its weights; a
bandit that reweighted since the last check passes one period per allocation it used (the test closes
the period and multiplies its Bayes factor, so the p-value stays anytime-valid across reweights).

Variants with weight 0 expect nobody and are left out of the test; the tested variants are fixed when
the monitor starts (a variant list never changes once an experiment ran).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from uuid import UUID

from abtest.analysis.results import SrmVerdict
from abtest.stats.sequential_srm import SEQUENTIAL_SRM_THRESHOLD, SequentialSrm


@dataclass(frozen=True)
class SrmPeriod:
    """New users per tested variant seen while `shares` (positive, summing to 1) were expected."""

    shares: tuple[float, ...]
    new_users: tuple[int, ...]


@dataclass(frozen=True)
class Monitor:
    """What is kept per experiment between checks."""

    variant_ids: tuple[UUID, ...]
    srm: SequentialSrm | None
    seen_users: tuple[int, ...]
    seen_exposures: int
    chi2_p: float | None
    last_exposure_at: datetime | None
    seen_conversions: int = 0

    @property
    def sequential_p(self) -> float | None:
        return None if self.srm is None else self.srm.p_value

    def to_row(self) -> dict[str, Any]:
        return {
            "variant_ids": list(self.variant_ids),
            "srm_state": None if self.srm is None else self.srm.to_dict(),
            "seen_users": list(self.seen_users),
            "seen_exposures": self.seen_exposures,
            "chi2_p": self.chi2_p,
            "last_exposure_at": self.last_exposure_at,
            "seen_conversions": self.seen_conversions,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Monitor:
        state = row["srm_state"]
        return cls(
            variant_ids=tuple(row["variant_ids"]),
            srm=None if state is None else SequentialSrm.from_dict(state),
            seen_users=tuple(int(n) for n in row["seen_users"]),
            seen_exposures=int(row["seen_exposures"]),
            chi2_p=row["chi2_p"],
            last_exposure_at=row["last_exposure_at"],
            seen_conversions=int(row.get("seen_conversions") or 0),
        )


def tested_variants(variant_ids: Sequence[UUID], weights: Sequence[float]) -> tuple[UUID, ...]:
    """The variants the SRM test covers: those expected to get users."""
    return tuple(v for v, w in zip(variant_ids, weights, strict=True) if w > 0)


def shares_of(weights: Sequence[float]) -> tuple[float, ...]:
    """Positive weights as shares summing to 1 (weights of tested variants)."""
    total = math.fsum(weights)
    return tuple(w / total for w in weights)


def apply_periods(state: SequentialSrm | None, periods: Sequence[SrmPeriod]) -> SequentialSrm | None:
    """The test after `periods` in order: a period whose shares differ from the current ones closes the
    current period (reweight); a period without new users adds no check."""
    for period in periods:
        if not any(period.new_users):
            continue
        if state is None:
            state = SequentialSrm.start(period.shares)
        elif not _same(state.expected, period.shares):
            state = state.reweight(period.shares)
        state = state.add(list(period.new_users))
    return state


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15) for x, y in zip(a, b, strict=False)
    )


def check(
    previous: Monitor | None,
    *,
    variant_ids: Sequence[UUID],
    weights: Sequence[float],
    users: Sequence[int],
    exposures: int,
    chi2_p: float | None,
    now: datetime,
    periods: Sequence[SrmPeriod] | None = None,
) -> Monitor:
    """The monitor after one check of an experiment whose rolled-up totals are `users` per variant (in
    `variant_ids` order) and `exposures` in all.

    `periods` (bandits): the new users of the tested variants split by the shares they were served
    under; by default one period with the experiment's weights and every new user since the last check.
    """
    by_id = dict(zip(variant_ids, users, strict=True))
    if previous is None:
        tested = tested_variants(variant_ids, weights)
        previous = Monitor(tested, None, tuple(0 for _ in tested), 0, None, None)
    tested = previous.variant_ids
    totals = tuple(by_id.get(v, 0) for v in tested)
    if periods is None:
        weight_of = dict(zip(variant_ids, weights, strict=True))
        # Totals never shrink in a rollup; if they did (data repaired by hand), nothing is un-added.
        new = tuple(max(t - s, 0) for t, s in zip(totals, previous.seen_users, strict=True))
        periods = [SrmPeriod(shares_of([weight_of[v] for v in tested]), new)] if len(tested) >= 2 else []
    srm = apply_periods(previous.srm, periods)
    grew = exposures > previous.seen_exposures
    return replace(
        previous,
        srm=srm,
        seen_users=tuple(max(t, s) for t, s in zip(totals, previous.seen_users, strict=True)),
        seen_exposures=max(exposures, previous.seen_exposures),
        chi2_p=chi2_p,
        last_exposure_at=now if grew else previous.last_exposure_at,
    )


def with_sequential(
    verdict: SrmVerdict, monitor: Monitor | None, threshold: float = SEQUENTIAL_SRM_THRESHOLD
) -> SrmVerdict:
    """The chi-squared verdict with the sequential p-value of the last rollup beside it."""
    p = None if monitor is None else monitor.sequential_p
    return verdict.model_copy(
        update={"sequential_p_value": p, "sequential_flag": p is not None and p < threshold}
    )


def sequential_by_day(days: dict[date, float], day: date) -> float | None:
    """The sequential p-value of the last check on or before `day` (None before the first)."""
    earlier = [d for d in days if d <= day]
    return days[max(earlier)] if earlier else None
