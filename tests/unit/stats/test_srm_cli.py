"""`python -m abtest.stats srm` run as a subprocess: ssrm-test's and scipy's numbers, defaults, JSON errors
naming the field with exit code 2, and the example of docs/alerts.md executed as written."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import scipy.stats

from abtest.stats.__main__ import main

ROOT = Path(__file__).resolve().parents[3]
VECTORS = json.loads((ROOT / "tests" / "golden" / "ssrm_vectors.json").read_text())["cases"]
# The installed package runs from any directory, with no PYTHONPATH (pip install -e of the project).
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def run_srm(stdin: str) -> tuple[int, dict[str, Any], bytes]:
    completed = subprocess.run(
        [sys.executable, "-m", "abtest.stats", "srm"],
        input=stdin.encode(),
        capture_output=True,
        env=ENV,
        cwd="/",
        timeout=60,
        check=False,
    )
    return completed.returncode, json.loads(completed.stdout), completed.stderr


def run_srm_in_process(
    stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any], str]:
    """The same entry point without a new interpreter (a subprocess costs a second or two each)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    code = main(["srm"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


@pytest.mark.parametrize("name", ["k3_skew_0.05", "two_50_50_skew_0.03_3", "concentration_1000"])
def test_sequential_p_equals_ssrm_test_and_chi2_p_equals_scipy(name: str) -> None:
    case = next(case for case in VECTORS if case["name"] == name)
    period = case["periods"][0]
    payload = {
        "counts": period["checks"],
        "expected": period["expected"],
        "concentration": case["concentration"],
    }
    code, output, stderr = run_srm(json.dumps(payload))
    assert (code, stderr) == (0, b"")
    assert set(output) == {"sequential_p", "chi2_p"}
    assert output["sequential_p"] == pytest.approx(case["p_values"], rel=1e-8, abs=1e-9)
    totals = [sum(column) for column in zip(*period["checks"], strict=True)]
    reference = scipy.stats.chisquare(totals, [share * sum(totals) for share in period["expected"]]).pvalue
    assert output["chi2_p"] == pytest.approx(reference, rel=1e-9, abs=1e-15)


def test_expected_defaults_to_equal_shares(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = [[980, 1010, 1040], [1002, 990, 1050]]
    _, with_default, _ = run_srm_in_process(json.dumps({"counts": counts}), monkeypatch, capsys)
    _, explicit, _ = run_srm_in_process(
        json.dumps({"counts": counts, "expected": [1 / 3, 1 / 3, 1 / 3]}), monkeypatch, capsys
    )
    assert with_default == explicit
    assert len(with_default["sequential_p"]) == 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "counts"),
        ({"counts": []}, "counts"),
        ({"counts": "1,2"}, "counts"),
        ({"counts": [[1]]}, "counts[0]"),
        ({"counts": [[1, 2], [3]]}, "counts[1]"),
        ({"counts": [[1, 2], [3, 4, 5]]}, "counts[1]"),
        ({"counts": [[1, -2]]}, "counts[0][1]"),
        ({"counts": [[1, 2.5]]}, "counts[0][1]"),
        ({"counts": [[1, "2"]]}, "counts[0][1]"),
        ({"counts": [[1, True]]}, "counts[0][1]"),
        ({"counts": [[1, 2]], "expected": [0.5, 0.6]}, "expected"),
        ({"counts": [[1, 2]], "expected": [0.0, 1.0]}, "expected[0]"),
        ({"counts": [[1, 2]], "expected": [0.2, 0.3, 0.5]}, "counts[0]"),
        ({"counts": [[1, 2]], "expected": [1.0]}, "expected"),
        ({"counts": [[1, 2]], "concentration": 0}, "concentration"),
        ({"counts": [[1, 2]], "alpha": 0.05}, "alpha"),
    ],
)
def test_unusable_input_is_a_json_error_naming_the_field(
    payload: dict[str, Any], field: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output, stderr = run_srm_in_process(json.dumps(payload), monkeypatch, capsys)
    assert code == 2
    assert stderr == ""
    assert output["error"] == "invalid_input"
    assert output["field"] == field
    assert output["message"]


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '{"counts": [[1, NaN]]}'])
def test_input_that_is_not_a_json_object_is_refused(
    raw: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output, _ = run_srm_in_process(raw, monkeypatch, capsys)
    assert code == 2
    assert output["error"] in {"invalid_json", "invalid_input"}


def test_the_documented_example_runs_as_written() -> None:
    page = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    match = re.search(
        r"```sh\necho '(?P<input>[^']+)' \| python -m abtest\.stats srm\n```\n+prints\n+"
        r"```json\n(?P<output>.+?)\n```",
        page,
        re.DOTALL,
    )
    assert match, "docs/alerts.md lost its CLI example"
    code, output, _ = run_srm(match["input"])
    assert code == 0
    assert output == json.loads(match["output"])
