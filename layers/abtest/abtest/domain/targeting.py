"""Targeting conditions in GrowthBook's condition language: the pure evaluator and the operators.

`evaluate(condition, attributes, saved_groups)` says whether a user's attributes match a condition. It
follows GrowthBook's JavaScript reference (`mongrule.ts`), written here from its
documented semantics, including JavaScript's type coercion where the two reference SDKs disagree
(docs/api/targeting.md lists the rules with examples):

- a string condition matches `String(value)`, a number condition `Number(value)`, a boolean
  condition the value's truthiness (null never matches a boolean), `null` only null;
- arrays and plain objects compare as JSON text; an object whose keys all start with `$` is a set of
  operators that must all pass;
- `$eq`/`$ne`/`$in`/... compare strictly (no coercion); `$lt`/`$gt`/... compare like JavaScript's `<`:
  two strings lexicographically, anything else as numbers;
- regexes are unanchored searches (JavaScript `RegExp.test`) run by RE2, which matches in linear time,
  so no pattern can hang a request; they are compiled once and cached (bounded LRU);
- an unknown operator, a malformed condition or any evaluation error makes the condition false
  (fail closed: the user is not enrolled).

JavaScript's value semantics live in abtest.domain.js_values. The write-time checks are in
abtest.domain.targeting_checks: `check_condition(condition, saved_groups)` lists what is wrong with a
condition before it is stored (unknown operators, `$in` without an array, regexes RE2 cannot compile
or longer than 256 characters, nesting deeper than 10, more than 16 KiB of JSON, saved groups that do
not exist), each problem with the JSON path at fault such as `targeting.country.$in`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from abtest.domain.js_values import (
    array_index,
    compare,
    compare_versions,
    is_number,
    js_json,
    js_number,
    js_string,
    regex_search,
    strict_equal,
    truthy,
    type_name,
)

ARRAY_OPERATORS = ("$in", "$nin", "$ini", "$nini", "$all", "$alli")
REGEX_OPERATORS = ("$regex", "$regexi", "$notRegex", "$notRegexi")
VERSION_OPERATORS = ("$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte")
COMPARISONS = ("$lt", "$lte", "$gt", "$gte")
GROUP_OPERATORS = ("$inGroup", "$notInGroup")
OPERATORS = frozenset(
    (
        "$eq",
        "$ne",
        *COMPARISONS,
        *ARRAY_OPERATORS,
        *REGEX_OPERATORS,
        *VERSION_OPERATORS,
        *GROUP_OPERATORS,
        "$exists",
        "$type",
        "$elemMatch",
        "$size",
        "$not",
    )
)
TYPES = ("null", "array", "string", "number", "boolean", "object", "undefined")

SavedGroups = Mapping[str, Sequence[Any]]


# -- evaluation -------------------------------------------------------------------------------------


def is_operator_object(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(str(key).startswith("$") for key in value)


def attribute(attributes: Any, path: str) -> Any:
    """The value at a dotted path (`a.b.0.c`): object keys and array indices; missing -> None."""
    current = attributes
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and array_index(part) and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _is_in(actual: Any, expected: Sequence[Any], ignore_case: bool = False) -> bool:
    """`$in`: the value (or any element of an array value) is strictly equal to an expected item."""
    wanted = [_fold(item) for item in expected] if ignore_case else expected
    candidates = actual if isinstance(actual, list) else [actual]
    for candidate in candidates:
        value = _fold(candidate) if ignore_case else candidate
        if isinstance(value, str):
            # A string equals only an equal string, as with ===: the containment test runs in C (a
            # saved group may hold 10,000 values).
            if value in wanted:
                return True
        elif any(strict_equal(value, item) for item in wanted):
            return True
    return False


class _Evaluator:
    def __init__(self, saved_groups: SavedGroups) -> None:
        self.saved_groups = saved_groups

    def condition(self, condition: Any, attributes: Any) -> bool:
        if not isinstance(condition, dict):
            return False  # GrowthBook's answer for these is accidental; fail closed
        for key, value in condition.items():
            if key == "$or":
                if not self._any(value, attributes):
                    return False
            elif key == "$nor":
                if not isinstance(value, list) or self._any(value, attributes):
                    return False
            elif key == "$and":
                if not isinstance(value, list) or not all(self.condition(c, attributes) for c in value):
                    return False
            elif key == "$not":
                if not isinstance(value, dict) or self.condition(value, attributes):
                    return False
            elif not self.value(value, attribute(attributes, key)):
                return False
        return True

    def _any(self, conditions: Any, attributes: Any) -> bool:
        if not isinstance(conditions, list):
            return False
        if not conditions:
            return True  # an empty $or passes
        return any(self.condition(c, attributes) for c in conditions)

    def value(self, condition: Any, actual: Any, ignore_case: bool = False) -> bool:
        if isinstance(condition, str):
            if ignore_case:
                return js_string(actual).lower() == condition.lower()
            return js_string(actual) == condition
        if isinstance(condition, bool):
            return actual is not None and truthy(actual) == condition
        if is_number(condition):
            return bool(js_number(actual) == condition)
        if condition is None:
            return actual is None
        if not is_operator_object(condition):
            return js_json(actual) == js_json(condition)
        return all(self.operator(op, actual, expected) for op, expected in condition.items())

    def operator(self, op: str, actual: Any, expected: Any) -> bool:
        if op == "$eq":
            return strict_equal(actual, expected)
        if op == "$ne":
            return not strict_equal(actual, expected)
        if op in COMPARISONS:
            return compare(op, actual, expected)
        if op in VERSION_OPERATORS:
            return compare_versions(op, actual, expected)
        if op == "$exists":
            return (actual is not None) if truthy(expected) else (actual is None)
        if op in ("$in", "$ini"):
            return isinstance(expected, list) and _is_in(actual, expected, op == "$ini")
        if op in ("$nin", "$nini"):
            return isinstance(expected, list) and not _is_in(actual, expected, op == "$nini")
        if op in GROUP_OPERATORS:
            key = expected if isinstance(expected, str) else js_string(expected)
            members = _is_in(actual, self.saved_groups.get(key) or [])  # an unknown group is empty
            return members if op == "$inGroup" else not members
        if op in ("$all", "$alli"):
            if not isinstance(actual, list) or not isinstance(expected, list):
                return False
            ignore = op == "$alli"
            return all(any(self.value(item, element, ignore) for element in actual) for item in expected)
        if op == "$size":
            return isinstance(actual, list) and self.value(expected, len(actual))
        if op == "$elemMatch":
            if not isinstance(actual, list) or not isinstance(expected, dict):
                return False
            if is_operator_object(expected):
                return any(self.value(expected, element) for element in actual)
            return any(self.condition(expected, element) for element in actual)
        if op == "$not":
            return not self.value(expected, actual)
        if op in REGEX_OPERATORS:
            found = regex_search(expected, actual, ignore_case=op.endswith("i"))
            if found is None:
                return False  # an unusable pattern never matches, negated or not
            return found if op.startswith("$regex") else not found
        if op == "$type":
            return bool(type_name(actual) == expected)
        return False  # an unknown operator


def evaluate(condition: Any, attributes: Mapping[str, Any], saved_groups: SavedGroups | None = None) -> bool:
    """Whether `attributes` satisfy `condition` (GrowthBook's language; `{}` matches everyone).

    `saved_groups` maps a group key to its values for `$inGroup`/`$notInGroup` (an unknown key is an
    empty group). Never raises: anything that goes wrong is a non-match (fail closed).
    """
    try:
        return _Evaluator(saved_groups or {}).condition(condition, attributes)
    except (RecursionError, ValueError, TypeError, OverflowError, MemoryError):
        return False
