"""GrowthBook's condition cases, read from the shared conformance file (never copied into this
repository): `<repo>/../shared/conformance/growthbook-cases.json`, or ABTEST_CONFORMANCE_FILE.

Used by the unit conformance test (against the evaluator) and the e2e test (against the QA route).
Without the file they skip, naming the path; under CI (the variable `CI` set) they fail instead, so a
CI run cannot pass without them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from localdev.postgres import PROJECT_ROOT

CONFORMANCE_FILE = Path(
    os.environ.get("ABTEST_CONFORMANCE_FILE")
    or PROJECT_ROOT.parent / "shared" / "conformance" / "growthbook-cases.json"
)
# The sections run, and how each row reads: [name, condition, attributes, expected, savedGroups?] for
# the first two; [name, condition, attributes, expected_js, expected_python] for the derived coercion
# cases, of which we follow the JavaScript column (docs/api/targeting.md).
SECTIONS = ("evalCondition", "evalCondition_python_sdk_only", "evalCondition_coercion_derived")


def missing_message() -> str:
    return f"conformance file not found: looked for {CONFORMANCE_FILE} (set ABTEST_CONFORMANCE_FILE)"


def skip_or_fail_when_missing() -> None:
    """Skip the calling test, naming the path looked for; fail it instead when `CI` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{missing_message()}; CI is set, so the conformance cases must run")
    pytest.skip(missing_message())


def conformance_cases() -> list[tuple[str, Any, Any, bool, dict[str, Any]]]:
    """(id, condition, attributes, expected, saved_groups) for every case; [] when the file is absent."""
    if not CONFORMANCE_FILE.is_file():
        return []
    data = json.loads(CONFORMANCE_FILE.read_text(encoding="utf-8"))
    cases = []
    for section in SECTIONS:
        for index, row in enumerate(data[section]):
            name, condition, attributes, expected = row[:4]
            groups = row[4] if section != "evalCondition_coercion_derived" and len(row) > 4 else {}
            cases.append((f"{section}[{index}] {name}", condition, attributes, bool(expected), groups))
    return cases
