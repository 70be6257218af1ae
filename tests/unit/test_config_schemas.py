"""Config schemas as untrusted input: what is refused when a schema is published, and validation that stays
offline and bounded in time (unit tests run with sockets disabled, so any fetch would fail loudly)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from abtest.domain.config_schemas import check_schema, config_problems, require_valid_configs
from abtest.errors import InvalidInput
from abtest.limits import MAX_CONFIG_BYTES, MAX_SCHEMA_BYTES


def refused(document: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as raised:
        check_schema(document)
    return raised.value


@pytest.mark.parametrize(
    "ref",
    [
        "https://example.com/schema.json",
        "http://169.254.169.254/latest/meta-data",
        "file:///etc/passwd",
        "other.json#/$defs/x",
        "urn:example:thing",
    ],
)
def test_remote_references_are_refused_without_any_fetch(ref: str) -> None:
    error = refused({"properties": {"x": {"$ref": ref}}})
    assert error.field == "schema.properties.x.$ref"
    assert "never fetched" in error.message


def test_a_reference_must_point_into_the_schema() -> None:
    assert refused({"$ref": "#/$defs/missing"}).field == "schema.$ref"
    assert refused({"$defs": {"a": {}}, "$ref": "#anchor"}).field == "schema.$ref"


@pytest.mark.parametrize(
    "document",
    [
        {"$ref": "#"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        {"$defs": {"a": {"anyOf": [{"not": {"$ref": "#/$defs/a"}}]}}, "allOf": [{"$ref": "#/$defs/a"}]},
        {"$defs": {"a": {"if": {"$ref": "#"}}}, "then": {"$ref": "#/$defs/a"}},
    ],
)
def test_reference_cycles_that_consume_no_input_are_refused(document: dict[str, Any]) -> None:
    assert "cycle" in refused(document).message


def test_recursion_through_properties_is_a_tree_and_allowed() -> None:
    tree = check_schema(
        {
            "$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}},
            "properties": {"root": {"$ref": "#/$defs/node"}},
        }
    )
    deep: dict[str, Any] = {}
    for _ in range(30):
        deep = {"child": deep}
    assert tree.problems({"root": deep}) == []
    assert tree.problems({"root": {"child": 3}})[0].field == "root.child"


def test_an_exponential_chain_of_references_is_refused() -> None:
    defs: dict[str, Any] = {
        f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(40)
    }
    defs["d40"] = {"type": "object"}
    assert "expand" in refused({"$defs": defs, "$ref": "#/$defs/d0"}).message


def test_backtracking_patterns_are_evaluated_by_re2_in_bounded_time() -> None:
    # (a+)+$ against "aaaa...!" takes exponential time with a backtracking engine (Python's re).
    schema = check_schema(
        {
            "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}},
            "patternProperties": {"^(x+x+)+y$": {"type": "integer"}},
        }
    )
    hostile = "a" * (MAX_CONFIG_BYTES - 100) + "!"
    started = time.perf_counter()
    problems = schema.problems({"name": hostile, "x" * 5000: "not checked: the key does not match"})
    assert time.perf_counter() - started < 1.0
    assert [p.keyword for p in problems] == ["pattern"]
    assert schema.problems({"name": "aaaa", "xxxy": "text"})[0].keyword == "type"


def test_patterns_re2_cannot_run_are_refused() -> None:
    for pattern in ("(?=x)", "(a)\\1", "(?<!a)b"):
        assert refused({"properties": {"x": {"pattern": pattern}}}).field == "schema.properties.x.pattern"
    assert refused({"patternProperties": {"(?=k)": {}}}).field == "schema.patternProperties"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"$dynamicRef": "#meta"}, "schema.$dynamicRef"),
        ({"$defs": {"a": {"$dynamicAnchor": "meta"}}}, "schema.$defs.a.$dynamicAnchor"),
        ({"$id": "https://example.com/s"}, "schema.$id"),
        ({"properties": {"x": {"minLenght": 2}}}, "schema.properties.x.minLenght"),
        ({"properties": {"x": {"format": "hostname"}}}, "schema.properties.x.format"),
        ({"properties": {"x": {"invariants": []}}}, "schema.properties.x.invariants"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "schema.$schema"),
        ({"type": "array"}, "schema.type"),
        ({"properties": {"x": {"type": "strin"}}}, "schema.properties.x.type"),
    ],
)
def test_keywords_outside_the_allowed_set_are_refused(document: dict[str, Any], field: str) -> None:
    assert refused(document).field == field


def test_annotations_are_allowed() -> None:
    check_schema(
        {
            "title": "T",
            "description": "d",
            "$comment": "c",
            "properties": {"x": {"default": 1, "examples": [1], "deprecated": False, "readOnly": True}},
        }
    )


def test_size_and_depth_are_capped() -> None:
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(40):
        deep = {"properties": {"x": deep}}
    assert "deeper" in refused(deep).message
    big = {"description": "x" * MAX_SCHEMA_BYTES}
    assert "bytes" in refused(big).message


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("date", "2026-12-07", "2026-13-01"),
        ("date-time", "2026-12-07T10:00:00Z", "2026-12-07 10:00"),
        ("email", "a@example.com", "not-an-email"),
        ("uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b"),
        ("ipv4", "10.0.0.1", "10.0.0.256"),
        ("ipv6", "::1", "10.0.0.1"),
        ("uri", "https://example.com/x", "no scheme"),
        ("regex", "^a+$", "(?=a)"),
    ],
)
def test_documented_formats_are_asserted(fmt: str, good: str, bad: str) -> None:
    schema = check_schema({"properties": {"v": {"type": "string", "format": fmt}}})
    assert schema.problems({"v": good}) == []
    assert [p.keyword for p in schema.problems({"v": bad})] == ["format"]


def test_invariants_compare_fields_of_the_same_config() -> None:
    schema = check_schema(
        {
            "properties": {"min_items": {"type": "integer"}, "max_items": {"type": "integer"}},
            "invariants": [{"min_items": {"$lte": {"$field": "max_items"}}}],
        }
    )
    assert schema.problems({"min_items": 2, "max_items": 5}) == []
    problems = config_problems(schema, [{}, {"min_items": 6, "max_items": 5}])
    assert [(p.field, p.keyword) for p in problems] == [("variants[1].config", "invariants[0]")]
    assert refused({"invariants": [{"x": {"$nope": 1}}]}).field.startswith("schema.invariants[0]")


def test_the_422_names_the_field_and_keyword_of_every_problem() -> None:
    schema = check_schema(
        {
            "additionalProperties": False,
            "properties": {"lora_boost": {"type": "number", "minimum": 0, "maximum": 1}},
        }
    )
    with pytest.raises(InvalidInput) as raised:
        require_valid_configs(schema, [{"lora_boost": 0.1}, {"lora_boost": "high", "lora_bost": 1}])
    error = raised.value
    assert error.field in {"variants[1].config.lora_bost", "variants[1].config.lora_boost"}
    assert {(e["field"], e["keyword"]) for e in error.details["errors"]} == {
        ("variants[1].config.lora_bost", "additionalProperties"),
        ("variants[1].config.lora_boost", "type"),
    }
