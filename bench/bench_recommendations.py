"""Latency and database round trips of POST /api/v1/recommendations over a 10,000-item catalog.

    .venv/bin/python bench/bench_recommendations.py [--requests 3000] [--items 10000] [--profile]

Loads `localdev.seed.demo_catalog(n_items=10_000)` with CatalogRepository.replace_catalog into the
local database `abtest_bench` (reset every run), starts an experiment on the `recommendations` surface
(traffic 1.0, variants lora_boost 0.3 and 0.5) through the experiments handler, and calls
assignments_handler.lambda_handler in-process with API Gateway v2 events. Every user has a profile
(`user-N` from the demo data), so each request enrolls or finds the user, records an exposure, reads
the profile, and ranks the whole catalog. Each timed iteration interleaves a new user, a returning
(already enrolled) user, and the floor: one single-row INSERT on a connection configured like the
service's (autocommit, prepare_threshold=None).

Targets (issue 14): p50 within 2x the floor's p50; exactly 1 database round trip per warm request.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from _harness import (
    InsertFloor,
    Latency,
    Probe,
    Request,
    count_calls,
    count_round_trips,
    create_running_experiment,
    database_stubbed,
    environment_line,
    expect_ok,
    latency_table,
    layer_table,
    prepare,
    profile_top,
    request,
    round_trip_table,
    run_interleaved,
    timed_once,
)

LATENCY_TARGET = 2.0  # p50 / floor p50 (issue 14)
ROUND_TRIP_TARGET = 1  # per warm request
VARIANTS = [
    {"name": "control", "weight": 0.5, "config": {"lora_boost": 0.3}},
    {"name": "treatment", "weight": 0.5, "config": {"lora_boost": 0.5}},
]
FLOOR = "floor: 1-row INSERT"
PATH = "/api/v1/recommendations"
SURFACE = "recommendations"
LIMIT = 10


class RecommendationsClient:
    """Prepares recommendation requests and checks that every answer is enrolled and complete."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], dict[str, Any]], experiment_id: str) -> None:
        self._handler = handler
        self.experiment_id = experiment_id

    def request(self, user_id: str) -> Request:
        return request(self._handler, "POST", PATH, {"user_id": user_id, "limit": LIMIT})

    def probe(self, user_id: str) -> Probe:
        def check(raw: dict[str, Any]) -> None:
            reply = Request.reply(raw)
            assert reply.status == 200, reply
            body = reply.body
            # Enrolled in our experiment, served from the database (not the fail-open path).
            assert body["experiment_id"] == self.experiment_id, body
            assert not body["degraded"], body
            assert len(body["recommendations"]) == LIMIT, body

        return Probe(self.request(user_id).send, check)

    def recommend(self, user_id: str) -> None:
        """One untimed request (warm-up, set-up)."""
        self.probe(user_id).run()


def load_catalog(n_items: int, n_users: int) -> tuple[int, int]:
    """Replace the catalog with the demo one; return (items, profiles) loaded."""
    from abtest.storage import CatalogRepository
    from abtest.storage.database import get_database
    from localdev.seed import demo_catalog

    items, profiles = demo_catalog(n_items=n_items, n_users=n_users)
    CatalogRepository(get_database()).replace_catalog(items, profiles)
    return len(items), len(profiles)


