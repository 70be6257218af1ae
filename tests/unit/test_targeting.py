"""Our own targeting cases (abtest.domain.targeting): the JavaScript coercion rules we follow, dotted
paths, regex safety, versions, write-time validation with paths, and failing closed. GrowthBook's own
cases run from the shared file in test_targeting_conformance.py."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abtest.domain.js_values import js_json, js_number, js_number_text, js_string, padded_version
from abtest.domain.targeting import evaluate
from abtest.domain.targeting_checks import check_condition, referenced_groups, require_valid_condition
from abtest.errors import InvalidInput
from abtest.limits import MAX_CONDITION_BYTES, MAX_REGEX_LENGTH

# -- coercion: the JavaScript reference's rules (docs/api/targeting.md) --------------------------------


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        # A string condition matches String(value).
        ({"age": "5"}, {"age": 5}, True),
        ({"age": "5"}, {"age": 5.0}, True),  # 5.0 is the number 5: String(5) is "5"
        ({"flag": "true"}, {"flag": True}, True),
        ({"x": "null"}, {}, True),  # a missing attribute is null, and String(null) is "null"
        ({"tags": "a,b"}, {"tags": ["a", "b"]}, True),
        # A number condition matches Number(value).
        ({"age": 5}, {"age": "5"}, True),
        ({"age": 5}, {"age": " 5 "}, True),
        ({"age": 16}, {"age": "0x10"}, True),
        ({"age": 0}, {}, True),  # Number(null) is 0: a missing attribute equals 0
        ({"age": 0}, {"age": ""}, True),
        ({"age": 5}, {"age": "5px"}, False),
        ({"age": 1}, {"age": True}, True),
        # A boolean condition matches truthiness, never null.
        ({"ok": True}, {"ok": "yes"}, True),
        ({"ok": True}, {"ok": 1}, True),
        ({"ok": True}, {"ok": []}, True),
        ({"ok": False}, {"ok": ""}, True),
        ({"ok": False}, {"ok": 0}, True),
        ({"ok": False}, {}, False),
        # $eq / $ne / $in compare strictly.
        ({"x": {"$eq": "5"}}, {"x": 5}, False),
        ({"x": {"$eq": 1}}, {"x": 1.0}, True),
        ({"x": {"$eq": 1}}, {"x": True}, False),
        ({"x": {"$ne": "5"}}, {"x": 5}, True),
        ({"x": {"$eq": [1]}}, {"x": [1]}, False),  # arrays are never === in JavaScript
        ({"x": {"$in": [1, 2]}}, {"x": "1"}, False),
        # Comparisons: two strings lexicographically, anything else as numbers.
        ({"x": {"$gt": "10"}}, {"x": "9"}, True),
        ({"x": {"$gt": "10"}}, {"x": 9}, False),
        ({"x": {"$gt": 5}}, {"x": "8"}, True),
        ({"x": {"$lt": 5}}, {}, True),  # null compares as 0
        ({"x": {"$lt": 5}}, {"x": "abc"}, False),  # NaN: false both ways
        ({"x": {"$gte": 5}}, {"x": "abc"}, False),
        ({"x": {"$gt": "a"}}, {"x": "B"}, False),  # "B" < "a": code units, case-sensitive
        # Literal arrays and objects compare as JSON text (JavaScript number layout and key order).
        ({"v": [1, 2]}, {"v": [1.0, 2.0]}, True),
        ({"v": {"b": 1, "1": 2}}, {"v": {"1": 2, "b": 1}}, True),
        ({"v": {"a": 1}}, {"v": {"a": 1, "b": 2}}, False),
    ],
)
def test_coercion_follows_the_javascript_reference(
    condition: dict[str, Any], attributes: dict[str, Any], expected: bool
) -> None:
    assert evaluate(condition, attributes) is expected


@pytest.mark.parametrize(
    ("number", "text"),
    [(5.0, "5"), (0.1, "0.1"), (1e21, "1e+21"), (1e20, "100000000000000000000"), (1e-7, "1e-7"),
     (1e-6, "0.000001"), (-2.5, "-2.5"), (1.5e300, "1.5e+300"), (123.456, "123.456")],
)  # fmt: skip
def test_numbers_print_as_javascript_prints_them(number: float, text: str) -> None:
    assert js_number_text(number) == text
    assert js_string(number) == text


def test_javascript_conversions_of_other_values() -> None:
    assert js_string(None) == "null"
    assert js_string([1, None, [2, 3]]) == "1,,2,3"
    assert js_string({"a": 1}) == "[object Object]"
    assert js_number("") == 0
    assert js_number(None) == 0
    assert js_number(False) == 0
    assert js_number("1e3") == 1000
    assert js_number("-.5") == -0.5
    assert js_number("0b101") == 5
    assert js_number("Infinity") == float("inf")
    for not_a_number in ("1_000", "nan", "inf", "abc", "--1", {"a": 1}, [1, 2]):
        assert js_number(not_a_number) != js_number(not_a_number)  # NaN
    assert js_json({"b": [1.0, None], "a": "é"}) == '{"b":[1,null],"a":"é"}'


# -- paths ------------------------------------------------------------------------------------------


def test_dotted_paths_read_objects_and_array_indices() -> None:
    attributes = {"user": {"geo": {"country": "FR"}}, "tags": [{"k": "x"}, {"k": "y"}], "s": "abc"}
    assert evaluate({"user.geo.country": "FR"}, attributes)
    assert evaluate({"tags.1.k": "y"}, attributes)
    assert evaluate({"tags.2.k": {"$exists": False}}, attributes)
    # Only own keys and indices: no inherited JavaScript properties such as `length`.
    assert evaluate({"tags.length": {"$exists": False}}, attributes)
    assert evaluate({"s.0": {"$exists": False}}, attributes)
    assert not evaluate({"user.geo.country.code": "FR"}, attributes)


# -- regexes ----------------------------------------------------------------------------------------


def test_regexes_search_unanchored_and_case_insensitive_variants_fold() -> None:
    assert evaluate({"ua": {"$regex": "Mobile"}}, {"ua": "Android Mobile Safari"})
    assert evaluate({"ua": {"$regex": "^Android"}}, {"ua": "Android Mobile Safari"})
    assert not evaluate({"ua": {"$regex": "^Mobile"}}, {"ua": "Android Mobile Safari"})
    assert evaluate({"ua": {"$regexi": "^android"}}, {"ua": "Android"})
    assert evaluate({"ua": {"$notRegex": "iPhone"}}, {"ua": "Android"})
    assert not evaluate({"ua": {"$notRegexi": "IPHONE"}}, {"ua": "iphone 15"})
    assert evaluate({"n": {"$regex": "^4[0-9]$"}}, {"n": 42})  # tested against String(value)
    # `$` is the end of the text, as in JavaScript (Python's re would also match before a final "\n").
    assert not evaluate({"s": {"$regex": "a$"}}, {"s": "a\n"})


def test_unusable_patterns_never_match_negated_or_not() -> None:
    lookahead = "a(?=b)"  # valid JavaScript, but not RE2: refused on write, false at evaluation
    for op in ("$regex", "$regexi", "$notRegex", "$notRegexi"):
        assert not evaluate({"s": {op: lookahead}}, {"s": "ab"})
        assert not evaluate({"s": {op: "x" * (MAX_REGEX_LENGTH + 1)}}, {"s": "x" * 300})
        assert not evaluate({"s": {op: 5}}, {"s": "5"})


def test_a_catastrophic_backtracking_pattern_cannot_hang_evaluation() -> None:
    # With a backtracking engine `(a+)+$` on "aaa...ab" takes time exponential in the length (for
    # 50,000 characters: longer than the universe has existed). RE2 matches in linear time. This is a
    # liveness check with a huge margin, not a timing measurement (those live in bench/).
    text = "a" * 50_000 + "b"
    results: list[bool] = []
    worker = threading.Thread(
        target=lambda: results.extend(
            evaluate({"s": {op: "(a+)+$"}}, {"s": text}) for op in ("$regex", "$regexi", "$notRegex")
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=30)
    assert results == [False, False, True]


# -- versions ---------------------------------------------------------------------------------------


def test_versions_pad_numbers_and_rank_releases_above_prereleases() -> None:
    assert padded_version("v1.2.3+build.7") == "    1-    2-    3-~"
    assert padded_version("1.0.0-rc.1") == "    1-    0-    0-rc-    1"
    assert padded_version(None) == padded_version("") == "    0"
    assert padded_version(2) == "    2"
    assert evaluate({"app": {"$vgte": "2.10.0"}}, {"app": "2.10.0"})
    assert evaluate({"app": {"$vgt": "2.9.9"}}, {"app": "2.10.0"})  # not a text comparison
    assert evaluate({"app": {"$vlt": "2.10.0"}}, {"app": "2.10.0-beta"})
    assert not evaluate({"app": {"$vgte": "2.10.0"}}, {})  # a missing version is "0"


# -- saved groups -----------------------------------------------------------------------------------


def test_saved_groups_compare_strictly_and_unknown_groups_are_empty() -> None:
    groups = {"beta": ["u1", 7]}
    assert evaluate({"id": {"$inGroup": "beta"}}, {"id": "u1"}, groups)
    assert evaluate({"id": {"$inGroup": "beta"}}, {"id": 7.0}, groups)
    assert not evaluate({"id": {"$inGroup": "beta"}}, {"id": "7"}, groups)
    assert evaluate({"ids": {"$inGroup": "beta"}}, {"ids": ["x", "u1"]}, groups)  # any element
    assert not evaluate({"id": {"$inGroup": "nope"}}, {"id": "u1"}, groups)
    assert evaluate({"id": {"$notInGroup": "nope"}}, {"id": "u1"}, groups)
    condition = {"$or": [{"id": {"$inGroup": "a"}}, {"x": {"$elemMatch": {"y": {"$notInGroup": "b"}}}}]}
    assert referenced_groups(condition) == {"a", "b"}


# -- failing closed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        [],
        "country",
        {"$or": {"a": 1}},
        {"$and": "x"},
        {"$not": [1]},
        {"$or": [1]},
        {"a": {"$elemMatch": 5}},
        {"a": {"$in": "abc"}},
        {"a": {"$unknown": 1}},
    ],
)
def test_malformed_conditions_are_false(condition: Any) -> None:
    assert evaluate(condition, {"a": ["abc"]}) is False


def test_a_condition_nested_past_the_stack_is_false_not_an_error() -> None:
    condition: dict[str, Any] = {"a": 1}
    for _ in range(5000):
        condition = {"$not": condition}
    assert evaluate(condition, {"a": 2}) is False


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=12,
    ),
    st.dictionaries(st.sampled_from(["a", "b", "$or", "$not", "a.b"]), st.integers() | st.text(), max_size=3),
)
def test_evaluation_never_raises(condition: Any, attributes: dict[str, Any]) -> None:
    assert evaluate({"a": condition}, attributes) in (True, False)
    assert evaluate(condition, attributes) in (True, False)
    check_condition(condition)  # and checking never raises either


# -- write-time validation --------------------------------------------------------------------------


def fields(condition: Any, groups: set[str] | None = None) -> list[str]:
    return [problem.field for problem in check_condition(condition, groups)]


def test_valid_conditions_have_no_problems() -> None:
    assert fields({}) == []
    assert fields({"country": {"$in": ["FR", "DE"]}, "app": {"$vgte": "2.0.0"}}) == []
    assert fields({"$or": [{"plan": "pro"}, {"id": {"$inGroup": "beta"}}]}, {"beta"}) == []
    assert fields({"tags": {"$elemMatch": {"k": {"$regex": "^x"}}}, "meta": {"a": 1}}) == []
    assert fields({"tags": {"$size": {"$gt": 2}}, "t": {"$not": {"$regexi": "bot"}}}) == []


@pytest.mark.parametrize(
    ("condition", "field", "words"),
    [
        ({"country": {"$in": "FR"}}, "targeting.country.$in", "array"),
        ({"country": {"$nin": {"a": 1}}}, "targeting.country.$nin", "array"),
        ({"tags": {"$all": "x"}}, "targeting.tags.$all", "array"),
        ({"name": {"$regx": "a"}}, "targeting.name.$regx", "unknown operator"),
        ({"$or": [{"a": 1}, {"ua": {"$regex": "(?=x)"}}]}, "targeting.$or[1].ua.$regex", "compile"),
        ({"ua": {"$regex": "[unclosed"}}, "targeting.ua.$regex", "compile"),
        ({"ua": {"$regexi": "a" * 257}}, "targeting.ua.$regexi", "257 characters"),
        ({"$ro": [{"a": 1}]}, "targeting.$ro", "unknown operator"),
        ({"$or": {"a": 1}}, "targeting.$or", "array of conditions"),
        ({"$and": [5]}, "targeting.$and[0]", "JSON object"),
        ({"a": {"$exists": "yes"}}, "targeting.a.$exists", "true or false"),
        ({"a": {"$type": "int"}}, "targeting.a.$type", "one of"),
        ({"a": {"$gt": [1]}}, "targeting.a.$gt", "string or a number"),
        ({"a": {"$vgt": None}}, "targeting.a.$vgt", "string or a number"),
        ({"a": {"$elemMatch": 3}}, "targeting.a.$elemMatch", "object"),
        ({"a": {"$elemMatch": {"b": {"$bad": 1}}}}, "targeting.a.$elemMatch.b.$bad", "unknown operator"),
        ({"a": {"$not": {"$in": 1}}}, "targeting.a.$not.$in", "array"),
        ({"a": {"$in": [1], "b": 2}}, "targeting.a.b", "operators and plain keys"),
        ({"id": {"$inGroup": "missing"}}, "targeting.id.$inGroup", "no saved group with key 'missing'"),
        ({"id": {"$notInGroup": 5}}, "targeting.id.$notInGroup", "key of a saved group"),
    ],
)
def test_problems_name_their_path(condition: Any, field: str, words: str) -> None:
    problems = check_condition(condition, {"beta"})
    assert [p.field for p in problems] == [field]
    assert words in problems[0].message
    assert problems[0].text == f"{field}: {problems[0].message}"


def test_saved_groups_are_only_checked_when_known() -> None:
    assert fields({"id": {"$inGroup": "missing"}}, None) == []


def test_depth_and_size_limits() -> None:
    ten: Any = {"a": 1}
    for _ in range(9):
        ten = {"$not": ten}
    assert fields(ten) == []  # ten nested objects
    assert fields({"$not": ten}) == ["targeting"]
    assert "the limit is 10" in check_condition({"$not": ten})[0].message
    big = {"country": {"$in": ["x" * 100] * 200}}
    assert len(json.dumps(big, separators=(",", ":"))) > MAX_CONDITION_BYTES
    assert fields(big) == ["targeting"]
    assert "16384" in check_condition(big)[0].message


def test_every_problem_is_listed_and_the_first_is_raised() -> None:
    condition = {"a": {"$in": 1}, "b": {"$zz": 2}, "c": {"$regex": "("}}
    assert fields(condition) == ["targeting.a.$in", "targeting.b.$zz", "targeting.c.$regex"]
    with pytest.raises(InvalidInput) as raised:
        require_valid_condition(condition)
    assert raised.value.field == "targeting.a.$in"
    assert raised.value.details["error_count"] == 3
    assert [e["field"] for e in raised.value.details["errors"]] == fields(condition)
    require_valid_condition({"a": 1})  # a valid one raises nothing
