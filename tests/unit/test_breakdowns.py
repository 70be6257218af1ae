"""Breakdowns and strata, pure: capture and normalisation, the design checks, stratified serving
through the in-memory store, slice folding, and the A/A false-flag rate of the heterogeneity test."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from abtest.analysis.breakdowns import (
    SliceMetrics,
    breakdown_metrics,
    breakdown_report,
    empty_stats,
    heterogeneity,
    top_slices,
)
from abtest.analysis.rollup import ExposureTotals, MetricStats
from abtest.contract.blocks import block_slots, stratified_variant
from abtest.domain.breakdowns import (
    HashAssignment,
    StratifiedAssignment,
    capture,
    check_design,
    normalise,
)
from abtest.domain.experiments import Experiment, ExperimentCreate
from abtest.domain.serving import AssignmentService
from abtest.errors import ErrorCode, InvalidInput
from tests.unit.fakes import FakeStore, make_experiment


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "(none)"),
        ("", "(none)"),
        ("FR", "FR"),
        (7, "7"),
        (7.0, "7"),
        (2.5, "2.5"),
        (True, "true"),
        ({"b": 1, "a": [1, 2]}, '{"a":[1,2],"b":1}'),
        ("é" * 100, "é" * 64),
    ],
)
def test_values_are_normalised_to_bounded_strings(value: Any, expected: str) -> None:
    assert normalise(value) == expected


def test_capture_walks_dotted_paths() -> None:
    attributes = {"country": "FR", "device": {"type": "ios"}}
    assert capture(["country", "device.type", "app.version"], attributes) == {
        "country": "FR",
        "device.type": "ios",
        "app.version": "(none)",
    }


def test_the_design_adds_the_stratum_and_refuses_large_blocks_and_bandits() -> None:
    stratified = StratifiedAssignment(type="stratified", stratum="plan")
    assert check_design(["country"], stratified, [0.5, 0.5]) == ["country", "plan"]
    assert check_design(["plan"], stratified, [0.5, 0.5]) == ["plan"]
    assert check_design(["a"], HashAssignment(), [0.52, 0.48]) == ["a"]
    with pytest.raises(InvalidInput) as large:
        check_design([], stratified, [0.52, 0.48])
    assert (large.value.code, large.value.field) == (ErrorCode.BLOCK_TOO_LARGE, "assignment")
    with pytest.raises(InvalidInput) as bandit:
        check_design([], stratified, [0.5, 0.5], {"type": "bandit"})
    assert bandit.value.code == ErrorCode.STRATIFIED_BANDIT
    with pytest.raises(InvalidInput) as many:
        check_design(["a", "b", "c", "d", "e"], stratified, [0.5, 0.5])
    assert many.value.field == "dimensions"


def test_the_create_body_takes_dimensions_and_the_assignment_design() -> None:
    body = ExperimentCreate.model_validate(
        {
            "name": "x",
            "variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}],
            "dimensions": ["country"],
            "assignment": {"type": "stratified", "stratum": "plan"},
        }
    )
    assert isinstance(body.assignment, StratifiedAssignment)
    with pytest.raises(ValueError, match="unique"):
        ExperimentCreate.model_validate(
            {
                "name": "x",
                "variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}],
                "dimensions": ["country", "country"],
            }
        )


def stratified_experiment(weights: tuple[float, ...] = (0.5, 0.25, 0.25)) -> Experiment:
    experiment = make_experiment("strat", surface="checkout", weights=weights)
    return experiment.model_copy(
        update={
            "dimensions": ["country", "plan"],
            "assignment": StratifiedAssignment(type="stratified", stratum="plan"),
        }
    )


def test_stratified_serving_follows_the_blocks_and_captures_once() -> None:
    store = FakeStore()
    experiment = store.add(stratified_experiment())
    service = AssignmentService(store, store, experiment_ttl=60, catalog_ttl=60)
    slots = block_slots([0.5, 0.25, 0.25], 4)
    for n in range(12):
        plan = "pro" if n % 2 else "free"
        served = service.assign(experiment.id, f"u{n}", attributes={"plan": plan, "country": "FR"})
        assert served.variant is not None
    for plan in ("free", "pro"):
        users = [f"u{n}" for n in range(12) if (n % 2 == 1) == (plan == "pro")]
        got = [store.assignments[(experiment.id, u)] for u in users]
        expected = [
            experiment.variants[stratified_variant(experiment.salt, plan, k, slots)].id for k in range(6)
        ]
        assert got == expected
    again = service.assign(experiment.id, "u0", attributes={"plan": "pro", "country": "US"})
    assert again.variant is not None
    assert not again.new_assignment
    assert store.captured[(experiment.id, "u0")] == {"country": "FR", "plan": "free"}


def _slices(experiment: Experiment, sizes: dict[str, int]) -> SliceMetrics:
    slices = SliceMetrics(experiment, "country")
    for value, users in sizes.items():
        stats = slices.slice(value)
        for variant in experiment.variants:
            stats.variants[variant.id] = ExposureTotals(users, users)
            stats.metrics[variant.id] = {"m": MetricStats(users // 10, users / 10, users / 10, users // 10)}
    return slices


def test_the_twenty_largest_values_are_shown_and_the_rest_folded_into_other() -> None:
    experiment = make_experiment()
    sizes = {f"v{i:02d}": 100 + i for i in range(25)} | {"(other)": 7}
    shown = top_slices(_slices(experiment, sizes))
    assert [value for value, _ in shown][:3] == ["v24", "v23", "v22"]
    assert len(shown) == 21
    assert shown[-1][0] == "(other)"
    other = shown[-1][1]
    assert other.variants[experiment.variants[0].id].users == sum(100 + i for i in range(5)) + 7
    report = breakdown_report(_slices(experiment, sizes))
    assert [s.value for s in report.slices] == [value for value, _ in shown]
    assert report.heterogeneity_tests == 21 * 1 * 1 * 2
    assert report.values == 26


def _aa_experiment(
    rng: np.random.Generator, experiment: Experiment, slices: int, metrics: int
) -> SliceMetrics:
    """One A/A experiment's per-slice sufficient statistics, drawn user by user in aggregate."""
    out = SliceMetrics(experiment, "country")
    shares = rng.dirichlet(np.full(slices, 2.0))
    users = rng.multinomial(20_000, shares)
    for s in range(slices):
        stats = out.slice(f"s{s}")
        split = rng.multinomial(users[s], [0.5, 0.5])
        for variant, n in zip(experiment.variants, split, strict=True):
            stats.variants[variant.id] = ExposureTotals(int(n), int(n))
            per: dict[str, MetricStats] = {}
            for m in range(metrics):
                converted = int(rng.binomial(n, 0.05 + 0.05 * m))
                values = rng.lognormal(1.0, 1.0, converted)
                per[f"m{m}"] = MetricStats(
                    converted, float(values.sum()), float((values**2).sum()), converted
                )
            stats.metrics[variant.id] = per
    return out


