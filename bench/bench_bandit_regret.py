"""Simulation: cumulative regret of the bandit reweight against uniform allocation.

    python bench/bench_bandit_regret.py [--periods 30] [--users 2000] [--seeds 20] [--drift 0]
                                        [--time-limit 600]

Four arms convert at 10%, 10.5%, 11% and 12%. Each period enrols --users users, split among the
arms by a multinomial draw at the weights in force; each arm's conversions are a binomial draw at
its true rate. At the end of every period the bandit reweights from all periods so far, exactly as
the service will: the period-weighted statistics (`abtest.stats.bandit_periods`) into
`abtest.stats.bandit.bandit_reweight` with the service defaults (floor 0.01, 100 users per arm).
A second bandit row pools the periods instead (the estimator that is biased under drift, for
comparison); --drift 1 makes every rate grow by the same factor, up to 2x at the last period.

Regret of a period is Σ_a users_a · (best rate - rate_a): the conversions lost against sending
everyone to the 12% arm, in expectation given the allocation (pseudo-regret, so the binomial noise
of the outcomes does not blur the comparison). Uniform allocation is simulated with the same
multinomial splits. Every seed runs all three strategies; seeds stop starting once --time-limit
seconds have passed.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from abtest.stats.bandit import ArmStats, bandit_reweight
from abtest.stats.bandit_periods import period_weighted_estimates

RATES = (0.10, 0.105, 0.11, 0.12)

Estimator = Callable[[Sequence[Sequence[ArmStats]]], list[ArmStats]]


def period_weighted(periods: Sequence[Sequence[ArmStats]]) -> list[ArmStats]:
    return [estimate.as_stats() for estimate in period_weighted_estimates(periods)]


def pooled(periods: Sequence[Sequence[ArmStats]]) -> list[ArmStats]:
    return [
        ArmStats(
            math.fsum(p[a].users for p in periods),
            math.fsum(p[a].sum for p in periods),
            math.fsum(p[a].sum_squares for p in periods),
        )
        for a in range(len(periods[0]))
    ]


@dataclass
class Run:
    regret: float = 0.0
    lift_error: float = 0.0
    best_share_last_period: float = 0.0
    reweight_seconds: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)


def simulate(seed: int, periods: int, users: int, estimator: Estimator | None, drift: float = 0.0) -> Run:
    """One experiment; `estimator` None is uniform allocation throughout.

    With `drift`, every arm's rate is multiplied by 1 + drift * t / (periods - 1) in period t (the
    same trend for all arms, so the best arm stays the best).
    """
    rng = np.random.default_rng(seed)
    weights = [1 / len(RATES)] * len(RATES)
    history: list[list[ArmStats]] = []
    true_lifts: list[float] = []
    run = Run()
    for t in range(periods):
        rates = np.array(RATES) * (1 + drift * t / max(1, periods - 1))
        regret_per_user = rates.max() - rates
        true_lifts.append(float(rates[-1] - rates[0]))
        counts = rng.multinomial(users, weights)
        conversions = rng.binomial(counts, rates)
        run.regret += float(np.dot(counts, regret_per_user))
        run.best_share_last_period = float(counts[-1] / users)
        history.append(
            [ArmStats.from_conversions(int(n), int(c)) for n, c in zip(counts, conversions, strict=True)]
        )
        if estimator is None:
            continue
        started = time.perf_counter()
        result = bandit_reweight(estimator(history), weights)
        run.reweight_seconds.append(time.perf_counter() - started)
        run.outcomes[result.outcome] = run.outcomes.get(result.outcome, 0) + 1
        weights = list(result.weights)
    # The experiment's answer: the lift of the 12% arm over the 10% arm, from the strategy's own
    # estimator (uniform: pooled and period-weighted coincide), against the truth averaged over the
    # periods (every period enrols the same number of users).
    final = (estimator or pooled)(history)
    run.lift_error = final[-1].mean - final[0].mean - statistics.fmean(true_lifts)
    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--periods", type=int, default=30)
    parser.add_argument("--users", type=int, default=2000, help="users enrolled per period")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--drift", type=float, default=0.0, help="rates grow by this fraction over the run")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds before no new seed starts")
    args = parser.parse_args(argv)

    strategies: dict[str, Estimator | None] = {
        "uniform": None,
        "bandit, period-weighted (the service)": period_weighted,
        "bandit, pooled periods": pooled,
    }
    runs: dict[str, list[Run]] = {name: [] for name in strategies}
    started = time.perf_counter()
    for seed in range(args.seeds):
        if time.perf_counter() - started > args.time_limit:
            break
        for name, estimator in strategies.items():
            runs[name].append(simulate(seed, args.periods, args.users, estimator, args.drift))
    seeds = len(runs["uniform"])
    total_users = args.periods * args.users
    print(
        f"Rates {', '.join(f'{r:.1%}' for r in RATES)}; {args.periods} periods x {args.users} users "
        f"= {total_users} users; drift {args.drift:g}; {seeds} seeds; "
        f"Python {platform.python_version()} on {platform.machine()}.\n"
    )
    uniform_mean = statistics.fmean(r.regret for r in runs["uniform"])
    print(
        "| strategy | regret, mean | sd | vs uniform | below uniform | best arm's share at the end "
        "| lift 12% vs 10%: bias (sd) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, results in runs.items():
        regrets = [r.regret for r in results]
        sd = statistics.stdev(regrets) if len(regrets) > 1 else 0.0
        share = statistics.fmean(r.best_share_last_period for r in results)
        ratio = statistics.fmean(regrets) / uniform_mean
        wins = sum(b.regret < u.regret for b, u in zip(results, runs["uniform"], strict=True))
        below = "-" if name == "uniform" else f"{wins}/{seeds} seeds"
        errors = [r.lift_error for r in results]
        bias = f"{statistics.fmean(errors):+.4f} ({statistics.stdev(errors) if len(errors) > 1 else 0.0:.4f})"
        print(
            f"| {name} | {statistics.fmean(regrets):.1f} | {sd:.1f} | {ratio:.3f} | {below} | {share:.3f} "
            f"| {bias} |"
        )
    print()
    for name in list(strategies)[1:]:
        times = sorted(t for r in runs[name] for t in r.reweight_seconds)
        outcomes: dict[str, int] = {}
        for r in runs[name]:
            for outcome, count in r.outcomes.items():
                outcomes[outcome] = outcomes.get(outcome, 0) + count
        print(
            f"- {name}: one reweight median {times[len(times) // 2] * 1e3:.1f} ms, "
            f"max {times[-1] * 1e3:.1f} ms; outcomes {outcomes}"
        )
    print(f"- wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