def layer_probes(
    client: RecommendationsClient, floor: InsertFloor, pool: Sequence[str]
) -> dict[str, Callable[[int], Probe]]:
    """The same returning-user request at each layer, from the floor outwards to the whole handler."""
    import assignments_handler
    from abtest import wiring
    from abtest.domain.assignment import EnrollRequest
    from abtest.storage import AssignmentRepository
    from abtest.storage.database import get_database

    server = wiring.assignment_service()
    repository = AssignmentRepository(get_database())
    experiment_id = UUID(client.experiment_id)
    variant_ids = {}
    for user_id in pool:
        assignment = server.recommendations(user_id, LIMIT, surface=SURFACE).assignment
        assert assignment is not None
        assert assignment.variant is not None
        variant_ids[user_id] = assignment.variant.id

    def user(i: int) -> str:
        return pool[i % len(pool)]

    def enroll(i: int) -> Probe:
        # A returning user's statement as the service sends it (proposal, following the membership).
        request = EnrollRequest(
            SURFACE, user(i), experiment_id, variant_ids[user(i)], True, with_profile=True
        )
        return Probe(lambda: repository.enroll(request))

    def resolve(i: int) -> Probe:
        prepared = client.request(user(i))
        return Probe(lambda: assignments_handler.app.resolve(prepared.event, prepared.context), expect_ok)

    return {
        "floor: 1-row INSERT into a scratch table": lambda _i: Probe(floor.insert),
        "AssignmentRepository.enroll with profile": enroll,
        "AssignmentService.recommendations (+ ranking)": lambda i: Probe(
            lambda: server.recommendations(user(i), LIMIT, surface=SURFACE)
        ),
        "app.resolve (resolver; hot route: model_validate_json)": resolve,
        "lambda_handler (+ scope check, decorators)": lambda i: client.probe(user(i)),
    }


def ranking_only(pool: Sequence[str], iterations: int) -> Latency:
    """recommend() alone on the container's cached catalog, for a demo profile and a variant's config:
    the CPU cost of ranking the whole catalog per request."""
    from abtest import wiring
    from abtest.domain.recommender import recommend
    from abtest.domain.recommender_config import RecommenderConfig

    server = wiring.assignment_service()
    result = server.recommendations(pool[0], LIMIT, surface=SURFACE)
    assert result.assignment is not None
    assert result.assignment.variant is not None
    config = RecommenderConfig.model_validate(result.assignment.variant.config)
    catalog = server._catalog.get()  # private, read only: the cached Catalog every warm request ranks
    profile = catalog.embeddings[0].tolist()
    rank = Probe(lambda: recommend(catalog, profile, config, LIMIT))
    samples = run_interleaved({"rank": lambda _i: rank}, iterations)
    return Latency.of(samples["rank"])


PYTHON_LAYERS = ("AssignmentService.recommendations", "app.resolve", "lambda_handler")


def demo_profile() -> list[float]:
    """A profile vector of the demo data (the first user's), for the database-free timing."""
    from localdev.seed import demo_catalog

    _, profiles = demo_catalog(n_items=1, n_users=1)
    return list(profiles[0][1])


