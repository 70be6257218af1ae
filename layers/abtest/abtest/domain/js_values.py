"""JavaScript's value semantics, on JSON values, as GrowthBook's condition language relies on them:
coercion (`String(x)`, `Number(x)`, truthiness), comparison (`<` and `===`), JSON text, regex search
(RE2: linear time, compiled once and cached) and version strings padded for comparison.

Used by the evaluator (abtest.domain.targeting) and the write-time checks (abtest.domain.targeting_checks).
"""

from __future__ import annotations

import functools
import json
import math
import re
from decimal import Decimal
from typing import Any

import re2

from abtest.limits import MAX_REGEX_LENGTH

REGEX_CACHE_SIZE = 1024  # compiled patterns kept per container
# RE2 refuses patterns whose compiled program would need more memory than this (bytes).
REGEX_MAX_MEMORY = 1 << 20

# -- JavaScript's coercions, on JSON values (None, bool, int, float, str, list, dict) ---------------


def is_number(value: Any) -> bool:
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


def truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if is_number(value):
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


def compare(operator: str, actual: Any, expected: Any) -> bool:
    if operator == "$lt":
        return _less(actual, expected) is True
    if operator == "$gt":
        return _less(expected, actual) is True
    if operator == "$lte":
        return _less(expected, actual) is False
    return _less(actual, expected) is False  # $gte


def strict_equal(left: Any, right: Any) -> bool:
    """JavaScript's `===` on JSON values: no coercion; arrays and objects are never equal (identity)."""
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if is_number(left) and is_number(right):
        return bool(left == right)
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    return False


def array_index(key: str) -> bool:
    return key == "0" or (key[:1] in "123456789" and key.isascii() and key.isdigit() and int(key) < 2**32 - 1)


def js_json(value: Any) -> str:
    """JavaScript's JSON.stringify of a JSON value (number layout and key order as JavaScript's)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        number = float(value)
        return js_string(value) if math.isfinite(number) else "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(js_json(item) for item in value) + "]"
    if isinstance(value, dict):
        # JavaScript lists integer-like keys first, ascending, then the others in insertion order.
        keys = sorted((k for k in value if array_index(k)), key=int) + [
            k for k in value if not array_index(k)
        ]
        return "{" + ",".join(f"{js_json(k)}:{js_json(value[k])}" for k in keys) + "}"
    return "null"


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if is_number(value):
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


def regex_search(pattern: Any, actual: Any, ignore_case: bool) -> bool | None:
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
    if is_number(value):
        value = js_string(value)
    if not value or not isinstance(value, str):
        value = "0"
    parts = _VERSION_SPLIT.split(_VERSION_STRIP.sub("", value))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(part.rjust(5) if _DIGITS.fullmatch(part) else part for part in parts)


def compare_versions(operator: str, actual: Any, expected: Any) -> bool:
    a, b = _utf16(padded_version(actual)), _utf16(padded_version(expected))
    return {
        "$veq": a == b,
        "$vne": a != b,
        "$vgt": a > b,
        "$vgte": a >= b,
        "$vlt": a < b,
        "$vlte": a <= b,
    }[operator]
