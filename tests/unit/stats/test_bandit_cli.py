"""`python -m abtest.stats bandit` as a subprocess, and the examples of docs/bandits.md."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from abtest.stats.bandit import ArmStats, bandit_reweight
from abtest.stats.bandit_periods import period_weighted_estimates

ENV = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
DOCS = Path(__file__).resolve().parents[3] / "docs" / "bandits.md"

FIXTURE = {
    "arms": [
        {"users": 1000, "sum": 10, "sum_squares": 2000},
        {"users": 1000, "sum": 20, "sum_squares": 2000},
        {"users": 1000, "sum": 30, "sum_squares": 2000},
        {"users": 1000, "sum": 300, "sum_squares": 20000},
    ]
}


def run(payload: Any) -> tuple[int, dict[str, Any]]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    completed = subprocess.run(
        [sys.executable, "-m", "abtest.stats", "bandit"],
        input=data,
        capture_output=True,
        env=ENV,
        cwd="/",
        timeout=60,
        check=False,
    )
    assert completed.stderr == b""  # never a traceback
    return completed.returncode, json.loads(completed.stdout)


def test_the_gbstats_fixture_with_defaults() -> None:
    code, output = run(FIXTURE)
    assert code == 0
    assert set(output) == {"outcome", "p_best", "weights"}
    expected = bandit_reweight([ArmStats(a["users"], a["sum"], a["sum_squares"]) for a in FIXTURE["arms"]])
    assert output == {
        "outcome": "updated",
        "p_best": list(expected.p_best or ()),
        "weights": list(expected.weights),
    }
    assert output["p_best"] == pytest.approx(
        [0.0110328100097, 0.0156277354378, 0.0217187484648, 0.951620706088]
    )


def test_conversions_direction_and_settings() -> None:
    payload = {
        "arms": [{"users": 2000, "conversions": 200}, {"users": 2000, "conversions": 150}],
        "weights": [0.5, 0.5],
        "direction": "lower",
        "min_weight": 0.05,
        "min_users_per_arm": 2000,
    }
    code, output = run(payload)
    assert code == 0
    expected = bandit_reweight(
        [ArmStats.from_conversions(2000, 200), ArmStats.from_conversions(2000, 150)],
        [0.5, 0.5],
        direction="lower",
        min_weight=0.05,
        min_users_per_arm=2000,
    )
    assert output["outcome"] == "updated"
    assert output["p_best"] == list(expected.p_best or ())
    assert output["weights"] == list(expected.weights)
    assert output["weights"][1] > 0.9  # fewer conversions is better here


def test_not_enough_users_keeps_the_weights() -> None:
    payload = {
        "arms": [{"users": 1000, "conversions": 100}, {"users": 50, "conversions": 12}],
        "weights": [0.9, 0.1],
    }
    code, output = run(payload)
    assert code == 0
    assert output["outcome"] == "not_enough_users"
    assert output["weights"] == [0.9, 0.1]
    assert len(output["p_best"]) == 2


def test_no_variance_keeps_the_weights_and_has_no_p_best() -> None:
    code, output = run({"arms": [{"users": 500, "conversions": 0}, {"users": 500, "conversions": 0}]})
    assert code == 0
    assert output == {"outcome": "no_variance", "p_best": None, "weights": [0.5, 0.5]}


def test_a_stored_period_row_reproduces_its_reweight() -> None:
    # The triples a period row stores (period-weighted, written as users/sum/sum_squares) give the
    # same weights through the CLI, bit for bit (JSON round-trips floats exactly).
    periods = [
        [
            ArmStats.from_conversions(700, 70),
            ArmStats.from_conversions(700, 85),
            ArmStats.from_conversions(600, 50),
        ],
        [
            ArmStats.from_conversions(300, 36),
            ArmStats.from_conversions(1500, 200),
            ArmStats.from_conversions(200, 15),
        ],
    ]
    triples = [estimate.as_stats() for estimate in period_weighted_estimates(periods)]
    in_service = bandit_reweight(triples, [0.2, 0.7, 0.1])
    row = {
        "arms": [{"users": int(t.users), "sum": t.sum, "sum_squares": t.sum_squares} for t in triples],
        "weights": [0.2, 0.7, 0.1],
    }
    code, output = run(json.loads(json.dumps(row)))
    assert code == 0
    assert output["weights"] == list(in_service.weights)
    assert output["p_best"] == list(in_service.p_best or ())


@pytest.mark.parametrize(
    ("arm", "words"),
    [
        ('{"users": 1000, "conversions": 1200}', "conversions (1200) must be between 0 and users (1000)"),
        ('{"users": 1000, "conversions": -1}', "between 0 and users"),
        ('{"users": -10, "sum": 0, "sum_squares": 0}', "users cannot be negative"),
        ('{"users": 1000, "sum": 100, "sum_squares": 5}', "variance would be negative"),
        ('{"users": 1000, "sum": 1e400, "sum_squares": 5}', "finite"),  # JSON's 1e400 is inf in Python
    ],
)
def test_impossible_statistics_are_an_error_naming_the_arm(arm: str, words: str) -> None:
    code, output = run(f'{{"arms": [{{"users": 1000, "conversions": 100}}, {arm}]}}'.encode())
    assert code == 2
    assert output["error"] == "invalid_statistics"
    assert output["field"] == "arms[1]"
    assert words in output["message"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "arms"),
        ({"arms": [{"users": 100, "conversions": 1}]}, "arms"),
        ({"arms": [{"users": 100, "conversions": 1}, {"users": 100}]}, "arms[1]"),
        ({"arms": [{"users": 100, "conversions": 1}, {"users": 100, "conversions": 1, "sum": 1}]}, "arms[1]"),
        ({"arms": [{"users": 100, "conversions": 1}, {"users": "100", "conversions": 1}]}, "arms[1].users"),
        ({"arms": [{"users": 100, "conversions": 1}] * 2, "weights": [1.0]}, "weights"),
        ({"arms": [{"users": 100, "conversions": 1}] * 2, "weights": [0.7, 0.7]}, "weights"),
        ({"arms": [{"users": 100, "conversions": 1}] * 2, "direction": "up"}, "direction"),
        ({"arms": [{"users": 100, "conversions": 1}] * 2, "min_weight": 2}, "min_weight"),
        ({"arms": [{"users": 100, "conversions": 1}] * 2, "min_users_per_arm": -1}, "min_users_per_arm"),
        ({"arms": [{"users": 100, "conversions": 1}] * 21}, "arms"),
        ({"arms": [{"users": 100, "conversions": 1}] * 2, "seed": 3}, "seed"),
    ],
)
def test_unusable_input_names_the_field(payload: dict[str, Any], field: str) -> None:
    code, output = run(payload)
    assert code == 2
    assert output["error"] == "invalid_input"
    assert output["field"] == field
    assert output["message"]


def test_not_json() -> None:
    code, output = run(b'{"arms": [NaN]}')
    assert code == 2
    assert output["error"] == "invalid_json"


# ---------------------------------------------------------------------------------------------------
# docs/bandits.md
# ---------------------------------------------------------------------------------------------------

EXAMPLE = re.compile(
    r"^\$ echo (?P<stdin>'.*') \| python -m abtest\.stats bandit\n(?P<stdout>\{.*\})$", re.MULTILINE
)


def test_the_docs_examples_run_as_shown() -> None:
    examples = list(EXAMPLE.finditer(DOCS.read_text(encoding="utf-8")))
    assert len(examples) == 2
    for example in examples:
        code, output = run(shlex.split(example["stdin"])[0].encode())
        shown = json.loads(example["stdout"])
        assert code == (2 if "error" in shown else 0)
        if "error" in shown:
            assert output == shown
        else:
            # Across platforms the last bits of exp/erfc may differ.
            assert output["outcome"] == shown["outcome"]
            assert output["p_best"] == pytest.approx(shown["p_best"], abs=1e-12)
            assert output["weights"] == pytest.approx(shown["weights"], abs=1e-12)
