"""Every GrowthBook evalCondition case (248), the Python-SDK-only cases for the operators we support
(11: $notRegex, $notRegexi, and more $ini/$nini/$alli) and the 7 derived coercion cases (JavaScript
column) against our evaluator. The cases stay in the shared file; when it is absent, one test skips
and says which path it looked for (under CI it fails)."""

from __future__ import annotations

from typing import Any

import pytest

from abtest.domain.targeting import evaluate
from tests.conformance import CONFORMANCE_FILE, conformance_cases, skip_or_fail_when_missing

CASES = conformance_cases()


def test_the_conformance_file_is_read_in_full() -> None:
    # The one test that runs whether or not the file is there: it skips, naming the path, without it.
    if not CASES:
        skip_or_fail_when_missing()
    names = [case[0] for case in CASES]
    assert sum(name.startswith("evalCondition[") for name in names) == 248, CONFORMANCE_FILE
    assert sum(name.startswith("evalCondition_python_sdk_only[") for name in names) == 11
    assert sum(name.startswith("evalCondition_coercion_derived[") for name in names) == 7


if CASES:  # one test per case; none at all (rather than an empty parameter set) without the file

    @pytest.mark.parametrize(
        ("condition", "attributes", "expected", "groups"),
        [case[1:] for case in CASES],
        ids=[case[0] for case in CASES],
    )
    def test_condition_case(condition: Any, attributes: Any, expected: bool, groups: dict[str, Any]) -> None:
        assert evaluate(condition, attributes, groups) is expected
