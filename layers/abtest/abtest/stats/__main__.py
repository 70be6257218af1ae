"""`python -m abtest.stats`: analyse one metric given as a JSON object on stdin, print JSON on stdout.
`python -m abtest.stats srm`: the sequential and chi-squared SRM p-values of a series of checks
(abtest.stats.srm_request describes its input and output).

`python -m abtest.stats bandit` instead runs one bandit reweight (abtest.stats.bandit_inputs); its
impossible statistics are input errors too (exit 2, "error": "invalid_statistics", naming the arm).

Exit codes: 0 with the analysis; 2 with {"error", "message", "field"} for unusable input (not JSON,
missing or invalid fields, negative counts, conversions > users, fewer than 2 variants, wrong number of
weights); 1 with {"error": "internal_error", ...} if the analysis itself fails (a bug). Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from abtest.errors import ErrorCode
from abtest.stats.analysis import analyze_request
from abtest.stats.bandit_inputs import analyze_bandit_request, parse_bandit_request
from abtest.stats.inputs import StatsInputError, parse_request
from abtest.stats.srm_request import parse_srm_request, srm_report

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2

_DESCRIPTION = """\
Read {"metric_type": "binomial"|"mean", "variants": [...], "weights": [...], "alpha": 0.05,
"sequential_tuning_parameter": 5000, "prior": {"mean", "variance"}, "mde": 0.05, "power": 0.8,
"correction": "holm"|"bh"} on stdin (only metric_type and variants are required; variant 0 is the
control) and print the analysis as JSON."""


def _reject_constant(name: str) -> NoReturn:
    # json.loads accepts NaN and Infinity by default; they are not JSON and not valid statistics.
    raise ValueError(f"{name} is not allowed in the input")


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StatsInputError(f"input is not valid JSON: {exc}", code=ErrorCode.INVALID_JSON) from None


def _dumps(payload: dict[str, Any], indent: int | None) -> str:
    return json.dumps(payload, allow_nan=False, indent=indent)


def _emit(payload: dict[str, Any] | str, indent: int | None) -> None:
    sys.stdout.write((payload if isinstance(payload, str) else _dumps(payload, indent)) + "\n")
    sys.stdout.flush()


class _InternalError(Exception):
    """The analysis itself failed: a bug, reported as JSON rather than a traceback."""


def _run(analysis: Callable[[], dict[str, Any]], indent: int | None) -> str:
    """The analysis as JSON text; only `StatsInputError` (bad input) escapes as itself."""
    try:
        return _dumps(analysis(), indent)
    except StatsInputError:
        raise
    except Exception as exc:  # a bug, but the caller still gets JSON rather than a traceback
        raise _InternalError(f"{type(exc).__name__}: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m abtest.stats", description=_DESCRIPTION)
    parser.add_argument(
        "command",
        nargs="?",
        choices=("bandit", "srm"),
        help="`bandit`: one bandit reweight (see abtest.stats.bandit_inputs); "
        "`srm`: sample ratio mismatch p-values (see abtest.stats.srm_request)",
    )
    parser.add_argument("--indent", type=int, default=None, help="pretty-print the JSON output")
    args = parser.parse_args(argv)
    try:
        data = _decode(sys.stdin.buffer.read())
        if args.command == "bandit":
            bandit_request = parse_bandit_request(data)
            # Impossible statistics are found by the reweight itself; they are input errors too.
            result = _run(lambda: analyze_bandit_request(bandit_request), args.indent)
        elif args.command == "srm":
            srm_request = parse_srm_request(data)
            result = _run(lambda: srm_report(srm_request), args.indent)
        else:
            request = parse_request(data)
            result = _run(lambda: analyze_request(request), args.indent)
    except StatsInputError as exc:
        _emit(exc.to_dict(), args.indent)
        return EXIT_INPUT
    except _InternalError as exc:
        _emit({"error": ErrorCode.INTERNAL_ERROR, "message": str(exc), "field": None}, args.indent)
        return EXIT_INTERNAL
    _emit(result, args.indent)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
