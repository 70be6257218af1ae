"""`python -m abtest.stats`: analyse one metric given as a JSON object on stdin, print JSON on stdout.
`python -m abtest.stats srm`: the sequential and chi-squared SRM p-values of a series of checks
(abtest.stats.srm_request describes its input and output).

Exit codes: 0 with the analysis; 2 with {"error", "message", "field"} for unusable input (not JSON,
missing or invalid fields, negative counts, conversions > users, fewer than 2 variants, wrong number of
weights); 1 with {"error": "internal_error", ...} if the analysis itself fails (a bug). Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NoReturn

from abtest.stats.analysis import analyze_request
from abtest.stats.inputs import StatsInputError, parse_request
from abtest.stats.srm_request import parse_srm_request, srm_report

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2

_DESCRIPTION = """\
Read {"metric_type": "binomial"|"mean", "variants": [...], "weights": [...], "alpha": 0.05,
"sequential_tuning_parameter": 5000, "prior": {"mean", "variance"}, "mde": 0.05, "power": 0.8,
"correction": "holm"|"bh"} on stdin (only metric_type and variants are required; variant 0 is the
control) and print the analysis as JSON. With `srm`: read {"counts": [[a1, b1, ...], [a2, b2, ...], ...],
"expected": [0.5, 0.5, ...]} (users each check added per variant; expected defaults to equal shares)
and print {"sequential_p": [p after each check], "chi2_p": p on the totals}."""


def _reject_constant(name: str) -> NoReturn:
    # json.loads accepts NaN and Infinity by default; they are not JSON and not valid statistics.
    raise ValueError(f"{name} is not allowed in the input")


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StatsInputError(f"input is not valid JSON: {exc}", code="invalid_json") from None


def _emit(payload: dict[str, Any], indent: int | None) -> None:
    sys.stdout.write(json.dumps(payload, allow_nan=False, indent=indent) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m abtest.stats", description=_DESCRIPTION)
    parser.add_argument("command", nargs="?", choices=["srm"], help="srm: sample ratio mismatch p-values")
    parser.add_argument("--indent", type=int, default=None, help="pretty-print the JSON output")
    args = parser.parse_args(argv)
    compute: Callable[[], dict[str, Any]]
    try:
        data = _decode(sys.stdin.buffer.read())
        if args.command == "srm":
            compute = partial(srm_report, parse_srm_request(data))
        else:
            compute = partial(analyze_request, parse_request(data))
    except StatsInputError as exc:
        _emit(exc.to_dict(), args.indent)
        return EXIT_INPUT
    try:
        _emit(compute(), args.indent)
    except Exception as exc:  # a bug, but the caller still gets JSON rather than a traceback
        _emit(
            {"error": "internal_error", "message": f"{type(exc).__name__}: {exc}", "field": None}, args.indent
        )
        return EXIT_INTERNAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