def aa_false_flag_rate(
    runs: int, seed: int, alpha: float = 0.05, slices: int = 20, metrics: int = 3
) -> float:
    """Share of A/A experiments (`slices` slices x `metrics` metrics) flagging any slice, with the
    flag rule of breakdown_report (Welch slice vs rest, Bonferroni over slices x metrics x 2)."""
    rng = np.random.default_rng(seed)
    experiment = make_experiment()
    control, treatment = (v.id for v in experiment.variants)
    k = slices * metrics * 1 * 2
    flagged = 0
    for _ in range(runs):
        sim = _aa_experiment(rng, experiment, slices, metrics)
        total = empty_stats(experiment)
        for stats in sim.slices.values():
            for vid, totals in stats.variants.items():
                total.variants[vid].add(totals)
            for vid, per in stats.metrics.items():
                for name, metric in per.items():
                    total.metrics[vid].setdefault(name, MetricStats()).add(metric)
        hit = False
        for stats in sim.slices.values():
            rest = empty_stats(experiment)
            for vid in (control, treatment):
                t, s = total.variants[vid], stats.variants[vid]
                rest.variants[vid] = ExposureTotals(t.exposures - s.exposures, t.users - s.users)
                rest.metrics[vid] = {
                    name: MetricStats(
                        m.count - stats.metrics[vid][name].count,
                        m.sum - stats.metrics[vid][name].sum,
                        m.sum_squares - stats.metrics[vid][name].sum_squares,
                        m.users - stats.metrics[vid][name].users,
                    )
                    for name, m in total.metrics[vid].items()
                }
            for name in (f"m{m}" for m in range(metrics)):
                for kind in ("conversion", "value"):
                    _, p = heterogeneity(stats, rest, control, treatment, name, kind)  # type: ignore[arg-type]
                    hit = hit or (p is not None and p < alpha / k)
        flagged += hit
    return flagged / runs


def test_aa_simulation_flags_any_slice_at_most_alpha_of_the_time() -> None:
    started = time.perf_counter()
    rate = aa_false_flag_rate(runs=400, seed=25)
    assert rate <= 0.05, f"A/A experiments flagging a slice: {rate:.3f}"
    assert time.perf_counter() - started < 60


def test_the_report_flags_a_real_difference_in_one_slice() -> None:
    experiment = make_experiment()
    slices = _slices(experiment, {f"v{i}": 2000 for i in range(5)})
    treatment = experiment.variants[1].id
    slices.slices["v0"].metrics[treatment]["m"] = MetricStats(600, 600.0, 600.0, 600)  # 30% vs 10%
    report = breakdown_report(slices, alpha=0.05)
    flags = {s.value: s.heterogeneity_flag for s in report.slices}
    assert flags["v0"] is True
    p_values = {s.value: s.metrics["m"].conversion[0].heterogeneity.p_value for s in report.slices}
    assert min(p_values, key=lambda v: p_values[v] or 1.0) == "v0"
    for difference in ("relative", "absolute"):
        blocks = [getattr(c, difference) for s in report.slices for c in s.metrics["m"].conversion]
        assert all(b.p_value_adjusted is not None and b.p_value_adjusted >= b.p_value for b in blocks)


def test_the_metrics_shown_shrink_with_the_variants_and_stay_bounded() -> None:
    names = [f"m{i:03d}" for i in range(100)]
    assert breakdown_metrics(names, 2, None) == (names[:10], names[10:])
    assert len(breakdown_metrics(names, 3, None)[0]) == 10
    assert len(breakdown_metrics(names, 20, None)[0]) == 1
    assert breakdown_metrics(names, 20, "m050") == (["m050"], [])
    experiment = make_experiment(weights=tuple([0.05] * 20))
    slices = SliceMetrics(experiment, "country")
    for i in range(300):
        stats = slices.slice(f"v{i}")
        for variant in experiment.variants:
            stats.variants[variant.id] = ExposureTotals(50, 50)
            stats.metrics[variant.id] = {name: MetricStats(5, 5.0, 5.0, 5) for name in names}
    report = breakdown_report(slices)
    assert len(report.slices) == 21
    assert len(report.metrics_omitted) == 99
    assert len(report.model_dump_json()) < 1_000_000
