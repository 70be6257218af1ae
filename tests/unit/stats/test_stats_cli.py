"""`python -m abtest.stats` run as a subprocess: success output, and JSON errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from abtest.stats import analyze

# The installed package runs from any directory, with no PYTHONPATH (pip install -e of the project).
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def run_cli(stdin: str | bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run(
        [sys.executable, "-m", "abtest.stats", *args],
        input=data,
        capture_output=True,
        env=ENV,
        cwd="/",
        timeout=60,
        check=False,
    )


def run_json(payload: Any) -> tuple[int, dict[str, Any], bytes]:
    completed = run_cli(json.dumps(payload))
    return completed.returncode, json.loads(completed.stdout), completed.stderr


BINOMIAL_INPUT = {
    "metric_type": "binomial",
    "alpha": 0.05,
    "weights": [0.5, 0.5],
    "sequential_tuning_parameter": 5000,
    "variants": [{"users": 5000, "conversions": 500}, {"users": 5400, "conversions": 600}],
}


def test_binomial_analysis_matches_the_python_api() -> None:
    code, output, stderr = run_json(BINOMIAL_INPUT)
    assert code == 0
    assert stderr == b""
    expected = analyze(
        "binomial",
        BINOMIAL_INPUT["variants"],  # type: ignore[arg-type]
        weights=[0.5, 0.5],
        alpha=0.05,
        sequential_tuning_parameter=5000,
    )
    assert output == json.loads(json.dumps(expected))
    assert output["srm_flag"] is True  # 5,000 vs 5,400 on 50/50
    comparison = output["comparisons"][0]
    assert comparison["treatment_index"] == 1
    assert comparison["relative"]["estimate"] == pytest.approx((600 / 5400) / (500 / 5000) - 1, rel=1e-12)
    assert "power" not in output
    assert "cuped_absolute" not in comparison


def test_mean_metric_with_cuped_power_and_correction() -> None:
    payload = {
        "metric_type": "mean",
        "mde": 0.05,
        "correction": "bh",
        "variants": [
            {
                "users": 1000,
                "sum": 5000.0,
                "sum_squares": 60000.0,
                "pre_sum": 4000.0,
                "pre_sum_squares": 40000.0,
                "post_pre_sum_products": 45000.0,
            },
            {
                "users": 1000,
                "sum": 5300.0,
                "sum_squares": 65000.0,
                "pre_sum": 4050.0,
                "pre_sum_squares": 41000.0,
                "post_pre_sum_products": 47000.0,
            },
            {
                "users": 990,
                "sum": 4900.0,
                "sum_squares": 59000.0,
                "pre_sum": 3990.0,
                "pre_sum_squares": 39500.0,
                "post_pre_sum_products": 44000.0,
            },
        ],
    }
    code, output, _ = run_json(payload)
    assert code == 0
    assert len(output["comparisons"]) == 2
    for comparison in output["comparisons"]:
        assert set(comparison["cuped_absolute"]) == {
            "estimate",
            "se",
            "ci",
            "p_value",
            "error",
            "p_value_adjusted",
        }
        assert comparison["cuped_absolute"]["error"] is None
    assert output["power"]["required_users_per_variant"][0] > 1000
    assert 0 < output["power"]["progress"] < 1


def test_indent_option_pretty_prints() -> None:
    completed = run_cli(json.dumps(BINOMIAL_INPUT), "--indent", "2")
    assert completed.returncode == 0
    assert completed.stdout.startswith(b'{\n  "srm_p_value"')


def test_degenerate_input_is_not_an_input_error() -> None:
    payload = {
        "metric_type": "binomial",
        "variants": [{"users": 0, "conversions": 0}, {"users": 0, "conversions": 0}],
    }
    code, output, _ = run_json(payload)
    assert code == 0
    assert output["comparisons"][0]["relative"]["error"] == "no_users"
    assert output["srm_p_value"] == 1.0
    assert output["srm_flag"] is False


BAD_INPUTS = [
    pytest.param(b"not json", "invalid_json", None, id="not-json"),
    pytest.param(b"", "invalid_json", None, id="empty-stdin"),
    pytest.param(b"\xff\xfe{", "invalid_json", None, id="not-utf8"),
    pytest.param(
        b'{"metric_type": "binomial", "variants": [{"users": NaN, "conversions": 1}]}',
        "invalid_json",
        None,
        id="nan",
    ),
    pytest.param(b"[1, 2]", "invalid_input", None, id="not-an-object"),
    pytest.param({"variants": []}, "invalid_input", "metric_type", id="missing-metric-type"),
    pytest.param({"metric_type": "binomial"}, "invalid_input", "variants", id="missing-variants"),
    pytest.param(
        {"metric_type": "binomial", "variants": [{"users": 10, "conversions": 1}]},
        "invalid_input",
        "variants",
        id="one-variant",
    ),
    pytest.param(
        {
            "metric_type": "binomial",
            "variants": [{"users": -5, "conversions": 0}, {"users": 10, "conversions": 1}],
        },
        "invalid_input",
        "variants[0].users",
        id="negative-users",
    ),
    pytest.param(
        {
            "metric_type": "binomial",
            "variants": [{"users": 10, "conversions": 1}, {"users": 10, "conversions": 12}],
        },
        "invalid_input",
        "variants[1].conversions",
        id="conversions-above-users",
    ),
    pytest.param(
        {"metric_type": "binomial", "variants": [{"users": 10, "conversions": 1}, {"users": 10}]},
        "invalid_input",
        "variants[1].conversions",
        id="missing-conversions",
    ),
    pytest.param(
        {"metric_type": "binomial", "weights": [1, 1, 1], "variants": [{"users": 10, "conversions": 1}] * 2},
        "invalid_input",
        "weights",
        id="weights-count-mismatch",
    ),
    pytest.param(
        {"metric_type": "binomial", "variants": [{"users": "10", "conversions": 1}] * 2},
        "invalid_input",
        "variants[0].users",
        id="string-number",
    ),
    pytest.param(
        {"metric_type": "mean", "variants": [{"users": 10, "sum": 1.0}] * 2},
        "invalid_input",
        "variants[0].sum_squares",
        id="missing-sum-squares",
    ),
    pytest.param(
        {"metric_type": "mean", "alpha": 2, "variants": [{"users": 10, "sum": 1.0, "sum_squares": 2.0}] * 2},
        "invalid_input",
        "alpha",
        id="alpha-out-of-range",
    ),
    pytest.param(
        {"metric_type": "binomial", "variants": [{"users": 10, "conversions": 1, "revenue": 3}] * 2},
        "invalid_input",
        "variants[0].revenue",
        id="unknown-field",
    ),
]


@pytest.mark.parametrize(("stdin", "error", "field"), BAD_INPUTS)
def test_bad_input_gives_a_json_error_and_exit_code_2(
    stdin: bytes | dict[str, Any], error: str, field: str | None
) -> None:
    completed = run_cli(stdin if isinstance(stdin, bytes) else json.dumps(stdin))
    assert completed.returncode == 2
    assert completed.stderr == b""  # no traceback
    output = json.loads(completed.stdout)
    assert set(output) == {"error", "message", "field"}
    assert output["error"] == error
    assert output["field"] == field
    assert isinstance(output["message"], str)
    assert output["message"]


def test_runtime_does_not_import_scipy_or_the_reference_libraries() -> None:
    # scipy.stats alone adds ~0.7 s to a Lambda cold start; the stats layer must not pull it in.
    code = (
        "import sys, json, abtest.stats, abtest.stats.__main__; "
        "heavy = ('scipy', 'statsmodels', 'pandas', 'gbstats'); "
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        env=ENV,
        cwd="/",
        timeout=60,
        check=True,
    )
    assert json.loads(completed.stdout) == []
