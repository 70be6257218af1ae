"""Targeting conditions in GrowthBook's condition language: a pure evaluator and the write-time checks.

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

`check_condition(condition, saved_groups)` lists what is wrong with a condition before it is stored
(unknown operators, `$in` without an array, regexes RE2 cannot compile or longer than 256 characters,
nesting deeper than 10, more than 16 KiB of JSON, saved groups that do not exist), each problem with
the JSON path at fault such as `targeting.country.$in`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import re2

from abtest.errors import InvalidInput
from abtest.field_path import field_path

# Write-time limits (docs/limits.md); evaluation applies the regex length cap too.
MAX_CONDITION_DEPTH = 10  # nested JSON objects and arrays, the condition itself being level 1
MAX_CONDITION_BYTES = 16_384  # compact UTF-8 JSON
MAX_REGEX_LENGTH = 256  # characters of a pattern
MAX_PROBLEMS = 20  # problems listed in a 422 (error_count gives the total)
REGEX_CACHE_SIZE = 1024  # compiled patterns kept per container
# RE2 refuses patterns whose compiled program would need more memory than this (bytes).
REGEX_MAX_MEMORY = 1 << 20

LOGICAL = ("$and", "$or", "$nor", "$not")
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


# -- JavaScript's coercions, on JSON values (None, bool, int, float, str, list, dict) ---------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def js_number_text(number: float) -> str:
    """JavaScript's Number.prototype.toString: 5.0 -> "5", 1e21 -> "1e+21", 1e-7 -> "1e-7"."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    if number < 0:
        return "-" + js_number_text(-number)
    # repr gives the shortest digits that round-trip, as JavaScript does; only the layout differs.
    _, digit_tuple, exponent = Decimal(repr(float(number))).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)
    n = exponent + k  # the value is 0.digits * 10^n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    sign = "+" if n - 1 >= 0 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{head}e{sign}{abs(n - 1)}"


def js_string(value: Any) -> str:
    """JavaScript's String(value) for a JSON value (arrays join with commas, objects are opaque)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**21 else js_number_text(float(value))
    if isinstance(value, float):
        return js_number_text(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join("" if item is None else js_string(item) for item in value)
    return "[object Object]"


# JavaScript's whitespace (what Number(" 5 ") trims): ASCII spaces, Unicode Zs, line separators, BOM.
_JS_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_RADIX = {"0x": 16, "0o": 8, "0b": 2}
_RADIX_DIGITS = {16: re.compile(r"[0-9a-fA-F]+"), 8: re.compile(r"[0-7]+"), 2: re.compile(r"[01]+")}


def _js_string_number(text: str) -> float:
    text = text.strip(_JS_SPACE)
    if not text:
        return 0.0
    base = _RADIX.get(text[:2].lower())
    if base is not None:
        return float(int(text[2:], base)) if _RADIX_DIGITS[base].fullmatch(text[2:]) else math.nan
    if _DECIMAL.fullmatch(text):
        return float(text)
    return math.nan


def js_number(value: Any) -> float:
    """JavaScript's Number(value): null -> 0, true -> 1, "5" -> 5, " 0x10 " -> 16, "abc" -> NaN."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _js_string_number(value)
    if isinstance(value, list):
        return _js_string_number(js_string(value))
    return math.nan


def _truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if _is_number(value):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True  # arrays and objects, even empty ones


def _utf16(text: str) -> bytes:
    # JavaScript orders strings by UTF-16 code units (astral characters sort below U+E000..U+FFFF).
    return text.encode("utf-16-be", "surrogatepass")


def _less(left: Any, right: Any) -> bool | None:
    """JavaScript's `left < right`; None where JavaScript answers undefined (a NaN side)."""
    if isinstance(left, list | dict):
        left = js_string(left)
    if isinstance(right, list | dict):
        right = js_string(right)
    if isinstance(left, str) and isinstance(right, str):
        return _utf16(left) < _utf16(right)
    a, b = js_number(left), js_number(right)
    if math.isnan(a) or math.isnan(b):
        return None
    return a < b


def _compare(operator: str, actual: Any, expected: Any) -> bool:
    if operator == "$lt":
        return _less(actual, expected) is True
    if operator == "$gt":
        return _less(expected, actual) is True
    if operator == "$lte":
        return _less(expected, actual) is False
    return _less(actual, expected) is False  # $gte


def _strict_equal(left: Any, right: Any) -> bool:
    """JavaScript's `===` on JSON values: no coercion; arrays and objects are never equal (identity)."""
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    return False


def _array_index(key: str) -> bool:
    return key == "0" or (key[:1] in "123456789" and key.isascii() and key.isdigit() and int(key) < 2**32 - 1)


