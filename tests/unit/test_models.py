"""Request models: the validation rules a client sees as 422s."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from abtest.domain.experiments import ExperimentCreate, ExperimentPatch
from abtest.field_path import field_path
from abtest.http.app import field_name
from abtest.stats.inputs import StatsInputError, parse_request


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "exp",
        "variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}],
    }
    data.update(overrides)
    return data


def test_defaults() -> None:
    created = ExperimentCreate.model_validate(body())
    assert created.traffic_allocation == 1.0
    assert created.salt is None
    assert created.description == ""
    assert created.variants[0].config == {}


# Each weight at least the minimum (0.001): 20 parts of at most 20 + 19 * 1000.
@given(st.lists(st.integers(min_value=20, max_value=1000), min_size=2, max_size=20))
def test_any_normalised_weights_are_accepted(raw: list[int]) -> None:
    total = sum(raw)
    variants = [{"name": f"v{i}", "weight": value / total} for i, value in enumerate(raw)]
    created = ExperimentCreate.model_validate(body(variants=variants))
    assert len(created.variants) == len(raw)


@given(st.floats(min_value=1e-7, max_value=0.49))  # (the second weight stays above the minimum)
def test_weights_off_by_more_than_the_tolerance_are_rejected(error: float) -> None:
    variants = [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5 - error}]
    with pytest.raises(ValidationError) as raised:
        ExperimentCreate.model_validate(body(variants=variants))
    assert raised.value.errors()[0]["loc"] == ("variants",)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"x": [1, float("nan")]}])
def test_non_finite_config_values_are_rejected(value: Any) -> None:
    variants = [{"name": "a", "weight": 0.5, "config": {"k": value}}, {"name": "b", "weight": 0.5}]
    with pytest.raises(ValidationError):
        ExperimentCreate.model_validate(body(variants=variants))


def test_more_than_twenty_variants_are_rejected() -> None:
    variants = [{"name": f"v{i}", "weight": 1 / 21} for i in range(21)]
    with pytest.raises(ValidationError):
        ExperimentCreate.model_validate(body(variants=variants))


def test_patch_needs_a_field_and_reports_what_it_sets() -> None:
    with pytest.raises(ValidationError):
        ExperimentPatch.model_validate({})
    patch = ExperimentPatch.model_validate({"description": "new", "traffic_allocation": 1})
    assert patch.changes() == {"description": "new", "traffic_allocation": 1.0}


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("body", "variants", 1, "weight"), "variants[1].weight"),
        (("body",), "body"),
        (("query", "limit"), "limit"),
        (("path", "experiment_id"), "experiment_id"),
        (("variants",), "variants"),
    ],
)
def test_field_names_from_error_locations(loc: tuple[Any, ...], expected: str) -> None:
    assert field_name(loc) == expected


def test_the_http_and_statistics_errors_name_fields_with_one_path_syntax() -> None:
    # One definition (abtest.field_path): the API's 422s and the stats CLI's errors agree.
    with pytest.raises(StatsInputError) as raised:
        parse_request(
            {
                "metric_type": "binomial",
                "variants": [{"users": 1, "conversions": 0}, {"users": -1, "conversions": 0}],
            }
        )
    assert (
        raised.value.field
        == field_name(("body", "variants", 1, "users"))
        == field_path(("variants", 1, "users"))
    )
    assert field_path(()) == ""
    assert field_name(()) == "body"
