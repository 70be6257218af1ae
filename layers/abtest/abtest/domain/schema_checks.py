"""Write-time checks of a config schema as untrusted input (see abtest.domain.config_schemas): the allowed
keywords, local references only, no in-place reference cycle, a capped in-place expansion, RE2 patterns,
asserted formats only. Each problem names its path under `schema` (`schema.properties.x.pattern`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from abtest.domain.js_values import regex_problem
from abtest.domain.schema_formats import FORMATS
from abtest.errors import InvalidInput
from abtest.limits import MAX_ERRORS, MAX_SCHEMA_EXPANSION

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


def schema_problems(document: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (field, message) that makes `document` unacceptable as a config schema (empty: none),
    its invariants aside (abtest.domain.config_schemas checks those)."""
    checker = _SchemaChecker(document)
    checker.walk(document, "")
    if not checker.problems:
        checker.cycles()
    return checker.problems


def problems_error(problems: Sequence[tuple[str, str]]) -> InvalidInput:
    """The 422 of a schema's problems: the first names the field, every one is listed (capped)."""
    return _problems_error(problems)
