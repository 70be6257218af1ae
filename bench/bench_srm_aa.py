"""A/A simulation: how often does an SRM alarm fire on experiments whose split is right?

    python bench/bench_srm_aa.py [--experiments 2000] [--days 30] [--seed 23] [--periods 0.5,0.5 ...]

Each simulated experiment splits its users by the given shares (--periods 0.5,0.5 by default) and is
checked once a day for --days days, on the users each day added; daily new users are Poisson with a
mean drawn per experiment log-uniformly between 100 and 10,000. Several --periods split the days evenly
into periods with those shares, as a bandit reweighting would: the sequential test then runs one test
per period and multiplies their Bayes factors, and chi-squared compares the totals with the users each
period should have sent to each variant. An experiment "alarms" if ANY of its daily checks
gives a p-value below alpha. The sequential test (abtest.stats.sequential_srm) guarantees an alarm rate
of at most alpha however often it is looked at; Pearson's chi-squared on the running totals
(abtest.stats.srm) holds alpha for one look only, so daily looks inflate it. The last column is
chi-squared looked at once, on day --days, for comparison (it should be close to alpha). With --skew
the first variant is over-served (e.g. 0.02: 51/49 instead of 50/50) and the rates are the power.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import numpy as np

from abtest.stats.sequential_srm import SequentialSrm
from abtest.stats.srm import srm_p_value

ALPHAS = (0.001, 0.01, 0.05)


def _tilt(shares: Sequence[float], skew: float) -> list[float]:
    """The shares actually served: variant 0 over-served by `skew` (relative), renormalised."""
    served = [p * (1 + skew) if i == 0 else p for i, p in enumerate(shares)]
    return [p / sum(served) for p in served]


def simulate(
    experiments: int, days: int, periods: Sequence[Sequence[float]], seed: int, skew: float = 0.0
) -> tuple[dict[float, int], dict[float, int], dict[float, int]]:
    """Alarm counts per alpha: (sequential any day, chi-squared any day, chi-squared on the last day)."""
    rng = np.random.default_rng(seed)
    sequential = dict.fromkeys(ALPHAS, 0)
    chi_daily = dict.fromkeys(ALPHAS, 0)
    chi_once = dict.fromkeys(ALPHAS, 0)
    # The shares in force on each day: the periods split the days evenly.
    day_shares = [periods[day * len(periods) // days] for day in range(days)]
    for _ in range(experiments):
        daily_users = rng.poisson(10 ** rng.uniform(2, 4), size=days)
        state = SequentialSrm.start(day_shares[0])
        totals = [0] * len(day_shares[0])
        owed = [0.0] * len(day_shares[0])
        min_chi = chi = 1.0
        for day, users in enumerate(daily_users.tolist()):
            shares = day_shares[day]
            if day and shares is not day_shares[day - 1]:
                state = state.reweight(shares)
            counts = [int(n) for n in rng.multinomial(users, _tilt(shares, skew))]
            state = state.add(counts)
            totals = [t + n for t, n in zip(totals, counts, strict=True)]
            owed = [o + users * p for o, p in zip(owed, shares, strict=True)]
            chi = srm_p_value(totals, owed) if sum(totals) else 1.0
            min_chi = min(min_chi, chi)
        for alpha in ALPHAS:
            sequential[alpha] += state.p_value < alpha
            chi_daily[alpha] += min_chi < alpha
            chi_once[alpha] += chi < alpha
    return sequential, chi_daily, chi_once


def _interval(alarms: int, n: int) -> str:
    """The rate with a 95% Wilson interval."""
    rate = alarms / n
    z = 1.959963984540054
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{rate:.4f} [{max(centre - half, 0):.4f}, {centre + half:.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--skew", type=float, default=0.0, help="over-serve variant 0 by this (relative)")
    parser.add_argument("--periods", nargs="+", default=["0.5,0.5"], help="shares per period, e.g. 0.2,0.8")
    args = parser.parse_args()
    periods = [[float(share) for share in period.split(",")] for period in args.periods]
    started = time.perf_counter()
    sequential, chi_daily, chi_once = simulate(args.experiments, args.days, periods, args.seed, args.skew)
    elapsed = time.perf_counter() - started
    n = args.experiments
    shares = " then ".join(args.periods)
    kind = f"skew {args.skew:+.1%}" if args.skew else "A/A"
    print(f"{n} {kind} experiments, shares {shares}, {args.days} daily checks, seed {args.seed}")
    print("| alpha | sequential, any day | chi-squared, any day | chi-squared, last day only |")
    print("|---|---|---|---|")
    for alpha in ALPHAS:
        print(
            f"| {alpha} | {_interval(sequential[alpha], n)} | {_interval(chi_daily[alpha], n)} "
            f"| {_interval(chi_once[alpha], n)} |"
        )
    print(f"({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
