"""What the alerts add to a rollup tick: evaluating every running experiment after the rollup.

    .venv/bin/python bench/bench_alerts_tick.py [--experiments 50] [--events 10000] [--reps 5] [--keep]

Database `abtest_bench_alerts` (public schema dropped and re-migrated at the start; dropped at the end
unless --keep). `--experiments` running experiments, two variants each, on surfaces of their own; each
gets `--events` events (_harness.bulk_load: 60 % exposures, 40 % conversions over three metrics) over
1,999 users, all rolled up before anything is timed.

Timed, wall time, the service's code and Database:

- baseline: `RollupRepository.roll_up()` of a tick that folds `--tick-events` new events per
  experiment (what a tick with traffic pays anyway);
- first evaluation: `AlertRepository.evaluate()` when no experiment has been checked yet (every monitor
  starts, every experiment's results are computed, the first alerts are stored);
- steady evaluation: `evaluate()` again (nothing new: every experiment checked, no alert);
- tick with alerts: the whole `alerts_tick` (evaluate, digests, relay), as the rollup handler runs it.

Target: the steady evaluation costs at most as much as the rollup tick it follows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

import _harness as common

DATABASE = "abtest_bench_alerts"
USERS = 1999  # prime: every kind of event reaches every user (see _harness.bulk_load)


def timed(call: object) -> float:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--tick-events", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    url = common.prepare(DATABASE)
    from abtest.delivery.dispatch import alerts_tick
    from abtest.settings import get_settings
    from abtest.storage.alerts import AlertRepository
    from abtest.storage.database import get_database
    from abtest.storage.rollups import RollupRepository

    experiments = []
    with common.admin_connection(url) as admin:
        for index in range(args.experiments):
            experiment_id = common.create_running_experiment(
                f"bench_alerts_{index}",
                [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}],
                surface=f"bench_alerts_{index}",
            )
            experiment = common.Experiment(experiment_id, _variant_ids(admin, experiment_id))
            experiments.append(experiment)
            common.assign_users(admin, experiment, "u-", 0, USERS)
            common.bulk_load(admin, experiment, tag=f"e{index}-", first=0, count=args.events, users=USERS)
        common.vacuum_analyze(admin)
        common.roll_up_everything(common.long_timeout_database(), admin)
        db = get_database()
        rollups, alerts = RollupRepository(db), AlertRepository(db)
        first = timed(lambda: alerts.evaluate(datetime.now(UTC)))
        baseline, steady, tick = [], [], []
        for rep in range(args.reps):
            offset = args.events + rep * args.tick_events
            for index, experiment in enumerate(experiments):
                common.bulk_load(
                    admin, experiment, tag=f"e{index}-", first=offset, count=args.tick_events, users=USERS
                )
            common.wait_until_rollup_can_see_everything(admin)
            baseline.append(timed(rollups.roll_up))
            steady.append(timed(lambda: alerts.evaluate(datetime.now(UTC))))
            tick.append(timed(lambda: alerts_tick(get_settings(), db)))
    stored = alerts.page(limit=100)
    rows = [
        ("rollup tick folding the new events (baseline)", statistics.median(baseline), 1.0),
        ("first evaluation (every monitor starts)", first, first / statistics.median(baseline)),
        (
            "evaluation after that tick (every experiment moved)",
            statistics.median(steady),
            statistics.median(steady) / statistics.median(baseline),
        ),
        (
            "alerts_tick again, nothing new (evaluate, digests, relay)",
            statistics.median(tick),
            statistics.median(tick) / statistics.median(baseline),
        ),
    ]
    print(common.environment_line(url))
    print(
        f"{args.experiments} running experiments, {args.events} events each;"
        f" alerts stored: {len(stored.items)}"
    )
    print(
        common.markdown_table(
            ["what", "seconds (median)", "x baseline"], [(n, f"{s:.3f}", f"{r:.3f}") for n, s, r in rows]
        )
    )
    ratio = statistics.median(steady) / statistics.median(baseline)
    print(f"evaluation / rollup tick = {ratio:.2f}: {common.verdict(ratio, 1.0)}")
    if not args.keep:
        from abtest import wiring

        wiring.reset()
        common.drop_database(url)


def _variant_ids(admin: object, experiment_id: str) -> list[str]:
    rows = admin.execute(  # type: ignore[attr-defined]
        "SELECT id FROM variants WHERE experiment_id = %s ORDER BY position", (experiment_id,)
    ).fetchall()
    return [str(row[0]) for row in rows]


if __name__ == "__main__":
    main()
