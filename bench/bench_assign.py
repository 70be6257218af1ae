"""Latency and database round trips of POST /api/v1/assignments, next to a one-INSERT floor.

    .venv/bin/python bench/bench_assign.py [--requests 5000] [--warmup 300] [--profile]

Calls assignments_handler.lambda_handler in-process with API Gateway v2 events against the local
PostgreSQL (database `abtest_bench`, reset every run), on a running experiment with traffic 1.0 that
the experiments handler created. Each timed iteration makes three calls, interleaved so they share the
machine's conditions: a new user's request, a returning user's request, and the floor, one single-row
INSERT on a connection configured like the service's (autocommit, prepare_threshold=None). Events are
built and responses checked outside the timed region.

Targets (issue 14): p50 within 1.5x the floor's p50 (new and returning user); exactly 1 database round
trip per warm request. The enrollment runs as the routine `abtest_enroll` (abtest.storage.routines).
Then, to show where the time goes, the same returning-user request is timed layer by layer (a plain
exposure INSERT, AssignmentRepository.enroll, AssignmentService.assign, the handler's own pydantic
models without Powertools, the Powertools resolver, the whole handler), and the enrollment statement is run
under EXPLAIN ANALYZE.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from _harness import (
    InsertFloor,
    Probe,
    Request,
    Statement,
    count_calls,
    count_round_trips,
    count_statements,
    create_running_experiment,
    database_stubbed,
    environment_line,
    expect_ok,
    explain_analyze,
    explain_table,
    latency_table,
    layer_table,
    prepare,
    profile_top,
    request,
    round_trip_table,
    run_interleaved,
)

LATENCY_TARGET = 1.5  # p50 / floor p50 (issue 14)
ROUND_TRIP_TARGET = 1  # per warm request
VARIANTS = [
    {"name": "control", "weight": 0.5, "config": {"lora_boost": 0.3}},
    {"name": "treatment", "weight": 0.5, "config": {"lora_boost": 0.5}},
]
FLOOR = "floor: 1-row INSERT"
PATH = "/api/v1/assignments"


class AssignClient:
    """Prepares assignment requests for one experiment and checks every answer."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], dict[str, Any]], experiment_id: str) -> None:
        self._handler = handler
        self.experiment_id = experiment_id

    def request(self, user_id: str) -> Request:
        return request(self._handler, "POST", PATH, {"user_id": user_id, "experiment_id": self.experiment_id})

    def probe(self, user_id: str, *, expect_new: bool) -> Probe:
        """The handler call, timed; the answer checked afterwards."""

        def check(raw: dict[str, Any]) -> None:
            reply = Request.reply(raw)
            # A benchmark of error responses would be meaningless: fail loudly instead.
            assert reply.status == 200, reply
            assert reply.body["enrolled"], reply.body
            assert reply.body["new_assignment"] is expect_new, reply.body

        return Probe(self.request(user_id).send, check)

    def assign(self, user_id: str, *, expect_new: bool) -> None:
        """One untimed request (warm-up, set-up)."""
        self.probe(user_id, expect_new=expect_new).run()


def capture_statements(client: AssignClient, new_id: str, returning_id: str) -> dict[str, list[Statement]]:
    """The statements one warm new-user and one warm returning-user request send."""
    sent: dict[str, list[Statement]] = {}
    with count_statements(keep=True) as tally:
        for case, user_id, expect_new in (
            ("new user", new_id, True),
            ("returning user", returning_id, False),
        ):
            tally.reset()
            client.assign(user_id, expect_new=expect_new)
            sent[case] = list(tally.sent)
    return sent


def explain_enrollment(url: str, sent: dict[str, list[Statement]]) -> dict[str, dict[str, float]]:
    """EXPLAIN ANALYZE each case's statement; the new user's with a user id never seen, so it inserts.
    Also the routine's statement sent as plain text (as before the routine): its planning is what the
    function's per-session plan cache saves on every request."""
    from abtest.storage.assignments import ENROLL

    plans = {}
    for case, statements in sent.items():
        if len(statements) != 1:
            continue  # the table is about the one-statement enrollment
        statement = statements[0]
        if case.startswith("new"):
            if not isinstance(statement.params, dict) or "user_id" not in statement.params:
                continue
            statement = Statement(statement.query, {**statement.params, "user_id": "explain-never-seen"})
        plans[f"enrollment call, {case}"] = explain_analyze(url, statement)
        if statement.text().startswith(f"SELECT * FROM {ENROLL.name}("):
            plain = Statement(ENROLL.statement, statement.params)
            plans[f"its statement as plain text, {case}"] = explain_analyze(url, plain)
    return plans


