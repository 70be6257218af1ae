"""The request-body parser (abtest.http.body) and the JSON-value check (abtest.limits), pure."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from abtest.domain.recommender_config import RecommenderConfig
from abtest.http.body import BodyError, check_body, dumps
from abtest.limits import MAX_BODY_BYTES, MAX_BODY_DEPTH, MAX_JSON_DEPTH, json_problem


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"a": value}
    return value


def refusal(body: str | bytes) -> BodyError:
    with pytest.raises(BodyError) as caught:
        check_body({"body": body})
    return caught.value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"a": [1, {"b": 2**53 + 1}]}, ("a[1].b", "integers")),
        ({"a": -(2**60)}, ("a", "integers")),
        ({"x": math.inf}, ("x", "finite")),
        ({"x": "a\x00b"}, ("x", "NUL")),
        ({"x": ["\ud800"]}, ("x[0]", "surrogates")),
        ({"k\ud800": 1}, ("body", "surrogates")),
        (nested(MAX_JSON_DEPTH + 1), ("a." * (MAX_JSON_DEPTH - 1) + "a", "nested deeper")),
    ],
)
def test_json_problem_names_the_field(value: Any, problem: tuple[str, str]) -> None:
    found = json_problem(value)
    assert found is not None
    assert found[0] == problem[0]
    assert problem[1] in found[1]


def test_json_problem_accepts_what_a_double_and_postgres_hold() -> None:
    assert json_problem({"a": [2**53, -(2**53), 1e308, "é🎉", None, True]}) is None
    assert json_problem(nested(MAX_JSON_DEPTH)) is None
    assert json_problem(nested(10**4)) is not None  # no recursion, however deep


def test_bodies_past_the_limits_are_refused_with_their_field() -> None:
    assert refusal('{"a":' * 5000 + "1" + "}" * 5000).status == 422
    assert refusal(json.dumps(nested(MAX_BODY_DEPTH + 1))).status == 422
    huge = refusal('{"limit": ' + "9" * 5000 + "}")
    assert (huge.status, huge.field) == (422, "limit")
    assert refusal('{"x": NaN}').code == "invalid_json"
    assert refusal('{"x": 1e400}').field == "x"
    big = refusal('{"a": "' + "x" * MAX_BODY_BYTES + '"}')
    assert (big.status, big.code) == (413, "body_too_large")
    check_body({"body": json.dumps({"a": nested(40), "n": 2**53})})  # within the body's limits


def test_responses_are_strict_json() -> None:
    assert dumps({"a": [1.5, math.nan, {"b": math.inf}]}) == '{"a":[1.5,null,{"b":null}]}'
    assert dumps({"a": 1}) == '{"a":1}'


def test_the_recommender_applies_only_what_it_knows() -> None:
    config = RecommenderConfig.applying({"algo": "bm25", "lora_boost": "high", "diversity": 0.5})
    assert config == RecommenderConfig(diversity=0.5)
