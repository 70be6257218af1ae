"""What config schemas and phases cost (issue 24).

1. The hot path: POST /api/v1/assignments for returning users (one exposure each) with the exposures
   trigger of migration 0015 enabled and disabled, in alternating blocks of the same run against the
   same rows. The trigger stamps the phase and config_fallback on exposures written by other statements
   (batch events); the enrollment statement writes both itself (the experiment's phase it already reads,
   one primary-key probe of the variant), so the trigger must not fire there: the ratio should be 1.
   What the statement's own additions cost is in both cases, not isolated here.
2. Write time only: validating a variant config against the recommendations surface's schema, and a
   16 KB hostile string against a backtracking-prone pattern (RE2), per config.

Runs against its own database (`abtest_bench_configs`, dropped and re-migrated first).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from _harness import (
    Latency,
    create_running_experiment,
    environment_line,
    invoke,
    markdown_table,
    prepare,
    request,
)

DATABASE = "abtest_bench_configs"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=200, help="returning users per block")
    parser.add_argument("--blocks", type=int, default=6, help="blocks per case (alternating)")
    args = parser.parse_args()

    url = prepare(DATABASE)
    import psycopg

    from assignments_handler import lambda_handler as assignments

    experiment_id = create_running_experiment(
        "bench_config_phases",
        [
            {"name": "control", "weight": 0.5, "config": {"lora_boost": 0.1}},
            {"name": "treatment", "weight": 0.5, "config": {"lora_boost": 0.6}},
        ],
    )
    path = "/api/v1/assignments"
    users = [f"user-{n}" for n in range(args.users)]
    for user in users:  # enroll them: every timed request is a returning user's
        reply = invoke(assignments, "POST", path, {"experiment_id": experiment_id, "user_id": user})
        assert reply.status == 200, reply

    samples: dict[str, list[float]] = {"trigger on": [], "trigger off": []}
    with psycopg.connect(url, autocommit=True) as admin:
        for block in range(2 * args.blocks):
            case = "trigger on" if block % 2 == 0 else "trigger off"
            state = "ENABLE" if case == "trigger on" else "DISABLE"
            admin.execute(f"ALTER TABLE exposures {state} TRIGGER exposures_phase")
            for user in users:
                prepared = request(
                    assignments, "POST", path, {"experiment_id": experiment_id, "user_id": user}
                )
                started = time.perf_counter()
                raw = prepared.send()
                samples[case].append((time.perf_counter() - started) * 1000)
                assert raw["statusCode"] == 200, raw
        admin.execute("ALTER TABLE exposures ENABLE TRIGGER exposures_phase")

    on, off = Latency.of(samples["trigger on"]), Latency.of(samples["trigger off"])
    print("## Config schemas and phases: costs\n")
    print(environment_line(url) + "\n")
    print(
        markdown_table(
            ["POST /assignments, returning user", "n", "p50 ms", "p99 ms", "p50 / trigger off"],
            [
                [
                    "exposures trigger on (shipped)",
                    on.n,
                    f"{on.p50:.3f}",
                    f"{on.p99:.3f}",
                    f"{on.p50 / off.p50:.2f}x",
                ],
                ["exposures trigger off", off.n, f"{off.p50:.3f}", f"{off.p99:.3f}", "1.00x"],
            ],
        )
    )
    print()
    print(markdown_table(["write-time check", "microseconds per config"], validation_rows()))
    return 0


def validation_rows() -> list[list[Any]]:
    from abtest.domain.config_schemas import check_schema
    from abtest.domain.recommender_config import RECOMMENDER_CONFIG_SCHEMA
    from abtest.limits import MAX_CONFIG_BYTES

    recommender = check_schema(RECOMMENDER_CONFIG_SCHEMA)
    hostile = check_schema({"properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}})
    cases = [
        ("recommender schema, valid config", recommender, {"lora_boost": 0.5, "diversity": 0.2}),
        ("recommender schema, 2 problems", recommender, {"lora_boost": "x", "lora_bost": 1}),
        ("`^(a+)+$` on a 16 KB string (RE2)", hostile, {"name": "a" * (MAX_CONFIG_BYTES - 100) + "!"}),
    ]
    rows: list[list[Any]] = []
    for name, schema, config in cases:
        schema.problems(config)  # the validator is built once per schema and cached
        repeats = 2000
        started = time.perf_counter()
        for _ in range(repeats):
            schema.problems(config)
        rows.append([name, f"{(time.perf_counter() - started) / repeats * 1e6:.1f}"])
    return rows


if __name__ == "__main__":
    sys.exit(main())