def lean_handler(module: Any, server: Any) -> Callable[[dict[str, Any]], str] | None:
    """The handler's own work without Powertools: parse the body into its request model, assign, and
    serialize its response model. None if the handler's models are not where this expects them."""
    names = ("AssignmentRequest", "AssignmentResponse", "AssignedVariant")
    if not all(hasattr(module, name) for name in names):
        return None
    request_model, response_model, variant_model = (getattr(module, name) for name in names)

    def handle(event: dict[str, Any]) -> str:
        body = request_model.model_validate_json(event["body"])
        result = server.assign(
            body.experiment_id, body.user_id, context=body.context, record_exposure=body.record_exposure
        )
        variant = result.variant
        response = response_model(
            experiment_id=result.experiment.id,
            experiment_name=result.experiment.name,
            user_id=body.user_id,
            enrolled=variant is not None,
            reason=result.reason,
            variant=variant_model(id=variant.id, name=variant.name, config=variant.config)
            if variant
            else None,
            experiment_variant=result.tag,
            new_assignment=result.new_assignment,
            exposure_recorded=result.exposure_recorded,
        )
        return str(response.model_dump_json())

    return handle


def layer_probes(
    client: AssignClient, floor: InsertFloor, pool: Sequence[str]
) -> dict[str, Callable[[int], Probe]]:
    """The same returning-user request at each layer, from the floor outwards to the whole handler."""
    import assignments_handler
    from abtest import wiring
    from abtest.domain.assignment import EnrollRequest
    from abtest.storage import AssignmentRepository
    from abtest.storage.database import get_database

    experiment_id = UUID(client.experiment_id)
    server = wiring.assignment_service()
    repository = AssignmentRepository(get_database())
    # The returning users' stored variants, so enroll() gets the arguments AssignmentService would give it.
    variant_ids = {}
    for user_id in pool:
        variant = server.assign(experiment_id, user_id).variant
        assert variant is not None
        variant_ids[user_id] = variant.id

    def user(i: int) -> str:
        return pool[i % len(pool)]

    def plain_exposure(i: int) -> Probe:
        params = (experiment_id, variant_ids[user(i)], user(i))
        query = "INSERT INTO exposures (experiment_id, variant_id, user_id) VALUES (%s, %s, %s)"
        return Probe(lambda: floor.execute(query, params))

    def enroll(i: int) -> Probe:
        request = EnrollRequest("recommendations", user(i), experiment_id, variant_ids[user(i)], False)
        return Probe(lambda: repository.enroll(request))

    def resolve(i: int) -> Probe:
        prepared = client.request(user(i))
        return Probe(lambda: assignments_handler.app.resolve(prepared.event, prepared.context), expect_ok)

    probes: dict[str, Callable[[int], Probe]] = {
        "floor: 1-row INSERT into a scratch table": lambda _i: Probe(floor.insert),
        "1-row INSERT INTO exposures (same connection)": plain_exposure,
        "AssignmentRepository.enroll (the service's connection)": enroll,
        "AssignmentService.assign (+ bucketing, cache)": lambda i: Probe(
            lambda: server.assign(experiment_id, user(i))
        ),
    }
    lean = lean_handler(assignments_handler, server)
    if lean is not None:

        def lean_probe(i: int) -> Probe:
            event = client.request(user(i)).event
            return Probe(lambda: lean(event))

        probes["+ the handler's pydantic models, no Powertools"] = lean_probe
    probes["app.resolve (resolver; hot route: model_validate_json)"] = resolve
    probes["lambda_handler (+ scope check, decorators)"] = lambda i: client.probe(user(i), expect_new=False)
    return probes


