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
import ipaddress
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from abtest.domain.js_values import regex_problem, regex_search
from abtest.domain.targeting import evaluate
from abtest.domain.targeting_checks import check_condition
from abtest.errors import InvalidInput
from abtest.field_path import field_path
from abtest.limits import (
    MAX_ERRORS,
    MAX_INVARIANTS,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    MAX_SCHEMA_EXPANSION,
    json_problem,
)

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# Keywords whose value is one subschema, a map of subschemas, or a list of subschemas.
_ONE_SCHEMA = (
    "additionalProperties",
    "propertyNames",
    "items",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
# Applied to the same instance (consume no input): a cycle through these alone never ends.
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_MAPS = ("dependentSchemas",)
_IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
# Assertions and annotations whose value is data, not a subschema.
_VALUE_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxContains",
        "minContains",
        "maxProperties",
        "minProperties",
        "required",
        "dependentRequired",
        "format",
    }
)
ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "$comment"}
)
ALLOWED_KEYWORDS = (
    frozenset(_ONE_SCHEMA)
    | frozenset(_SCHEMA_MAPS)
    | frozenset(_SCHEMA_LISTS)
    | _VALUE_KEYWORDS
    | ANNOTATIONS
) | {"$ref"}
ROOT_ONLY = frozenset({"$schema", "invariants"})


def _is_date(value: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_date_time(value: str) -> bool:
    # RFC 3339: a full date, 'T', a time with seconds, optional fraction, and an offset (Z or +hh:mm).
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain and "." in domain and " " not in value and len(value) <= 254)


def _is_uuid(value: str) -> bool:
    if not re.fullmatch(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", value
    ):
        return False
    UUID(value)
    return True


def _is_ip(version: int) -> Any:
    def check(value: str) -> bool:
        try:
            return ipaddress.ip_address(value).version == version
        except ValueError:
            return False

    return check


def _is_uri(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]*", value))


# The formats asserted (a value of another format is refused at write): name -> check of a string.
FORMATS: dict[str, Any] = {
    "date": _is_date,
    "date-time": _is_date_time,
    "email": _is_email,
    "uuid": _is_uuid,
    "ipv4": _is_ip(4),
    "ipv6": _is_ip(6),
    "uri": _is_uri,
    "regex": lambda value: regex_problem(value) is None,
}


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
            path = field_path((*root, *error.absolute_path))
            found.append(ConfigProblem(path or "config", str(error.validator), error.message))
            if len(found) >= MAX_ERRORS:
                return found
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


# -- checking a schema before it is stored ---------------------------------------------------------


