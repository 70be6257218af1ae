"""What metric roles cost a GET /results: an experiment with goals, guardrails and secondary metrics next
to the same data without roles, as the event tables grow.

    .venv/bin/python bench/bench_metric_roles.py [--steps 100000,1000000] [--users 20011] [--calls 15]

Database `abtest_bench_roles` (public schema dropped and re-migrated; dropped at the end unless --keep).
Two running experiments with two variants and `--users` assigned users each, bulk-loaded with the same
events (_harness.bulk_load: 60 % exposures, 40 % conversions over click, purchase and signup), then rolled
up. The "roles" experiment names five definitions: goal `click` (proportion), guardrail `purchase`
(mean, capped at its pooled 99th percentile, margin 5 %), secondary `signup_per_click` (ratio),
`click_24h` (proportion, 24-hour window) and `purchase_p90` (quantile). The "plain" one has none, so
its /results is what it was before issue 22.

At each step, each experiment's new events are loaded and rolled up on their own (timed: the ratio is
what the two definitions the rollup keeps, the ratio and the window, add to a rollup run); then both
are timed interleaved (`--calls` warm calls of metrics_handler.lambda_handler each): the ratio roles /
plain is the cost of the analysis by role at read time, where the percentile cap and the quantile are
computed (docs/metrics-and-decisions.md, "Where the numbers come from").
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import _harness as common

DATABASE = "abtest_bench_roles"
ROUTE_KEY = "GET /api/v1/experiments/{experiment_id}/results"
DEFINITIONS = (
    {"name": "click", "type": "proportion"},
    {"name": "purchase", "type": "mean", "capping": {"type": "percentile", "value": 0.99}},
    {"name": "signup_per_click", "type": "ratio", "numerator": "signup", "denominator": "click"},
    {"name": "click_24h", "type": "proportion", "metric": "click", "window_hours": 24},
    {"name": "purchase_p90", "type": "quantile", "metric": "purchase", "quantile": 0.9},
)
ROLES = {
    "goals": ["click"],
    "guardrails": [{"name": "purchase", "margin": 0.05}],
    "secondary": ["signup_per_click", "click_24h", "purchase_p90"],
}


def make_experiment(name: str, roles: dict[str, Any] | None) -> common.Experiment:
    from experiments_handler import lambda_handler as experiments

    body: dict[str, Any] = {
        "name": name,
        "surface": name,
        "traffic_allocation": 1.0,
        "variants": [{"name": "v0", "weight": 0.5}, {"name": "v1", "weight": 0.5}],
    }
    if roles is not None:
        body |= {"metrics": roles, "decision": {"min_days": 0}}
    created = common.invoke(experiments, "POST", "/api/v1/experiments", body)
    assert created.status == 201, created
    experiment_id = str(created.body["id"])
    started = common.invoke(
        experiments,
        "PUT",
        f"/api/v1/experiments/{experiment_id}/status",
        {"status": "running"},
        route_key="PUT /api/v1/experiments/{experiment_id}/status",
        path_parameters={"experiment_id": experiment_id},
    )
    assert started.status == 200, started
    return common.Experiment(experiment_id, [str(v["id"]) for v in started.body["variants"]])


def results_request(handler: common.Handler, experiment_id: str) -> common.Request:
    return common.request(
        handler,
        "GET",
        f"/api/v1/experiments/{experiment_id}/results",
        route_key=ROUTE_KEY,
        path_parameters={"experiment_id": experiment_id},
    )


def check(with_roles: bool) -> common.Check:
    def verify(raw: Any) -> None:
        reply = common.Request.reply(raw)
        assert reply.status == 200, reply
        if with_roles:
            assert reply.body["decision"] is not None, reply.body
            assert len(reply.body["secondary"]) == 3
            for metric in [*reply.body["goals"], *reply.body["guardrails"], *reply.body["secondary"]]:
                assert metric["error"] is None, metric
        else:
            assert reply.body["decision"] is None

    return verify


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", default="100000,1000000", help="stored events per experiment at each step")
    parser.add_argument("--users", type=int, default=20_011, help="assigned users (coprime with 105)")
    parser.add_argument("--calls", type=int, default=15, help="timed calls per case and step")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    args = parser.parse_args(argv)
    steps = [int(step) for step in args.steps.split(",")]
    if math.gcd(args.users, 3 * 5 * 7) != 1:
        parser.error("--users must be coprime with 3, 5 and 7")

    started = time.perf_counter()
    url = common.prepare(DATABASE)
    from experiments_handler import lambda_handler as experiments
    from metrics_handler import lambda_handler as handler

    for definition in DEFINITIONS:
        created = common.invoke(experiments, "POST", "/api/v1/metric-definitions", definition)
        assert created.status == 201, created
    plain = make_experiment("plain", None)
    roles = make_experiment("roles", ROLES)
    loader = common.long_timeout_database()
    rows: list[list[object]] = []
    ratios: list[float] = []
    loaded = 0
    with common.admin_connection(url) as admin:
        for experiment, prefix in ((plain, "p-"), (roles, "r-")):
            common.assign_users(admin, experiment, prefix, 0, args.users)
        for step in steps:
            rollup_seconds: dict[str, float] = {}
            for experiment, prefix in ((plain, "p-"), (roles, "r-")):
                common.bulk_load(
                    admin,
                    experiment,
                    tag=prefix,
                    first=loaded,
                    count=step - loaded,
                    users=args.users,
                    user_prefix=prefix,
                )
                common.vacuum_analyze(admin)
                runs = common.roll_up_everything(loader, admin)
                rollup_seconds[prefix] = sum(run.seconds for run in runs)
            loaded = step
            common.vacuum_analyze(admin)
            probes = {
                "plain": lambda _i: common.Probe(results_request(handler, plain.id).send, check(False)),
                "roles": lambda _i: common.Probe(results_request(handler, roles.id).send, check(True)),
            }
            common.run_interleaved(probes, 2)  # warm-up
            samples = common.run_interleaved(probes, args.calls)
            medians = {name: statistics.median(values) for name, values in samples.items()}
            ratio = medians["roles"] / medians["plain"]
            ratios.append(ratio)
            rows.append(
                [
                    f"{step:,}",
                    f"{medians['plain']:.1f}",
                    f"{medians['roles']:.1f}",
                    f"{medians['roles'] - medians['plain']:.1f}",
                    f"{ratio:.2f}x",
                    f"{rollup_seconds['p-']:.2f}",
                    f"{rollup_seconds['r-']:.2f}",
                    f"{rollup_seconds['r-'] / rollup_seconds['p-']:.2f}x",
                ]
            )
            print(f"(step {step:,} done at {time.perf_counter() - started:.0f} s)", file=sys.stderr)

    print("## Metric roles in /results (bench/bench_metric_roles.py)\n")
    print(common.server_facts(url))
    print(
        f"\nTwo experiments, 2 variants, {args.users:,} assigned users each, the same events; median of "
        f"{args.calls} warm interleaved calls of GET /results each.\n"
    )
    print(
        common.markdown_table(
            [
                "events per experiment",
                "plain ms",
                "with 5 roles ms",
                "roles add ms",
                "roles / plain",
                "rollup plain s",
                "rollup roles s",
                "rollup roles / plain",
            ],
            rows,
        )
    )
    print(f"\nTotal run time {time.perf_counter() - started:.0f} s.")
    if args.keep:
        print(f"Database {DATABASE} kept.")
    else:
        common.drop_database(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
