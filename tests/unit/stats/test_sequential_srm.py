"""abtest.stats.sequential_srm: Optimizely ssrm-test's reference values, the Bayes factor's closed form
(scipy), the invariants, the state's round trip, and an A/A simulation of the false-alarm guarantee."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gammaln

from abtest.stats.sequential_srm import (
    DEFAULT_CONCENTRATION,
    SEQUENTIAL_SRM_THRESHOLD,
    SequentialSrm,
    sequential_srm_p_values,
)
from abtest.stats.srm import srm_p_value

# Produced by tests/golden/make_ssrm_vectors.py with ssrm-test 0.1.5 in a throwaway venv (ssrm-test
# needs numpy<2, so it cannot be installed next to the project); see that script to regenerate.
VECTORS = json.loads((Path(__file__).resolve().parents[2] / "golden" / "ssrm_vectors.json").read_text())
CASES = VECTORS["cases"]
TOLERANCE = 1e-9


def _replay(case: dict[str, Any]) -> list[SequentialSrm]:
    periods = case["periods"]
    state = SequentialSrm.start(periods[0]["expected"], concentration=case["concentration"])
    states = []
    for index, period in enumerate(periods):
        if index:
            state = state.reweight(period["expected"])
        for counts in period["checks"]:
            state = state.add(counts)
            states.append(state)
    return states


def test_the_vectors_cover_what_they_should() -> None:
    names = {case["name"] for case in CASES}
    assert len(names) == len(CASES) >= 20
    all_p = [p for case in CASES for p in case["p_values"]]
    # Both sides of the threshold, p = 1 (BF <= 1), an underflow to 0, and moderate values in between.
    assert min(all_p) == 0.0
    assert 1.0 in all_p
    assert any(1e-3 < p < 0.9 for p in all_p)
    assert any(0 < p < SEQUENTIAL_SRM_THRESHOLD for p in all_p)
    assert {len(case["periods"][0]["expected"]) for case in CASES} >= {2, 3, 4, 5, 20}
    assert any(len(case["periods"]) > 1 for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_p_values_equal_ssrm_test(case: dict[str, Any]) -> None:
    states = _replay(case)
    ours = [state.p_value for state in states]
    assert len(ours) == len(case["p_values"])
    for check, (mine, reference) in enumerate(zip(ours, case["p_values"], strict=True)):
        assert abs(mine - reference) <= TOLERANCE, (check, mine, reference)
        # Tiny p-values agree relatively too, not only by both being ~0.
        if reference > 1e-300:
            assert mine == pytest.approx(reference, rel=1e-8), check
    if len(case["periods"]) == 1:
        assert sequential_srm_p_values(
            case["periods"][0]["checks"], case["periods"][0]["expected"], concentration=case["concentration"]
        ) == pytest.approx(ours, abs=0.0)


@pytest.mark.parametrize("case", [c for c in CASES if "log_bayes_factors" in c], ids=lambda c: c["name"])
def test_log_bayes_factors_equal_ssrm_test(case: dict[str, Any]) -> None:
    for state, reference in zip(_replay(case), case["log_bayes_factors"], strict=True):
        assert state.log_bayes_factor == pytest.approx(reference, rel=1e-12, abs=1e-9)


def _closed_form_log_bf(totals: list[int], shares: list[float], concentration: float) -> float:
    """log BF from the cumulative totals alone (exchangeability: the checks' split cancels), by scipy."""
    alpha = np.array(shares) * concentration
    n = np.array(totals, dtype=float)
    return float(
        gammaln(alpha.sum())
        - gammaln(alpha).sum()
        + gammaln(alpha + n).sum()
        - gammaln(alpha.sum() + n.sum())
        - np.sum(np.where(n > 0, n * np.log(shares), 0.0))
    )


counts_strategy = st.integers(min_value=2, max_value=6).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(min_value=0.05, max_value=1.0), min_size=k, max_size=k),
        st.lists(
            st.lists(st.integers(min_value=0, max_value=50_000), min_size=k, max_size=k),
            min_size=1,
            max_size=12,
        ),
        st.sampled_from([100.0, 1_000.0, DEFAULT_CONCENTRATION, 100_000.0]),
    )
)


@settings(max_examples=150, deadline=None)
@given(counts_strategy)
def test_bayes_factor_is_the_closed_form_on_totals(drawn: tuple[list[float], list[list[int]], float]) -> None:
    weights, checks, concentration = drawn
    shares = [w / math.fsum(weights) for w in weights]
    shares[-1] = 1.0 - math.fsum(shares[:-1])
    state = SequentialSrm.start(shares, concentration=concentration)
    totals = [0] * len(shares)
    previous = 1.0
    for counts in checks:
        state = state.add(counts)
        totals = [t + n for t, n in zip(totals, counts, strict=True)]
        expected_log_bf = _closed_form_log_bf(totals, shares, concentration)
        assert state.log_bayes_factor == pytest.approx(expected_log_bf, rel=1e-9, abs=1e-7)
        # Anytime-valid p-value: in [0, 1], never rising, and at most 1/BF now.
        assert 0.0 <= state.p_value <= previous
        if state.log_bayes_factor > 0:
            assert state.p_value <= math.exp(-state.log_bayes_factor) * (1 + 1e-12)
        previous = state.p_value
    # The same users in one check give the same Bayes factor (the p-value may differ: fewer looks).
    once = SequentialSrm.start(shares, concentration=concentration).add(totals)
    assert once.log_bayes_factor == pytest.approx(state.log_bayes_factor, rel=1e-9, abs=1e-7)
    assert once.p_value >= state.p_value or math.isclose(once.p_value, state.p_value, rel_tol=1e-9)