PYTHON_LAYERS = ("AssignmentService.assign", "+ the handler", "app.resolve", "lambda_handler")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="timed iterations (default 5000)")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up users (default 300)")
    parser.add_argument("--count", type=int, default=100, help="requests per case for counting (default 100)")
    parser.add_argument("--layers", type=int, default=2000, help="iterations of the layer table")
    parser.add_argument("--profile", action="store_true", help="also cProfile returning-user requests")
    args = parser.parse_args(argv)

    url = prepare()
    from abtest.storage import AssignmentRepository
    from abtest.storage.database import get_database
    from assignments_handler import lambda_handler

    experiment_id = create_running_experiment(f"bench-assign-{time.time_ns()}", VARIANTS, traffic=1.0)
    client = AssignClient(lambda_handler, experiment_id)
    floor = InsertFloor(url)

    # Warm up: the first request connects and loads the running experiments; these users then
    # serve as the returning users.
    pool = [f"returning-{i}" for i in range(args.warmup)]
    for user_id in pool:
        client.assign(user_id, expect_new=True)
        floor.insert()
    for user_id in pool:
        client.assign(user_id, expect_new=False)

    counts = count_round_trips(
        {
            "new user": [client.probe(f"counted-{i}", expect_new=True) for i in range(2 * args.count)],
            "returning user": [client.probe(u, expect_new=False) for u in (pool * 2)[: 2 * args.count]],
        },
        get_database().connection(),
    )
    sent = capture_statements(client, "captured-new", pool[0])

    reloads = count_calls(AssignmentRepository, "serving_experiments")
    started = time.perf_counter()
    samples = run_interleaved(
        {
            "new user": lambda i: client.probe(f"new-{i}", expect_new=True),
            "returning user": lambda i: client.probe(pool[i % len(pool)], expect_new=False),
            FLOOR: lambda _i: Probe(floor.insert),
        },
        args.requests,
    )
    elapsed = time.perf_counter() - started
    experiment_reloads = reloads()
    probes = layer_probes(client, floor, pool)
    layers = run_interleaved(probes, args.layers)
    with database_stubbed():
        cpu_only = run_interleaved(
            {name: probe for name, probe in probes.items() if name.startswith(PYTHON_LAYERS)}, args.layers
        )
    floor.close()
    plans = explain_enrollment(url, sent)

    print(f"# POST /api/v1/assignments, in-process\n\n{environment_line(url)}\n")
    print(
        f"{args.requests} timed iterations (new user, returning user, floor; interleaved) in {elapsed:.1f} s "
        f"after {args.warmup} warm-up users. Milliseconds.\n"
    )
    print(latency_table(samples, FLOOR, LATENCY_TARGET))
    print(f"\nRound trips per warm request ({args.count} requests per case and instrument):\n")
    print(round_trip_table(counts, ROUND_TRIP_TARGET))
    print(
        f"\nRunning-experiment cache reloads while timing: {experiment_reloads} over "
        f"{2 * args.requests} requests (TTL 10 s; one extra round trip each, "
        f"+{experiment_reloads / (2 * args.requests):.4f} per request)."
    )
    for case, statements in sent.items():
        print(f"\nStatements of one warm {case} request:")
        for statement in statements:
            print(f"  - {statement.summary()}")
    print(f"\nWhere the time goes: a returning user's request by layer, {args.layers} iterations:\n")
    print(layer_table(layers))
    print("\nThe same layers with AssignmentRepository.enroll stubbed out (no database): CPU cost only.\n")
    print(layer_table(cpu_only, floor_first=False))
    print("\nServer side (EXPLAIN ANALYZE, median of 25, rolled back: no round trip, no commit):\n")
    print(explain_table(plans))
    print(
        "\n(The call's execution includes the routine's statement, planned once per session and cached;"
        " its foreign-key triggers are not broken out by EXPLAIN of the call.)"
    )
    if args.profile:
        print("\n## cProfile: 500 returning-user requests, by internal time\n")
        users = iter(pool * 2)
        print(profile_top(lambda: client.assign(next(users), expect_new=False), 500))
    return 0


if __name__ == "__main__":
    sys.exit(main())