def catalog_reload_ms(client: RecommendationsClient, pool: Sequence[str], repeats: int = 5) -> float:
    """Median time of a warm request that finds the catalog cache expired (every 300 s per container):
    it reloads and rebuilds the whole catalog before answering."""
    from abtest import wiring

    catalog_cache = wiring.assignment_service()._catalog  # private: expire it as the TTL would
    samples = []
    for user_id in pool[:repeats]:
        catalog_cache.invalidate()
        samples.append(client.probe(user_id).run())
    return statistics.median(samples)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="timed iterations (default 3000)")
    parser.add_argument("--items", type=int, default=10_000, help="catalog size (default 10000)")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up users (default 300)")
    parser.add_argument("--count", type=int, default=100, help="requests per case for counting (default 100)")
    parser.add_argument("--layers", type=int, default=1500, help="iterations of the layer table")
    parser.add_argument("--profile", action="store_true", help="also cProfile returning-user requests")
    args = parser.parse_args(argv)

    url = prepare()
    from abtest.storage import AssignmentRepository, CatalogRepository
    from abtest.storage.database import get_database
    from assignments_handler import lambda_handler

    # Every user the run touches has a profile: warm-up/returning, counted, and timed new users.
    n_users = args.warmup + 2 * args.count + args.requests
    load_seconds = timed_once(lambda: load_catalog(args.items, n_users)) / 1000
    experiment_id = create_running_experiment(f"bench-recs-{time.time_ns()}", VARIANTS, traffic=1.0)
    client = RecommendationsClient(lambda_handler, experiment_id)
    floor = InsertFloor(url)
    users = (f"user-{n}" for n in range(1, n_users + 1))

    # The first request connects, loads the running experiments and the catalog (cached 300 s).
    first_ms = client.probe(next(users)).run()
    pool = [next(users) for _ in range(args.warmup - 1)]
    for user_id in pool:
        client.recommend(user_id)
        floor.insert()
    for user_id in pool:
        client.recommend(user_id)

    counted_new = [client.probe(next(users)) for _ in range(2 * args.count)]
    counted_returning = [client.probe(u) for u in (pool * 2)[: 2 * args.count]]
    counts = count_round_trips(
        {"new user (with profile)": counted_new, "returning user (with profile)": counted_returning},
        get_database().connection(),
    )

    reloads = count_calls(AssignmentRepository, "serving_experiments")
    catalog_loads = count_calls(CatalogRepository, "catalog")
    new_users = [next(users) for _ in range(args.requests)]
    started = time.perf_counter()
    samples = run_interleaved(
        {
            "new user (with profile)": lambda i: client.probe(new_users[i]),
            "returning user (with profile)": lambda i: client.probe(pool[i % len(pool)]),
            FLOOR: lambda _i: Probe(floor.insert),
        },
        args.requests,
    )
    elapsed = time.perf_counter() - started
    experiment_reloads, catalog_reloads = reloads(), catalog_loads()
    probes = layer_probes(client, floor, pool)
    layers = run_interleaved(probes, args.layers)
    with database_stubbed(profile=demo_profile()):
        cpu_only = run_interleaved(
            {name: probe for name, probe in probes.items() if name.startswith(PYTHON_LAYERS)}, args.layers
        )
    floor.close()
    ranking = ranking_only(pool, args.layers)
    reload_ms = catalog_reload_ms(client, pool)

    print(f"# POST /api/v1/recommendations, {args.items} items, in-process\n\n{environment_line(url)}\n")
    print(
        f"Catalog of {args.items} items (16-d embeddings) and {n_users} profiles loaded in "
        f"{load_seconds:.1f} s; first request (connect, load experiments and catalog) {first_ms:.0f} ms.\n"
        f"{args.requests} timed iterations (new user, returning user, floor; interleaved) in "
        f"{elapsed:.1f} s. limit={LIMIT}. Milliseconds.\n\n"
        f"A warm request that finds the catalog cache expired (once per 300 s per container) takes "
        f"{reload_ms:.0f} ms (median of 5): it reloads and rebuilds the catalog synchronously.\n"
    )
    print(latency_table(samples, FLOOR, LATENCY_TARGET))
    print(f"\nRound trips per warm request ({args.count} requests per case and instrument):\n")
    print(round_trip_table(counts, ROUND_TRIP_TARGET))
    print(
        f"\nWhile timing: {experiment_reloads} running-experiment reloads and {catalog_reloads} catalog "
        f"reloads over {2 * args.requests} requests (TTL 10 s and 300 s; one extra round trip each)."
    )
    print(f"\nWhere the time goes: a returning user's request by layer, {args.layers} iterations:\n")
    print(layer_table(layers))
    print("\nThe same layers with AssignmentRepository.enroll stubbed out (no database): CPU cost only.\n")
    print(layer_table(cpu_only, floor_first=False))
    print(
        f"\nrecommend() alone (numpy ranking of the cached catalog, one profile, lora_boost config): "
        f"p50 {ranking.p50:.3f} ms, p99 {ranking.p99:.3f} ms."
    )
    if args.profile:
        print("\n## cProfile: 500 returning-user requests, by internal time\n")
        cycle = iter(pool * 2)
        print(profile_top(lambda: client.recommend(next(cycle)), 500))
    return 0


if __name__ == "__main__":
    sys.exit(main())
