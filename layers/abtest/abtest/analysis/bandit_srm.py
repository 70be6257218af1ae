"""A bandit's new users for the rollup's sequential SRM test, split by the weights that chose them (pure).

The alerts' monitor (abtest.analysis.srm_monitor) tests, at every rollup tick, the users it has not seen
yet. A fixed experiment's new users were all expected at its weights; a bandit's were expected at the
weights of the period each was enrolled in. Given each period's users per arm (in time order) and the
users per arm the monitor has seen, the seen ones are the earliest of each arm: what follows them, period
by period, is new, and each period's new users are checked against that period's shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from abtest.analysis.srm_monitor import SrmPeriod, shares_of


def srm_periods(
    variant_ids: Sequence[UUID],
    tested: Sequence[UUID],
    period_users: Sequence[Sequence[int]],
    period_weights: Sequence[Sequence[float]],
    seen: Sequence[int] | None,
) -> list[SrmPeriod]:
    """The monitor's periods: per period (in order) the new users of each tested variant and the
    period's shares over the tested variants. `period_users[t]` and `period_weights[t]` are in
    `variant_ids` order; `seen` in `tested` order (None: nothing seen yet)."""
    index = [list(variant_ids).index(v) for v in tested]
    skip = list(seen) if seen is not None else [0] * len(tested)
    periods = []
    for users, weights in zip(period_users, period_weights, strict=True):
        new = []
        for j, a in enumerate(index):
            count = users[a]
            skipped = min(skip[j], count)
            skip[j] -= skipped
            new.append(count - skipped)
        if any(new):
            periods.append(SrmPeriod(shares_of([weights[a] for a in index]), tuple(new)))
    return periods