def js_json(value: Any) -> str:
    """JavaScript's JSON.stringify of a JSON value (number layout and key order as JavaScript's)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        number = float(value)
        return js_string(value) if math.isfinite(number) else "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(js_json(item) for item in value) + "]"
    if isinstance(value, dict):
        # JavaScript lists integer-like keys first, ascending, then the others in insertion order.
        keys = sorted((k for k in value if _array_index(k)), key=int) + [
            k for k in value if not _array_index(k)
        ]
        return "{" + ",".join(f"{js_json(k)}:{js_json(value[k])}" for k in keys) + "}"
    return "null"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# -- regexes ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=REGEX_CACHE_SIZE)
def _compiled(pattern: str, ignore_case: bool) -> Any:
    """The RE2 program for a pattern, or None when RE2 cannot compile it (cached either way)."""
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False
    options.max_mem = REGEX_MAX_MEMORY
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None


def regex_problem(pattern: Any) -> str | None:
    """Why a pattern cannot be used, or None if it can."""
    if not isinstance(pattern, str):
        return "a regex must be a string"
    if len(pattern) > MAX_REGEX_LENGTH:
        return f"the regex is {len(pattern)} characters; the limit is {MAX_REGEX_LENGTH}"
    if _compiled(pattern, False) is None:
        return "the regex does not compile (RE2 syntax: no lookaround, no backreferences)"
    return None


def _search(pattern: Any, actual: Any, ignore_case: bool) -> bool | None:
    """Whether the pattern occurs in String(actual) (unanchored, like RegExp.test); None if unusable."""
    if not isinstance(pattern, str) or len(pattern) > MAX_REGEX_LENGTH:
        return None
    program = _compiled(pattern, ignore_case)
    if program is None:
        return None
    return program.search(js_string(actual)) is not None


# -- versions ---------------------------------------------------------------------------------------

_VERSION_STRIP = re.compile(r"^v|\+[^\n\r\u2028\u2029]*\Z")
_VERSION_SPLIT = re.compile(r"[-.]")
_DIGITS = re.compile(r"[0-9]+")


def padded_version(value: Any) -> str:
    """A version string that compares correctly as text: "v1.2.3+build" -> "    1-    2-    3-~".

    A leading `v` and a `+build` suffix are dropped; the parts split on `-` and `.`; a plain three-part
    version gets a final `~` (above every prerelease tag); numeric parts are left-padded with spaces to 5.
    """
    if _is_number(value):
        value = js_string(value)
    if not value or not isinstance(value, str):
        value = "0"
    parts = _VERSION_SPLIT.split(_VERSION_STRIP.sub("", value))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(part.rjust(5) if _DIGITS.fullmatch(part) else part for part in parts)


def _version(operator: str, actual: Any, expected: Any) -> bool:
    a, b = _utf16(padded_version(actual)), _utf16(padded_version(expected))
    return {
        "$veq": a == b,
        "$vne": a != b,
        "$vgt": a > b,
        "$vgte": a >= b,
        "$vlt": a < b,
        "$vlte": a <= b,
    }[operator]


# -- evaluation -------------------------------------------------------------------------------------


def _is_operator_object(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(str(key).startswith("$") for key in value)


def attribute(attributes: Any, path: str) -> Any:
    """The value at a dotted path (`a.b.0.c`): object keys and array indices; missing -> None."""
    current = attributes
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and _array_index(part) and int(part) < len(current):
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
        elif any(_strict_equal(value, item) for item in wanted):
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
            return actual is not None and _truthy(actual) == condition
        if _is_number(condition):
            return bool(js_number(actual) == condition)
        if condition is None:
            return actual is None
        if not _is_operator_object(condition):
            return js_json(actual) == js_json(condition)
        return all(self.operator(op, actual, expected) for op, expected in condition.items())

    def operator(self, op: str, actual: Any, expected: Any) -> bool:
        if op == "$eq":
            return _strict_equal(actual, expected)
        if op == "$ne":
            return not _strict_equal(actual, expected)
        if op in COMPARISONS:
            return _compare(op, actual, expected)
        if op in VERSION_OPERATORS:
            return _version(op, actual, expected)
        if op == "$exists":
            return (actual is not None) if _truthy(expected) else (actual is None)
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
            if _is_operator_object(expected):
                return any(self.value(expected, element) for element in actual)
            return any(self.condition(expected, element) for element in actual)
        if op == "$not":
            return not self.value(expected, actual)
        if op in REGEX_OPERATORS:
            found = _search(expected, actual, ignore_case=op.endswith("i"))
            if found is None:
                return False  # an unusable pattern never matches, negated or not
            return found if op.startswith("$regex") else not found
        if op == "$type":
            return bool(_type_name(actual) == expected)
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


# -- write-time validation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a condition: the JSON path at fault and why."""

    field: str
    message: str

    @property
    def text(self) -> str:
        """The problem as one line: `targeting.country.$in: $in takes an array`."""
        return f"{self.field}: {self.message}"


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_CONDITION_DEPTH:
                return depth  # deep enough to refuse; no need to walk a hostile value further
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


