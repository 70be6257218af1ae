"""Micro-benchmark: bucketing throughput in pure Python, ours against GrowthBook's Python SDK.

    python bench/bench_bucketing.py [--users 200000] [--repeats 5]

Every row hashes the same distinct user ids with the same salt/seed in the same run; each row is
the best of --repeats passes timed with time.perf_counter. GrowthBook hashes with FNV-1a in pure
Python (`gbhash(seed, value, version)`); we call MurmurHash3 through the mmh3 C extension, so the
comparison is "what one bucketing call costs", not "which hash function is faster". If growthbook
is not installed its rows are skipped.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import random
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from abtest.contract.bucketing import Allocation, bucket_for, unit_interval

SALT = "exp-checkout-button"
WEIGHTS = [0.3, 0.4, 0.3]
TRAFFIC = 0.8

Runner = Callable[[Sequence[str]], None]


def find_growthbook() -> tuple[Any, Any, Any, str] | None:
    """(gbhash, getBucketRanges, chooseVariation, module name) from whichever module has them."""
    for name in ("growthbook.core", "growthbook.common_functions", "growthbook.growthbook", "growthbook"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found = [getattr(module, attr, None) for attr in ("gbhash", "getBucketRanges", "chooseVariation")]
        if found[0] is not None:
            return found[0], found[1], found[2], name
    return None


def our_runners() -> dict[str, Runner]:
    def run_unit_interval(ids: Sequence[str]) -> None:
        f, salt = unit_interval, SALT
        for user_id in ids:
            f(salt, user_id)

    def run_bucket_for(ids: Sequence[str]) -> None:
        f, salt, weights, traffic = bucket_for, SALT, WEIGHTS, TRAFFIC
        for user_id in ids:
            f(user_id, salt, weights, traffic)

    def run_allocation(ids: Sequence[str]) -> None:
        pick, f, salt = Allocation(WEIGHTS, TRAFFIC).variant_index, unit_interval, SALT
        for user_id in ids:
            pick(f(salt, user_id))

    return {
        "abtest unit_interval (mmh3)": run_unit_interval,
        "abtest bucket_for": run_bucket_for,
        "abtest Allocation.variant_index(u)": run_allocation,
    }


def growthbook_runners(gbhash: Any, get_ranges: Any, choose: Any) -> dict[str, Runner]:
    def run_hash(version: int) -> Runner:
        def run(ids: Sequence[str]) -> None:
            f, seed = gbhash, SALT
            for user_id in ids:
                f(seed, user_id, version)

        return run

    runners = {"growthbook gbhash v1 (FNV-1a)": run_hash(1), "growthbook gbhash v2 (FNV-1a x2)": run_hash(2)}
    if get_ranges is not None and choose is not None:

        def run_choose(ids: Sequence[str]) -> None:
            f, seed, n, weights, traffic = gbhash, SALT, len(WEIGHTS), WEIGHTS, TRAFFIC
            for user_id in ids:
                choose(f(seed, user_id, 2), get_ranges(n, traffic, weights))

        runners["growthbook v2 + getBucketRanges + chooseVariation"] = run_choose
    return runners


def best_of(run: Runner, ids: Sequence[str], repeats: int) -> float:
    """Fastest of `repeats` passes over ids, in seconds."""
    run(ids[:1000])  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(ids)
        best = min(best, time.perf_counter() - start)
    return best


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000, help="distinct user ids (default 200000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per row (default 5)")
    args = parser.parse_args(argv)

    rng = random.Random(12345)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(args.users)]
    print(
        f"Python {platform.python_version()} ({platform.machine()}), mmh3 {version_of('mmh3')}, "
        f"growthbook {version_of('growthbook')}"
    )
    print(f"{args.users} distinct UUID user ids, salt {SALT!r}, weights {WEIGHTS}, traffic {TRAFFIC}")
    print(f"best of {args.repeats} passes each\n")

    runners = our_runners()
    growthbook = find_growthbook()
    if growthbook is None:
        print("growthbook is not importable (pip install growthbook): skipping its rows\n")
    else:
        gbhash, get_ranges, choose, module = growthbook
        print(f"GrowthBook hash: {module}.gbhash(seed, value, version)\n")
        runners.update(growthbook_runners(gbhash, get_ranges, choose))

    results = {name: best_of(run, ids, args.repeats) for name, run in runners.items()}
    reference_name = "growthbook gbhash v2 (FNV-1a x2)"
    reference = args.users / results[reference_name] if reference_name in results else None

    header = f"{'implementation':<52} {'ns/op':>8} {'ops/s':>12}"
    if reference is not None:
        header += f" {'x gbhash v2':>12}"
    print(header)
    print("-" * len(header))
    for name, seconds in results.items():
        ops = args.users / seconds
        line = f"{name:<52} {seconds / args.users * 1e9:>8.0f} {ops:>12,.0f}"
        if reference is not None:
            line += f" {ops / reference:>11.1f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
