"""Which metric definitions the rollup keeps, and the fold of their per-user values (pure)."""

from __future__ import annotations

import math
from uuid import uuid4

import pytest

from abtest.analysis.defined_rollup import (
    DefinedFoldError,
    DefinedStats,
    KeptDefinition,
    UserDefined,
    fold_defined,
)
from abtest.domain.metric_definitions import MetricDefinitionBody


def body(**fields: object) -> MetricDefinitionBody:
    return MetricDefinitionBody.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "kept"),
    [
        ({"type": "proportion"}, False),  # plain: the event metric's own statistics
        ({"type": "mean"}, False),
        ({"type": "proportion", "window_hours": 24}, True),
        ({"type": "mean", "capping": {"type": "absolute", "value": 5}}, True),
        ({"type": "mean", "capping": {"type": "percentile", "value": 0.9}}, False),  # moves with the data
        ({"type": "mean", "window_hours": 1, "capping": {"type": "percentile", "value": 0.9}}, False),
        ({"type": "ratio", "numerator": "a", "denominator": "b"}, True),  # needs x·y per user
        ({"type": "quantile", "quantile": 0.9}, False),
    ],
)
def test_the_rollup_keeps_definitions_whose_per_user_value_is_the_users_own(
    fields: dict[str, object], kept: bool
) -> None:
    assert (KeptDefinition.of("m", body(**fields)) is not None) is kept


def test_a_kept_definition_reads_its_metrics_window_and_cap() -> None:
    ratio = KeptDefinition.of(
        "r",
        body(
            type="ratio",
            numerator="buy",
            denominator="visit",
            window_hours=2,
            capping={"type": "absolute", "value": 3},
        ),
    )
    assert ratio == KeptDefinition("r", "ratio", "buy", "visit", 7200.0, 3.0)
    assert ratio.values(UserDefined(uuid4(), 2, 10.0, 4.0)) == (3.0, 4.0)  # the cap is on x only
    mean = KeptDefinition.of("spend", body(type="mean", window_hours=1))
    assert mean is not None
    assert (mean.x_metric, mean.y_metric) == ("spend", None)
    assert mean.values(UserDefined(uuid4(), 1, 7.5, 99.0)) == (7.5, 0.0)
    proportion = KeptDefinition.of("p", body(type="proportion", metric="buy", window_hours=1))
    assert proportion is not None
    assert proportion.values(UserDefined(uuid4(), 3, 12.0)) == (1.0, 0.0)
    assert proportion.values(UserDefined(uuid4(), 0, 0.0)) == (0.0, 0.0)


def test_the_fold_replaces_each_users_stored_contribution() -> None:
    control, treatment = uuid4(), uuid4()
    spend = KeptDefinition("spend", "mean", "buy", None, None, 10.0)
    definitions = {"spend": spend}
    old = {("u1", "spend"): UserDefined(control, 1, 4.0), ("u2", "spend"): UserDefined(treatment, 2, 30.0)}
    new = {("u1", "spend"): UserDefined(control, 2, 12.0)}  # u1 bought again; u2's row went (zeros)

    result = fold_defined(definitions, {"u1", "u2"}, old, new)

    assert result.users == new
    assert result.removed == [("u2", "spend")]
    assert result.deltas[(control, "spend")] == DefinedStats(1, 0, 10.0 - 4.0, 100.0 - 16.0, 0.0, 0.0, 0.0)
    assert result.deltas[(treatment, "spend")] == DefinedStats(-2, -1, -10.0, -100.0, 0.0, 0.0, 0.0)
    # Folding the same state again changes nothing.
    again = fold_defined(definitions, {"u1"}, new, new)
    assert all(d == DefinedStats() for d in again.deltas.values())
    assert again.removed == []


def test_users_not_recomputed_and_definitions_not_kept_are_left_alone() -> None:
    variant = uuid4()
    definitions = {"a": KeptDefinition("a", "mean", "a", None, 60.0, None)}
    old = {("u1", "a"): UserDefined(variant, 1, 1.0), ("u2", "a"): UserDefined(variant, 1, 1.0)}
    new = {("u1", "a"): UserDefined(variant, 1, 1.0), ("u1", "gone"): UserDefined(variant, 1, 5.0)}

    result = fold_defined(definitions, {"u1"}, old, new)

    assert ("u1", "gone") not in result.users
    assert result.removed == []
    assert result.deltas[(variant, "a")] == DefinedStats()


def test_a_sum_that_is_not_a_finite_number_refuses_the_fold_unless_reading() -> None:
    variant = uuid4()
    definitions = {"a": KeptDefinition("a", "mean", "a", None, 60.0, None)}
    new = {("u1", "a"): UserDefined(variant, 1, 1e200)}
    with pytest.raises(DefinedFoldError):
        fold_defined(definitions, {"u1"}, {}, new)
    read = fold_defined(definitions, {"u1"}, {}, new, check_finite=False)
    assert math.isinf(read.deltas[(variant, "a")].sum_x2)