class _Checker:
    def __init__(self, root: str, saved_groups: Collection[str] | None) -> None:
        self.root = root
        self.saved_groups = saved_groups
        self.problems: list[Problem] = []

    def add(self, path: Sequence[int | str], message: str) -> None:
        self.problems.append(Problem(field_path((self.root, *path)), message))

    def condition(self, condition: Any, path: tuple[int | str, ...]) -> None:
        if not isinstance(condition, dict):
            self.add(path, "a condition must be a JSON object")
            return
        for key, value in condition.items():
            here = (*path, key)
            if key in ("$and", "$or", "$nor"):
                if not isinstance(value, list):
                    self.add(here, f"{key} takes an array of conditions")
                    continue
                for index, item in enumerate(value):
                    self.condition(item, (*here, index))
            elif key == "$not":
                self.condition(value, here)
            elif key.startswith("$"):
                self.add(
                    here,
                    f"unknown operator '{key}': conditions combine with $and, $or, $nor, $not "
                    "(attribute names cannot start with '$')",
                )
            else:
                self.value(value, here)

    def value(self, value: Any, path: tuple[int | str, ...]) -> None:
        if not isinstance(value, dict) or not value:
            return  # a literal: strings, numbers, booleans, null, arrays and {} compare by value
        operators = [key for key in value if key.startswith("$")]
        if not operators:
            return  # a literal object, compared as JSON
        if len(operators) != len(value):
            plain = next(key for key in value if not key.startswith("$"))
            self.add(
                (*path, plain),
                "an object mixing operators and plain keys would be compared as a literal; "
                "use only operators (or only plain keys)",
            )
            return
        for op, expected in value.items():
            self.operator(op, expected, (*path, op))

    def operator(self, op: str, expected: Any, path: tuple[int | str, ...]) -> None:
        if op not in OPERATORS:
            self.add(path, f"unknown operator '{op}'")
        elif op in ARRAY_OPERATORS:
            if not isinstance(expected, list):
                self.add(path, f"{op} takes an array")
            elif op in ("$all", "$alli"):
                for index, item in enumerate(expected):
                    self.value(item, (*path, index))
        elif op in REGEX_OPERATORS:
            problem = regex_problem(expected)
            if problem is not None:
                self.add(path, problem)
        elif op in COMPARISONS or op in VERSION_OPERATORS:
            if not isinstance(expected, str) and not _is_number(expected):
                self.add(path, f"{op} takes a string or a number")
        elif op == "$exists":
            if not isinstance(expected, bool):
                self.add(path, "$exists takes true or false")
        elif op == "$type":
            if expected not in TYPES:
                self.add(path, f"$type takes one of {', '.join(TYPES)}")
        elif op in GROUP_OPERATORS:
            if not isinstance(expected, str):
                self.add(path, f"{op} takes the key of a saved group (a string)")
            elif self.saved_groups is not None and expected not in self.saved_groups:
                self.add(path, f"no saved group with key '{expected}'")
        elif op == "$elemMatch":
            if not isinstance(expected, dict):
                self.add(path, "$elemMatch takes an object (operators, or a condition on each element)")
            elif _is_operator_object(expected):
                self.value(expected, path)
            else:
                self.condition(expected, path)
        elif op in ("$not", "$size"):
            self.value(expected, path)


def check_condition(
    condition: Any, saved_groups: Collection[str] | None = None, root: str = "targeting"
) -> list[Problem]:
    """Every problem of a condition, each naming its JSON path under `root` (empty: it can be stored).

    `saved_groups` are the existing group keys; None skips that check (the caller checks it later).
    """
    try:
        size = len(
            json.dumps(condition, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")
        )
    except (ValueError, TypeError, RecursionError):
        return [Problem(root, "not a JSON value")]
    if size > MAX_CONDITION_BYTES:
        return [Problem(root, f"the condition is {size} bytes as JSON; the limit is {MAX_CONDITION_BYTES}")]
    depth = _depth(condition)
    if depth > MAX_CONDITION_DEPTH:
        return [Problem(root, f"nested {depth}+ levels deep; the limit is {MAX_CONDITION_DEPTH} levels")]
    checker = _Checker(root, saved_groups)
    checker.condition(condition, ())
    return checker.problems


def require_valid_condition(
    condition: Any, saved_groups: Collection[str] | None = None, root: str = "targeting"
) -> None:
    """Raise InvalidInput (422) naming the first problem's path, with every problem in `errors`."""
    problems = check_condition(condition, saved_groups, root)
    if problems:
        first = problems[0]
        error = InvalidInput(first.text, field=first.field)
        error.details = {
            "errors": [{"field": p.field, "message": p.message} for p in problems[:MAX_PROBLEMS]],
            "error_count": len(problems),
        }
        raise error


def referenced_groups(condition: Any) -> set[str]:
    """The saved-group keys a condition names in `$inGroup`/`$notInGroup` (anywhere in it)."""
    keys: set[str] = set()
    stack = [condition]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in GROUP_OPERATORS and isinstance(value, str):
                    keys.add(value)
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return keys
