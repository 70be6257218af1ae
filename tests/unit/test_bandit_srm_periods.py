"""abtest.analysis.bandit_srm: a bandit's new users for the sequential SRM, by the period enrolling them."""

from __future__ import annotations

import uuid

from abtest.analysis.bandit_srm import srm_periods
from abtest.analysis.srm_monitor import apply_periods

A, B, C = (uuid.uuid4() for _ in range(3))


def test_the_seen_users_are_the_earliest_and_each_period_keeps_its_shares() -> None:
    users = [[50, 50], [10, 90], [5, 95]]
    weights = [[0.5, 0.5], [0.1, 0.9], [0.05, 0.95]]
    first = srm_periods([A, B], [A, B], users[:2], weights[:2], None)
    assert [(p.shares, p.new_users) for p in first] == [((0.5, 0.5), (50, 50)), ((0.1, 0.9), (10, 90))]
    later = srm_periods([A, B], [A, B], users, weights, (60, 140))
    assert [(p.shares, p.new_users) for p in later] == [((0.05, 0.95), (5, 95))]
    assert srm_periods([A, B], [A, B], users, weights, (65, 235)) == []


def test_only_the_tested_variants_count() -> None:
    periods = srm_periods([A, B, C], [A, C], [[10, 0, 30]], [[0.2, 0.0, 0.8]], None)
    assert [(p.shares, p.new_users) for p in periods] == [((0.2, 0.8), (10, 30))]


def test_users_that_follow_the_moving_weights_raise_no_alarm() -> None:
    users = [[500, 500], [100, 900], [50, 950], [50, 950]]
    weights = [[0.5, 0.5], [0.1, 0.9], [0.05, 0.95], [0.05, 0.95]]
    state = apply_periods(None, srm_periods([A, B], [A, B], users, weights, None))
    assert state is not None
    assert state.p_value > 0.1
    fixed = apply_periods(None, srm_periods([A, B], [A, B], users, [[0.5, 0.5]] * 4, None))
    assert fixed is not None
    assert fixed.p_value < 1e-6  # the same users against the starting weights: a false alarm
