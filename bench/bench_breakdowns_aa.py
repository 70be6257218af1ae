"""A/A false-flag rate of the breakdown's heterogeneity test, through breakdown_report itself.

    .venv/bin/python bench/bench_breakdowns_aa.py [--runs 300] [--slices 20] [--metrics 3] [--seed 1]

Each run simulates one A/A experiment (20,000 users, two equal arms, `--slices` values of a dimension
with Dirichlet shares, `--metrics` metrics with conversion rates 5%, 10%, 15%... and log-normal values),
builds its per-slice sufficient statistics, and runs abtest.analysis.breakdowns.breakdown_report at
alpha 0.05. Reported: the share of runs flagging any slice (target: at most alpha), with its binomial
standard error, and the shares of runs with any Holm-adjusted p-value below alpha, absolute and relative
(the relative delta-method test runs low in small slices: read the absolute one there). Pure
computation: no database.
"""

from __future__ import annotations

import argparse
import math
import time
import uuid
from datetime import UTC, datetime

import numpy as np

from abtest.analysis.breakdowns import SliceMetrics, breakdown_report
from abtest.analysis.rollup import ExposureTotals, MetricStats
from abtest.domain.experiments import Experiment, Status, Variant

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def experiment() -> Experiment:
    eid = uuid.uuid4()
    variants = [
        Variant(id=uuid.uuid4(), name=name, description="", weight=0.5, config={}, position=i)
        for i, name in enumerate(("control", "treatment"))
    ]
    return Experiment(
        id=eid,
        name="aa",
        description="",
        status=Status.RUNNING,
        traffic_allocation=1.0,
        salt=str(eid),
        surface="aa",
        variants=variants,
        created_at=NOW,
        updated_at=NOW,
        started_at=NOW,
        completed_at=None,
    )


def simulate(rng: np.random.Generator, exp: Experiment, slices: int, metrics: int) -> SliceMetrics:
    out = SliceMetrics(exp, "country")
    users = rng.multinomial(20_000, rng.dirichlet(np.full(slices, 2.0)))
    for s in range(slices):
        stats = out.slice(f"s{s}")
        for variant, n in zip(exp.variants, rng.multinomial(users[s], [0.5, 0.5]), strict=True):
            stats.variants[variant.id] = ExposureTotals(int(n), int(n))
            per = {}
            for m in range(metrics):
                converted = int(rng.binomial(n, 0.05 + 0.05 * m))
                values = rng.lognormal(1.0, 1.0, converted)
                per[f"m{m}"] = MetricStats(
                    converted, float(values.sum()), float((values**2).sum()), converted
                )
            stats.metrics[variant.id] = per
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--metrics", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    exp = experiment()
    flagged = absolute = relative = 0
    began = time.perf_counter()
    for _ in range(args.runs):
        report = breakdown_report(simulate(rng, exp, args.slices, args.metrics), alpha=0.05)
        flagged += any(piece.heterogeneity_flag for piece in report.slices)
        blocks = [
            c
            for piece in report.slices
            for results in piece.metrics.values()
            for c in (*results.conversion, *results.value)
        ]
        absolute += any(_below(c.absolute.p_value_adjusted) for c in blocks)
        relative += any(_below(c.relative.p_value_adjusted) for c in blocks)
    seconds = time.perf_counter() - began
    share = flagged / args.runs
    se = math.sqrt(share * (1 - share) / args.runs)
    print(f"## Breakdown heterogeneity: A/A false flags ({args.slices} slices x {args.metrics} metrics)\n")
    print(
        "| runs | share flagging any slice | SE | target | any Holm-adjusted absolute p < 0.05 |"
        " any Holm-adjusted relative p < 0.05 | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    verdict = "met" if share <= 0.05 else "missed"
    print(
        f"| {args.runs} | {share:.3f} | {se:.3f} | <= 0.05: {verdict} | {absolute / args.runs:.3f} |"
        f" {relative / args.runs:.3f} | {seconds:.0f} |"
    )


def _below(p: object) -> bool:
    return isinstance(p, float) and p < 0.05


if __name__ == "__main__":
    main()
