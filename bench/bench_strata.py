"""The hot row of stratified assignment: new-user enrollments through POST /api/v1/assignments when
every concurrent request bumps the same stratum's counter row, next to a hash experiment (no counter)
and a stratified one whose users spread over 16 strata, all measured in the same run.

    .venv/bin/python bench/bench_strata.py [--threads 16] [--users 1500] [--rounds 2]

Calls assignments_handler.lambda_handler in-process with API Gateway v2 events from `--threads`
threads (each thread has its own database connection, as each Lambda container does) against the
local PostgreSQL (database `abtest_bench_strata`, reset at the start and dropped at the end). Each
case enrolls `--users` new users per round; the cases alternate round by round so they share the
machine's conditions. Reported: wall time, throughput, per-request p50/p99, each against the hash
case, and a check that every stratum is within one block of its target after the run.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _harness import (
    Latency,
    Request,
    drop_database,
    environment_line,
    invoke,
    markdown_table,
    prepare,
    request,
)

DATABASE = "abtest_bench_strata"
VARIANTS = [
    {"name": "control", "weight": 0.5, "config": {}},
    {"name": "b", "weight": 0.25, "config": {}},
    {"name": "c", "weight": 0.25, "config": {}},
]
CASES = ("hash", "stratified, 1 stratum (hot row)", "stratified, 16 strata")


def start(name: str, surface: str, assignment: dict[str, Any] | None) -> dict[str, Any]:
    from experiments_handler import lambda_handler as experiments

    body: dict[str, Any] = {"name": name, "surface": surface, "variants": VARIANTS, "traffic_allocation": 1.0}
    if assignment is not None:
        body["assignment"] = assignment
    created = invoke(experiments, "POST", "/api/v1/experiments", body)
    assert created.status == 201, created
    eid = str(created.body["id"])
    started = invoke(
        experiments,
        "PUT",
        f"/api/v1/experiments/{eid}/status",
        {"status": "running"},
        route_key="PUT /api/v1/experiments/{experiment_id}/status",
        path_parameters={"experiment_id": eid},
    )
    assert started.status == 200, started
    return dict(created.body)


def run_case(prepared: Sequence[Request], threads: int) -> tuple[float, list[float]]:
    """Send every request from `threads` threads; (wall seconds, per-request ms)."""
    samples: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(part: Sequence[Request]) -> None:
        mine = []
        barrier.wait()
        for item in part:
            began = time.perf_counter()
            raw = item.send()
            mine.append((time.perf_counter() - began) * 1000)
            reply = Request.reply(raw)
            assert reply.status == 200, reply
            assert reply.body["new_assignment"], reply
        with lock:
            samples.extend(mine)

    parts = [prepared[i::threads] for i in range(threads)]
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(worker, parts))
    return time.perf_counter() - began, samples


def check_blocks(url: str, experiment: dict[str, Any]) -> str:
    """Every stratum's stored counts against its target: the largest deviation, in users."""
    import psycopg

    weights = [v["weight"] for v in experiment["variants"]]
    names = [v["name"] for v in experiment["variants"]]
    worst = 0.0
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.dimensions ->> 'tier', v.name, count(*) FROM assignments a"
            " JOIN variants v ON v.id = a.variant_id WHERE a.experiment_id = %s GROUP BY 1, 2",
            (experiment["id"],),
        ).fetchall()
    by_stratum: dict[str, dict[str, int]] = {}
    for stratum, name, count in rows:
        by_stratum.setdefault(stratum, {})[name] = count
    for counts in by_stratum.values():
        total = sum(counts.values())
        for name, weight in zip(names, weights, strict=True):
            worst = max(worst, abs(counts.get(name, 0) - weight * total))
    return f"{len(by_stratum)} strata, largest deviation from target {worst:g} users (block size 4)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--users", type=int, default=1500, help="new users per case per round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    url = prepare(DATABASE)
    try:
        from assignments_handler import lambda_handler as assignments

        experiments = {
            CASES[0]: start("bench_hash", "s_hash", None),
            CASES[1]: start("bench_hot", "s_hot", {"type": "stratified", "stratum": "tier"}),
            CASES[2]: start("bench_spread", "s_spread", {"type": "stratified", "stratum": "tier"}),
        }
        walls: dict[str, float] = dict.fromkeys(CASES, 0.0)
        samples: dict[str, list[float]] = {case: [] for case in CASES}
        for round_ in range(args.rounds + 1):  # round 0 warms caches and connections, untimed
            for case in CASES:
                eid = experiments[case]["id"]
                users = 64 if round_ == 0 else args.users
                prepared = [
                    request(
                        assignments,
                        "POST",
                        "/api/v1/assignments",
                        {
                            "experiment_id": eid,
                            "user_id": f"r{round_}-{n}",
                            "attributes": {"tier": "gold" if case != CASES[2] else f"t{n % 16}"},
                        },
                    )
                    for n in range(users)
                ]
                wall, times = run_case(prepared, args.threads)
                if round_ > 0:
                    walls[case] += wall
                    samples[case].extend(times)
        base = Latency.of(samples[CASES[0]])
        base_rate = len(samples[CASES[0]]) / walls[CASES[0]]
        rows = []
        for case in CASES:
            stats = Latency.of(samples[case])
            rate = len(samples[case]) / walls[case]
            rows.append(
                [
                    case,
                    stats.n,
                    f"{rate:.0f}",
                    f"{rate / base_rate:.2f}x",
                    f"{stats.p50:.2f}",
                    f"{stats.p50 / base.p50:.2f}x",
                    f"{stats.p99:.2f}",
                    f"{stats.p99 / base.p99:.2f}x",
                ]
            )
        print(f"## Stratified assignment: the hot counter row ({args.threads} threads)\n")
        print(environment_line(url) + "\n")
        headers = ["case", "new users", "req/s", "vs hash", "p50 ms", "vs hash", "p99 ms", "vs hash"]
        print(markdown_table(headers, rows) + "\n")
        for case in CASES[1:]:
            print(f"- {case}: {check_blocks(url, experiments[case])}")
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
