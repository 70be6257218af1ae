"""The report builders (analysis/metrics_report.py, analysis/results.py) on hand-made statistics."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abtest.analysis.metrics_report import metrics_report
from abtest.analysis.results import results_report, srm_alerts, srm_verdict
from abtest.analysis.rollup import ExposureTotals, MetricStats, RunningAllocation, VariantMetrics
from abtest.domain.experiments import Experiment, Status, Variant
from abtest.stats import BinomialStats, MeanStats, analyze
from abtest.stats.outputs import MetricAnalysis

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def experiment(weights: tuple[float, ...] = (0.5, 0.5), status: Status = Status.RUNNING) -> Experiment:
    experiment_id = uuid.uuid4()
    return Experiment(
        id=experiment_id,
        name="exp",
        description="",
        status=status,
        traffic_allocation=1.0,
        salt=str(experiment_id),
        surface="checkout",
        variants=[
            Variant(id=uuid.uuid4(), name=f"v{i}", description="", weight=w, config={}, position=i)
            for i, w in enumerate(weights)
        ],
        created_at=NOW,
        updated_at=NOW,
        started_at=NOW,
        completed_at=None,
    )


def stats_of(
    exp: Experiment,
    users: list[int],
    metrics: dict[str, list[tuple[int, float, float, int] | None]],
) -> VariantMetrics:
    """Exposed users per variant, and per metric (count, sum, sum_squares, users) per variant or None."""
    ids = [v.id for v in exp.variants]
    per_variant: dict[uuid.UUID, dict[str, MetricStats]] = {vid: {} for vid in ids}
    for name, values in metrics.items():
        for vid, value in zip(ids, values, strict=True):
            if value is not None:
                per_variant[vid][name] = MetricStats(*value)
    return VariantMetrics(
        experiment=exp,
        variants={vid: ExposureTotals(exposures=2 * n, users=n) for vid, n in zip(ids, users, strict=True)},
        metrics=per_variant,
    )


def as_json(value: Any) -> Any:
    """What the API sends: the JSON text, decoded (so absent keys and int/float spelling both count)."""
    return json.loads(json.dumps(value))


# The metrics report


def test_metrics_report_is_per_exposed_user_and_lists_every_metric_everywhere() -> None:
    exp = experiment()
    stats = stats_of(exp, [100, 0], {"purchase": [(30, 45.0, 90.0, 20), None], "click": [None, None]})

    report = metrics_report(stats)

    control, treatment = (report.variant_metrics[v.id] for v in exp.variants)
    assert (control.variant_name, control.weight, control.exposures, control.unique_users) == (
        "v0",
        0.5,
        200,
        100,
    )
    purchase = control.conversions["purchase"]
    assert (purchase.count, purchase.sum, purchase.users, purchase.sum_squares) == (30, 45.0, 20, 90.0)
    assert purchase.mean == pytest.approx(0.45)  # sum / exposed users, not per event
    assert purchase.conversion_rate == pytest.approx(0.2)  # converting users / exposed users
    # A variant without users has no rates (null, never NaN) and still lists every metric, at zero.
    assert set(treatment.conversions) == {"purchase"}
    zero = treatment.conversions["purchase"]
    assert (zero.count, zero.sum, zero.users, zero.mean, zero.conversion_rate) == (0, 0.0, 0, None, None)
    assert list(report.variant_metrics) == [v.id for v in exp.variants]
    assert (report.experiment_id, report.status) == (exp.id, "running")


def test_metrics_report_without_metrics() -> None:
    exp = experiment()
    report = metrics_report(stats_of(exp, [3, 4], {}))
    assert [r.conversions for r in report.variant_metrics.values()] == [{}, {}]
    assert [r.unique_users for r in report.variant_metrics.values()] == [3, 4]


# The results report


def test_results_report_analyses_every_metric_twice_as_the_stats_engine_does() -> None:
    exp = experiment()
    stats = stats_of(exp, [1000, 1000], {"purchase": [(150, 300.0, 900.0, 100), (180, 390.0, 1200.0, 130)]})

    report = results_report(stats, alpha=0.1)

    assert list(report.metrics) == ["purchase"]
    weights = [0.5, 0.5]
    conversion = analyze(
        "binomial",
        [BinomialStats(users=1000, conversions=100), BinomialStats(users=1000, conversions=130)],
        weights=weights,
        alpha=0.1,
    )
    value = analyze(
        "mean",
        [
            MeanStats(users=1000, sum=300.0, sum_squares=900.0),
            MeanStats(users=1000, sum=390.0, sum_squares=1200.0),
        ],
        weights=weights,
        alpha=0.1,
    )
    body = as_json(report.model_dump(mode="json"))
    assert body["metrics"]["purchase"] == {"conversion": as_json(conversion), "value": as_json(value)}
    assert [(v["name"], v["users"], v["exposures"]) for v in body["variants"]] == [
        ("v0", 1000, 2000),
        ("v1", 1000, 2000),
    ]
    # The sequential SRM comes from the rollup's monitor (added by the routes): none in a bare report.
    assert body["srm"] == {
        "p_value": 1.0,
        "flag": False,
        "sequential_p_value": None,
        "sequential_flag": False,
    }
    assert (body["alpha"], body["correction"]) == (0.1, None)
    # Without correction or mde the optional keys are absent, not null.
    comparison = body["metrics"]["purchase"]["conversion"]["comparisons"][0]
    assert "p_value_adjusted" not in comparison["relative"]
    assert "cuped_absolute" not in comparison
    assert "power" not in body["metrics"]["purchase"]["conversion"]


def test_correction_adjusts_relative_p_values_across_metrics_and_mde_adds_power() -> None:
    exp = experiment((0.4, 0.3, 0.3))
    stats = stats_of(
        exp,
        [400, 300, 300],
        {
            "a": [(60, 60.0, 60.0, 60), (60, 60.0, 60.0, 60), (30, 30.0, 30.0, 30)],
            "b": [(40, 40.0, 40.0, 40), (20, 20.0, 20.0, 20), (10, 10.0, 10.0, 10)],
        },
    )

    report = results_report(stats, correction="holm", mde=0.1)

    body = as_json(report.model_dump(mode="json"))
    relative = [
        c["relative"] for name in ("a", "b") for c in body["metrics"][name]["conversion"]["comparisons"]
    ]
    raw = sorted(block["p_value"] for block in relative)
    adjusted = sorted(block["p_value_adjusted"] for block in relative)
    # Holm over the four conversion comparisons: the smallest p-value is multiplied by 4.
    assert adjusted[0] == pytest.approx(min(1.0, 4 * raw[0]))
    assert all(a >= p for a, p in zip(adjusted, raw, strict=True))
    assert all(
        "p_value_adjusted" not in c["absolute"]
        for name in ("a", "b")
        for c in body["metrics"][name]["value"]["comparisons"]
    )
    assert body["metrics"]["a"]["value"]["power"]["mde"] == 0.1
    assert body["correction"] == "holm"


def test_a_zero_weight_variant_is_compared_but_left_out_of_srm() -> None:
    exp = experiment((0.5, 0.5, 0.0))
    stats = stats_of(exp, [500, 500, 0], {"m": [(50, 50.0, 50.0, 50), (60, 60.0, 60.0, 60), None]})
    report = results_report(stats)
    assert report.srm.flag is False
    assert report.srm.p_value == pytest.approx(1.0)
    third = report.metrics["m"].conversion.comparisons[1]
    assert third.relative.error == "no_users"
    assert third.relative.p_value is None


def test_results_of_an_experiment_without_users_or_metrics() -> None:
    report = results_report(stats_of(experiment(), [0, 0], {}))
    assert report.metrics == {}
    # No users: no p-value (null is honest), and nothing to flag.
    assert (report.srm.p_value, report.srm.flag) == (None, False)


# SRM alerts (the rollup logs and counts what this returns)


def test_srm_alerts_name_only_the_mismatched_running_experiments() -> None:
    fine, skewed, tiny = experiment(), experiment(), experiment()
    alerts = srm_alerts(
        [
            RunningAllocation(fine, [1000, 1010]),
            RunningAllocation(skewed, [1000, 1300]),
            RunningAllocation(tiny, [7, 0]),  # too few users to judge
        ]
    )
    assert [alert.experiment_id for alert in alerts] == [skewed.id]
    assert alerts[0].users == [1000, 1300]
    assert alerts[0].p_value == srm_verdict([1000, 1300], [0.5, 0.5]).p_value < 0.001
    assert srm_alerts([]) == []


# The typed analysis keeps the engine's JSON exactly

counts = st.integers(min_value=0, max_value=10**6)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(counts, counts, st.floats(0, 1e4), st.floats(0, 1e4)), min_size=2, max_size=4),
    st.sampled_from([None, "holm", "bh"]),
    st.one_of(st.none(), st.floats(0.01, 2)),
    st.booleans(),
)
def test_metric_analysis_round_trips_the_engine_output(
    rows: list[tuple[int, int, float, float]], correction: Any, mde: float | None, cuped: bool
) -> None:
    binomial = [BinomialStats(users=max(a, b), conversions=min(a, b)) for a, b, _, _ in rows]
    mean = [
        MeanStats(
            users=a,
            sum=s,
            sum_squares=s * s + q,
            **(
                {"pre_sum": s / 2, "pre_sum_squares": s * s / 4 + q, "post_pre_sum_products": s * s / 2}
                if cuped
                else {}
            ),
        )
        for a, _, s, q in rows
    ]
    for metric_type, variants in (("binomial", binomial), ("mean", mean)):
        output = analyze(metric_type, variants, correction=correction, mde=mde)  # type: ignore[arg-type]
        typed = MetricAnalysis.model_validate(output)
        assert json.dumps(typed.model_dump(mode="json")) == json.dumps(output)
        assert not any(isinstance(x, float) and not math.isfinite(x) for x in _leaves(output))


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]
