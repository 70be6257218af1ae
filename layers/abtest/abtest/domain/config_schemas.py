"""Config schemas: a surface's JSON Schema (draft 2020-12) for its variants' configs, checked as untrusted
input before it is stored, and the validation of configs against it (write time, and the precomputed
serve-time check).

A schema is accepted only if every validator run over it is bounded and offline:

- draft 2020-12 only (`$schema` absent or that URI), every keyword from an allow-list (the draft's
  applicators and assertions, `format` for FORMATS, annotations such as `title`, `description`,
  `default`); anything else (`$dynamicRef`, `$id`, vendor keywords, typos such as `maxLenght`) is refused;
- `$ref` only as a local JSON pointer (`#/$defs/x`) that resolves in the document; the validator's
  reference registry refuses every retrieval, so no schema can make it fetch a URL;
- no `$ref` cycle that consumes no input (`{"$ref": "#"}` recurses forever); recursion through
  `properties` or `items` is fine, each step goes one level into a finite config; and the in-place
  expansion (refs, allOf, anyOf, ...) is capped, so a chain of refs cannot blow up exponentially;
- `pattern` and `patternProperties` are RE2 regexes (linear time: no backtracking) checked at write and
  evaluated with RE2;
- size and depth capped (MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH).

Beside the schema, an optional `invariants` list holds conditions across fields in the targeting
language (abtest.domain.targeting), where `{"$field": "path"}` stands for another field of the same
config: `{"min_items": {"$lte": {"$field": "max_items"}}}`.

`jsonschema` is imported on first use: only the experiments function validates, never the hot path.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from abtest.domain.js_values import regex_search
from abtest.domain.schema_checks import DRAFT_2020_12, problems_error, schema_problems
from abtest.domain.schema_formats import FORMATS
from abtest.domain.targeting import evaluate
from abtest.domain.targeting_checks import check_condition
from abtest.errors import InvalidInput
from abtest.field_path import field_path
from abtest.limits import MAX_ERRORS, MAX_INVARIANTS, MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH, json_problem


@dataclass(frozen=True)
class ConfigProblem:
    """One way a config fails its schema: the field path at fault, the keyword that failed, and why."""

    field: str
    keyword: str
    message: str


@dataclass(frozen=True)
class ConfigSchema:
    """A checked schema: the JSON Schema proper and its invariants (validate with `problems`)."""

    schema: dict[str, Any]
    invariants: tuple[Any, ...] = ()

    @property
    def document(self) -> dict[str, Any]:
        """The schema as stored and served: the JSON Schema with its `invariants` sibling list."""
        if not self.invariants:
            return self.schema
        return {**self.schema, "invariants": list(self.invariants)}

    def problems(self, config: Mapping[str, Any], root: Sequence[int | str] = ()) -> list[ConfigProblem]:
        """Every way `config` fails the schema, then the invariants (empty: valid), with field paths under
        `root` (e.g. ("variants", 1, "config"))."""
        validator = _validator(json.dumps(self.schema, sort_keys=True))
        found: list[ConfigProblem] = []
        for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
            where = (*root, *error.absolute_path)
            for key in _unexpected_keys(error):  # name each unknown key itself: `...config.lora_bost`
                found.append(ConfigProblem(field_path((*where, key)), "additionalProperties", "unknown key"))
            if error.validator != "additionalProperties" or error.validator_value is not False:
                found.append(
                    ConfigProblem(field_path(where) or "config", str(error.validator), error.message[:300])
                )
            if len(found) >= MAX_ERRORS:
                return found[:MAX_ERRORS]
        for index, condition in enumerate(self.invariants):
            if not evaluate(_resolve_fields(condition, config), config):
                found.append(
                    ConfigProblem(
                        field_path(root) or "config",
                        f"invariants[{index}]",
                        f"invariant {index} does not hold: {json.dumps(condition)}",
                    )
                )
        return found

    def is_valid(self, config: Mapping[str, Any]) -> bool:
        return not self.problems(config)


def _unexpected_keys(error: Any) -> list[str]:
    """The keys an `additionalProperties: false` error is about (those no properties or patternProperties
    of its schema cover); empty for any other error."""
    if error.validator != "additionalProperties" or error.validator_value is not False:
        return []
    if not isinstance(error.instance, dict) or not isinstance(error.schema, dict):
        return []
    known = error.schema.get("properties", {})
    patterns = error.schema.get("patternProperties", {})
    return [
        key
        for key in error.instance
        if key not in known and not any(regex_search(p, key, False) for p in patterns)
    ]


def _resolve_fields(condition: Any, config: Mapping[str, Any]) -> Any:
    """The condition with each `{"$field": "path"}` replaced by that field's value in the config."""
    from abtest.domain.targeting import attribute

    if isinstance(condition, dict):
        if set(condition) == {"$field"} and isinstance(condition["$field"], str):
            return attribute(config, condition["$field"])
        return {key: _resolve_fields(value, config) for key, value in condition.items()}
    if isinstance(condition, list):
        return [_resolve_fields(item, config) for item in condition]
    return condition


