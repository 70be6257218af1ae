"""Write-time checks of targeting conditions: what is wrong with a condition before it is stored, each
problem with the JSON path at fault (`targeting.country.$in`); and the saved groups a condition names.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from abtest.domain.js_values import is_number, regex_problem
from abtest.domain.targeting import (
    ARRAY_OPERATORS,
    COMPARISONS,
    GROUP_OPERATORS,
    OPERATORS,
    REGEX_OPERATORS,
    TYPES,
    VERSION_OPERATORS,
    is_operator_object,
)
from abtest.errors import InvalidInput
from abtest.field_path import field_path
from abtest.limits import MAX_CONDITION_BYTES, MAX_CONDITION_DEPTH, MAX_ERRORS


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
            if not isinstance(expected, str) and not is_number(expected):
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
            elif is_operator_object(expected):
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
            "errors": [{"field": p.field, "message": p.message} for p in problems[:MAX_ERRORS]],
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