class _SchemaChecker:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.problems: list[tuple[str, str]] = []
        # Every subschema by its JSON pointer, and the pointers it applies in place.
        self.in_place: dict[str, list[str]] = {}

    def add(self, pointer: str, message: str) -> None:
        self.problems.append((_as_field(pointer), message))

    def walk(self, schema: Any, pointer: str) -> None:
        if isinstance(schema, bool):
            self.in_place[pointer] = []
            return
        if not isinstance(schema, dict):
            self.add(pointer, "a schema must be an object or a boolean")
            return
        edges: list[str] = []
        self.in_place[pointer] = edges
        for keyword, value in schema.items():
            at = f"{pointer}/{_escape(keyword)}"
            if keyword in ROOT_ONLY:
                if pointer != "":
                    self.add(at, f"{keyword} is allowed at the schema's root only")
                continue
            if keyword not in ALLOWED_KEYWORDS:
                self.add(at, _unknown_keyword(keyword))
                continue
            if keyword == "$ref":
                self.ref(value, at, edges)
            elif keyword in _ONE_SCHEMA:
                self.walk(value, at)
                if keyword in _IN_PLACE_ONE:
                    edges.append(at)
            elif keyword in _SCHEMA_MAPS:
                if not isinstance(value, dict):
                    self.add(at, f"{keyword} takes an object of schemas")
                    continue
                for name, child in value.items():
                    self.walk(child, f"{at}/{_escape(name)}")
                    if keyword in _IN_PLACE_MAPS:
                        edges.append(f"{at}/{_escape(name)}")
                    if keyword == "patternProperties":
                        self.regex(name, at)
            elif keyword in _SCHEMA_LISTS:
                if not isinstance(value, list) or not value:
                    self.add(at, f"{keyword} takes a non-empty array of schemas")
                    continue
                for index, child in enumerate(value):
                    self.walk(child, f"{at}/{index}")
                    if keyword in _IN_PLACE_LISTS:
                        edges.append(f"{at}/{index}")
            elif keyword == "pattern":
                self.regex(value, at)
            elif keyword == "format" and value not in FORMATS:
                self.add(
                    at, f"format {value!r} is not one the service asserts; use one of {', '.join(FORMATS)}"
                )

    def regex(self, pattern: Any, at: str) -> None:
        problem = regex_problem(pattern)
        if problem is not None:
            self.add(at, problem)

    def ref(self, value: Any, at: str, edges: list[str]) -> None:
        if not isinstance(value, str) or not value.startswith("#"):
            self.add(
                at, "only local references ('#/$defs/name') are allowed; remote schemas are never fetched"
            )
            return
        target = value[1:]
        if target and not target.startswith("/"):
            self.add(at, "a reference must be a JSON pointer ('#/$defs/name'); anchors are not supported")
            return
        if _resolve(self.document, target) is _MISSING:
            self.add(at, f"the reference {value!r} points at nothing in this schema")
            return
        edges.append(_unescape_pointer(target))

    def cycles(self) -> None:
        """Refuse an in-place cycle; cap the in-place expansion of every subschema."""
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        sizes: dict[str, int] = {}
        for start in self.in_place:
            if state.get(start) == 2:
                continue
            stack: list[tuple[str, Iterator[str]]] = [(start, iter(self.in_place.get(start, [])))]
            state[start] = 1
            while stack:
                node, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    state[node] = 2
                    sizes[node] = 1 + sum(sizes.get(c, 1) for c in self.in_place.get(node, []))
                    if sizes[node] > MAX_SCHEMA_EXPANSION:
                        self.add(
                            node,
                            f"references and applicators here expand to more than {MAX_SCHEMA_EXPANSION}"
                            " subschemas",
                        )
                        return
                    continue
                if state.get(child) == 1:
                    self.add(node, "a $ref cycle that consumes no input (it would recurse forever)")
                    return
                if state.get(child) is None:
                    state[child] = 1
                    stack.append((child, iter(self.in_place.get(child, []))))


_MISSING = object()


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _unescape_pointer(pointer: str) -> str:
    """A pointer as the walk names subschemas (percent-encoding of a URI fragment decoded)."""
    from urllib.parse import unquote

    return unquote(pointer)


def _resolve(document: Any, pointer: str) -> Any:
    from urllib.parse import unquote

    current = document
    if not pointer:
        return current
    for raw in unquote(pointer).split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _as_field(pointer: str) -> str:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    return ".".join(["schema", *parts])


def _unknown_keyword(keyword: str) -> str:
    if keyword in ("$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor"):
        return f"{keyword} is not supported (dynamic references); use $ref to '#/$defs/...'"
    if keyword in ("$id", "$anchor", "$vocabulary"):
        return f"{keyword} is not supported: schemas have no identifiers; use $ref to '#/$defs/...'"
    return (
        f"unknown keyword {keyword!r}: the draft 2020-12 keywords and the annotations "
        f"{', '.join(sorted(ANNOTATIONS))} are allowed"
    )


def _problems_error(problems: Sequence[tuple[str, str]]) -> InvalidInput:
    field, message = problems[0]
    error = InvalidInput(f"{field}: {message}", field=field)
    error.details = {
        "errors": [{"field": f, "message": m} for f, m in problems[:MAX_ERRORS]],
        "error_count": len(problems),
    }
    return error


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
    checker = _SchemaChecker(document)
    checker.walk(document, "")
    invariants = document.get("invariants", [])
    if not isinstance(invariants, list):
        checker.problems.append(("schema.invariants", "invariants takes an array of conditions"))
        invariants = []
    elif len(invariants) > MAX_INVARIANTS:
        checker.problems.append(("schema.invariants", f"at most {MAX_INVARIANTS} invariants"))
    for index, condition in enumerate(invariants):
        for problem_found in check_condition(
            _field_placeholders(condition), root=f"schema.invariants[{index}]"
        ):
            checker.problems.append((problem_found.field, problem_found.message))
    if not checker.problems:
        checker.cycles()
    if checker.problems:
        raise _problems_error(checker.problems)
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