def test_a_check_without_users_changes_nothing_but_the_count() -> None:
    state = SequentialSrm.start([0.5, 0.5]).add([5_300, 4_700])
    after = state.add([0, 0])
    assert after.p_value == state.p_value
    assert after.log_bayes_factor == state.log_bayes_factor
    assert after.checks == state.checks + 1


def test_a_clear_mismatch_is_flagged_and_stays_flagged() -> None:
    state = SequentialSrm.start([0.5, 0.5])
    assert not state.flagged()
    state = state.add([5_600, 4_400])
    assert state.p_value < SEQUENTIAL_SRM_THRESHOLD
    assert state.flagged()
    # Balanced traffic afterwards lowers the Bayes factor but not the (running minimum) p-value.
    later = state.add([50_000, 50_000])
    assert later.log_bayes_factor < state.log_bayes_factor
    assert later.p_value == state.p_value
    assert later.flagged()
    assert not later.flagged(threshold=later.p_value)


def test_reweighting_multiplies_the_periods_bayes_factors() -> None:
    first = SequentialSrm.start([0.5, 0.5]).add([5_120, 4_880]).add([5_090, 4_910])
    second_alone = SequentialSrm.start([0.8, 0.2]).add([7_900, 2_100])
    both = first.reweight([0.8, 0.2]).add([7_900, 2_100])
    assert (both.periods, both.checks) == (2, 3)
    assert both.log_bayes_factor_closed == first.log_bayes_factor
    assert both.period_log_bayes_factor == second_alone.log_bayes_factor
    assert both.log_bayes_factor == first.log_bayes_factor + second_alone.log_bayes_factor
    assert both.p_value == pytest.approx(min(first.p_value, math.exp(-both.log_bayes_factor)), rel=1e-15)
    assert both.p_value < first.p_value
    # The new period starts from its prior against the new shares: 80/20 traffic is no mismatch there,
    # while a single test against the old 50/50 null would call it an overwhelming one.
    assert second_alone.p_value > 0.1
    assert SequentialSrm.start([0.5, 0.5]).add([7_900, 2_100]).p_value == 0.0


def test_the_state_survives_a_json_round_trip_exactly() -> None:
    state = SequentialSrm.start([0.2, 0.3, 0.5]).add([210, 290, 500]).reweight([0.3, 0.3, 0.4]).add([5, 2, 9])
    restored = SequentialSrm.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    assert restored.add([301, 310, 402]) == state.add([301, 310, 402])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: SequentialSrm.start([1.0]), "at least two"),
        (lambda: SequentialSrm.start([0.5, 0.6]), "add up to 1"),
        (lambda: SequentialSrm.start([1.5, -0.5]), "positive"),
        (lambda: SequentialSrm.start([0.5, math.nan]), "positive"),
        (lambda: SequentialSrm.start([0.5, 0.5], concentration=0), "concentration"),
        (lambda: SequentialSrm.start([0.5, 0.5]).add([1, 2, 3]), "one per variant"),
        (lambda: SequentialSrm.start([0.5, 0.5]).add([1, -2]), "nonnegative"),
        (lambda: SequentialSrm.start([0.5, 0.5]).add([1, 2.0]), "nonnegative integers"),  # type: ignore[list-item]
        (lambda: SequentialSrm.start([0.5, 0.5]).add([True, 2]), "nonnegative integers"),
        (lambda: SequentialSrm.start([0.5, 0.5]).reweight([0.2, 0.3, 0.5]), "number of variants"),
        (lambda: SequentialSrm.from_dict({"expected": [0.5, 0.5]}), "missing"),
    ],
)
def test_unusable_input_is_refused(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def _aa_alarm_rates(
    experiments: int, days: int, alphas: tuple[float, ...], seed: int
) -> dict[float, tuple[float, float]]:
    """(sequential, daily chi-squared) share of A/A experiments with an alarm on any day, per alpha.

    Daily new users per experiment: Poisson with a mean drawn log-uniformly from 100 to 10,000.
    """
    rng = np.random.default_rng(seed)
    seq_alarms = dict.fromkeys(alphas, 0)
    chi_alarms = dict.fromkeys(alphas, 0)
    for _ in range(experiments):
        daily = rng.poisson(10 ** rng.uniform(2, 4), size=days)
        first = rng.binomial(daily, 0.5)
        state = SequentialSrm.start([0.5, 0.5])
        totals = [0, 0]
        min_chi = 1.0
        for a, n in zip(first.tolist(), daily.tolist(), strict=True):
            state = state.add([a, n - a])
            totals = [totals[0] + a, totals[1] + n - a]
            min_chi = min(min_chi, srm_p_value(totals, [0.5, 0.5]))
        for alpha in alphas:
            seq_alarms[alpha] += state.p_value < alpha
            chi_alarms[alpha] += min_chi < alpha
    return {alpha: (seq_alarms[alpha] / experiments, chi_alarms[alpha] / experiments) for alpha in alphas}


def test_aa_false_alarms_stay_below_alpha_while_daily_chi_squared_inflates() -> None:
    # 600 A/A experiments x 30 daily looks (bench/bench_srm_aa.py runs the full 2,000).
    rates = _aa_alarm_rates(600, 30, (0.05, 0.001), seed=23)
    sequential_05, chi_05 = rates[0.05]
    sequential_001, _ = rates[0.001]
    assert sequential_05 <= 0.05
    assert sequential_001 <= 0.001
    # Peeking at chi-squared daily for 30 days: several times the nominal 5% (about 0.2 to 0.3).
    assert chi_05 > 2 * 0.05
