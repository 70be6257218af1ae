"""Bandit experiments' pure parts: the allocation, the serving weights, closing a period, the
period-weighted results and the SRM under moving weights (abtest.domain.bandits, abtest.analysis.bandits)."""

from __future__ import annotations

import pytest

from abtest.analysis.bandits import PeriodStats, bandit_estimates, period_weighted
from abtest.analysis.results import results_report
from abtest.analysis.rollup import ExposureTotals, MetricStats, VariantMetrics
from abtest.domain import bandits
from abtest.domain.bandit_reweight import decide
from abtest.domain.bandits import (
    Allocation,
    BanditServing,
    check_allocation,
    check_metric_direction,
    decode_period_cursor,
    serving_weights,
)
from abtest.errors import InvalidInput
from abtest.stats import bandit as engine
from abtest.stats.bandit import ArmStats
from tests.unit.fakes import make_experiment

BANDIT = Allocation(type="bandit", metric="purchase", analysis="conversion", period_hours=1)


def test_the_domain_defaults_are_the_engines() -> None:
    assert bandits.DEFAULT_MIN_WEIGHT == engine.DEFAULT_MIN_WEIGHT
    assert bandits.DEFAULT_MIN_USERS_PER_ARM == engine.DEFAULT_MIN_USERS_PER_ARM
    assert set(bandits.Outcome.__args__) == set(engine.Outcome.__args__)  # type: ignore[attr-defined]


def test_a_bandit_is_stored_with_its_defaults_and_a_fixed_one_bare() -> None:
    filled = check_allocation(BANDIT, 3)
    assert (filled.direction, filled.min_users_per_arm, filled.min_weight) == ("higher", 100, 0.01)
    assert filled.model_dump() == {
        "type": "bandit",
        "metric": "purchase",
        "analysis": "conversion",
        "direction": "higher",
        "period_hours": 1.0,
        "min_users_per_arm": 100,
        "min_weight": 0.01,
    }
    assert check_allocation(Allocation(), 2).model_dump() == {"type": "fixed"}


@pytest.mark.parametrize(
    ("allocation", "arms", "field"),
    [
        (Allocation(type="fixed", min_weight=0.1), 2, "allocation.min_weight"),
        (Allocation(type="bandit", analysis="value", period_hours=2), 2, "allocation.metric"),
        (BANDIT.model_copy(update={"min_weight": 0.3}), 4, "allocation.min_weight"),
    ],
)
def test_an_unusable_allocation_names_its_field(allocation: Allocation, arms: int, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_allocation(allocation, arms)
    assert caught.value.field == field


def test_the_direction_must_agree_with_the_metric_definition() -> None:
    bandit = check_allocation(BANDIT, 2)
    check_metric_direction(bandit, None)  # no definition: nothing to agree with
    check_metric_direction(bandit, "higher")
    check_metric_direction(Allocation(), "lower")  # a fixed allocation has no direction
    with pytest.raises(InvalidInput) as caught:
        check_metric_direction(bandit, "lower")
    assert caught.value.field == "allocation.direction"


def test_new_users_get_the_current_weights_else_the_starting_ones() -> None:
    assert serving_weights([0.5, 0.5], None) == [0.5, 0.5]
    assert serving_weights([0.5, 0.5], BanditServing(period=1)) == [0.5, 0.5]
    assert serving_weights([0.5, 0.5], BanditServing(period=2, weights=[0.1, 0.9])) == [0.1, 0.9]


def test_closing_a_period_keeps_the_weights_unless_updated() -> None:
    bandit = check_allocation(BANDIT, 2)
    few = decide([[ArmStats.from_conversions(10, 1), ArmStats.from_conversions(10, 5)]], [0.5, 0.5], bandit)
    assert few.outcome == "not_enough_users"
    assert few.weights_after == [0.5, 0.5]
    assert few.p_best is not None
    enough = decide(
        [[ArmStats.from_conversions(500, 25), ArmStats.from_conversions(500, 100)]], [0.5, 0.5], bandit
    )
    assert enough.outcome == "updated"
    assert enough.weights_after[1] > 0.98
    assert min(enough.weights_after) >= 0.01
    broken = decide([[ArmStats(500, 100.0, 5.0), ArmStats.from_conversions(500, 100)]], [0.5, 0.5], bandit)
    assert broken.outcome == "invalid_statistics"
    assert broken.weights_after == [0.5, 0.5]
    assert broken.arms is None
    assert broken.error is not None
    assert broken.error.startswith("periods[0][0]")
    nothing = decide([], [0.5, 0.5], bandit)
    assert nothing.outcome == "not_enough_users"


def test_the_period_cursor_is_a_period_number() -> None:
    assert decode_period_cursor(None) is None
    assert decode_period_cursor("12") == 12
    for bad in ("x", "-1", "1" * 10):
        with pytest.raises(InvalidInput):
            decode_period_cursor(bad)


def _simpson() -> tuple[VariantMetrics, dict[int, PeriodStats]]:
    """Both arms convert at 10% in period 1 and 20% in period 2; B got 90% of period 2's users."""
    experiment = make_experiment(weights=(0.5, 0.5)).model_copy(
        update={
            "allocation": check_allocation(BANDIT, 2),
            "bandit": BanditServing(period=3, weights=[0.1, 0.9]),
        }
    )
    a, b = (v.id for v in experiment.variants)

    def period(na: int, ca: int, nb: int, cb: int) -> PeriodStats:
        return PeriodStats(
            {a: ExposureTotals(na, na), b: ExposureTotals(nb, nb)},
            {
                a: {"purchase": MetricStats(ca, float(ca), float(ca), ca)},
                b: {"purchase": MetricStats(cb, float(cb), float(cb), cb)},
            },
        )

    periods = {1: period(900, 90, 100, 10), 2: period(100, 20, 900, 180)}
    pooled = VariantMetrics(
        experiment,
        {a: ExposureTotals(1000, 1000), b: ExposureTotals(1000, 1000)},
        {
            a: {"purchase": MetricStats(110, 110.0, 110.0, 110)},
            b: {"purchase": MetricStats(190, 190.0, 190.0, 190)},
        },
    )
    return pooled, periods


def test_results_of_a_bandit_are_period_weighted_and_its_srm_follows_the_weights() -> None:
    pooled, periods = _simpson()
    experiment = pooled.experiment
    estimates = bandit_estimates(experiment, periods, {1: [0.9, 0.1], 2: [0.1, 0.9]}, [0.5, 0.5])
    assert [arm.mean for arm in estimates.arms] == pytest.approx([0.15, 0.15], rel=1e-12)
    assert [arm.expected_users for arm in estimates.arms] == pytest.approx([1000.0, 1000.0])
    assert estimates.srm_flag is False
    weighted = period_weighted(pooled, periods)
    report = results_report(weighted, bandit=estimates)
    conversion = report.metrics["purchase"].conversion.comparisons[0]
    assert conversion.relative.estimate == pytest.approx(0.0, abs=1e-12)  # pooled: +73%
    pooled_report = results_report(pooled)
    assert pooled_report.metrics["purchase"].conversion.comparisons[0].relative.estimate > 0.7
    assert report.srm.flag is False
    assert report.bandit is estimates
    # Counts that the weights in force cannot explain are flagged.
    skewed = bandit_estimates(experiment, periods, {1: [0.1, 0.9], 2: [0.1, 0.9]}, None)
    assert skewed.srm_flag is True