def check_schema(document: Any) -> ConfigSchema:
    """The schema ready to store, or InvalidInput (422) naming every problem with its path under `schema`."""
    if not isinstance(document, dict):
        raise InvalidInput("schema: a config schema is a JSON object", field="schema")
    problem = json_problem(document, max_depth=MAX_SCHEMA_DEPTH)
    if problem is not None:
        where, message = problem
        field = f"schema.{where}" if where else "schema"
        raise InvalidInput(f"{field}: {message}", field=field)
    size = len(json.dumps(document, separators=(",", ":")).encode())
    if size > MAX_SCHEMA_BYTES:
        raise InvalidInput(
            f"schema: the schema is {size} bytes as JSON; the limit is {MAX_SCHEMA_BYTES}", field="schema"
        )
    declared = document.get("$schema", DRAFT_2020_12)
    if not isinstance(declared, str) or declared.rstrip("#") != DRAFT_2020_12:
        raise InvalidInput(
            f"schema.$schema: only JSON Schema draft 2020-12 ({DRAFT_2020_12}) is supported",
            field="schema.$schema",
        )
    if document.get("type", "object") != "object" and document.get("type") is not None:
        raise InvalidInput("schema.type: a variant config is a JSON object", field="schema.type")
    problems = schema_problems(document)
    invariants = document.get("invariants", [])
    if not isinstance(invariants, list):
        problems.append(("schema.invariants", "invariants takes an array of conditions"))
        invariants = []
    elif len(invariants) > MAX_INVARIANTS:
        problems.append(("schema.invariants", f"at most {MAX_INVARIANTS} invariants"))
    for index, condition in enumerate(invariants):
        root = f"schema.invariants[{index}]"
        for found in check_condition(_field_placeholders(condition), root=root):
            problems.append((found.field, found.message))
    if problems:
        raise problems_error(problems)
    schema = {key: value for key, value in document.items() if key != "invariants"}
    from jsonschema.exceptions import SchemaError

    try:
        _validator_class().check_schema(schema)
    except SchemaError as exc:
        field = field_path(("schema", *exc.absolute_path)) if exc.absolute_path else "schema"
        raise InvalidInput(f"{field}: {exc.message}", field=field) from None
    return ConfigSchema(schema, tuple(invariants))


def _field_placeholders(condition: Any) -> Any:
    """The condition with each `{"$field": ...}` as a plain value, so the targeting checks accept it."""
    if isinstance(condition, dict):
        if set(condition) == {"$field"}:
            return 0 if isinstance(condition["$field"], str) else condition
        return {key: _field_placeholders(value) for key, value in condition.items()}
    if isinstance(condition, list):
        return [_field_placeholders(item) for item in condition]
    return condition


def stored_schema(document: Mapping[str, Any]) -> ConfigSchema:
    """A schema read back from storage (it was checked before it was stored)."""
    schema = {key: value for key, value in document.items() if key != "invariants"}
    return ConfigSchema(schema, tuple(document.get("invariants", [])))


# -- the validator ---------------------------------------------------------------------------------


@functools.cache
def _validator_class() -> Any:
    """Draft 2020-12 with `pattern` and `patternProperties` evaluated by RE2 (never Python's `re`)."""
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import ValidationError

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not regex_search(patrn, instance, False):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    def pattern_properties(
        validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
    ) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        for patrn, subschema in patterns.items():
            for key, value in instance.items():
                if regex_search(patrn, key, False):
                    yield from validator.descend(value, subschema, path=key, schema_path=patrn)

    return validators.extend(
        Draft202012Validator, {"pattern": pattern, "patternProperties": pattern_properties}
    )


def _no_retrieval(uri: str) -> Any:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class


@functools.lru_cache(maxsize=64)
def _validator(schema_text: str) -> Any:
    """A validator of one schema: formats asserted from FORMATS, and a reference registry that refuses
    every retrieval (remote references were refused at write; this keeps it so)."""
    from jsonschema import FormatChecker
    from referencing import Registry

    checker = FormatChecker(formats=())
    for name, check in FORMATS.items():
        checker.checks(name)(lambda value, check=check: not isinstance(value, str) or check(value))
    registry: Any = Registry(retrieve=_no_retrieval)  # type: ignore[call-arg]  # an attrs class
    return _validator_class()(json.loads(schema_text), format_checker=checker, registry=registry)


def config_problems(schema: ConfigSchema | None, configs: Sequence[Mapping[str, Any]]) -> list[ConfigProblem]:
    """Every problem of the variants' configs (`variants[i].config...`) against the schema."""
    if schema is None:
        return []
    found: list[ConfigProblem] = []
    for index, config in enumerate(configs):
        found.extend(schema.problems(config, ("variants", index, "config")))
    return found


def require_valid_configs(schema: ConfigSchema | None, configs: Sequence[Mapping[str, Any]]) -> None:
    """InvalidInput (422) naming the first failing config field and its keyword, every problem listed."""
    problems = config_problems(schema, configs)
    if not problems:
        return
    first = problems[0]
    error = InvalidInput(
        f"{first.field}: {first.message} (schema keyword {first.keyword})", field=first.field
    )
    error.details = {
        "errors": [
            {"field": p.field, "keyword": p.keyword, "message": p.message} for p in problems[:MAX_ERRORS]
        ],
        "error_count": len(problems),
    }
    raise error
