"""Buffered against direct ingestion: POST /api/v1/events of 1,000 events, and the writer behind it.

    .venv/bin/python bench/bench_ingest_buffered.py [--reps 5] [--batches 10] [--users 50000]

Database `abtest_bench_buffered` (its own: re-migrated at the start, dropped at the end), set up as in
bench_ingest.py (one running experiment, `--users` assigned users, batches of 1,000 events, half
exposures, half conversions, from bench_ingest.make_batch). Per batch, interleaved:

- direct: events_handler.lambda_handler with INGEST_MODE=direct (validation, record_batch, answer);
- door: the same handler in buffered mode (validation, in-batch copies, the queue message encoded),
  its queue an in-memory list: what a client waits for before its 202, without the SQS round trip
  (tens of milliseconds in AWS, not measured here);
- writer: abtest.ingest.writer.handle on the SQS record of that message (decoding, the same
  record_batch, the outcomes, in one transaction): the database-side rate of buffered ingestion;
- buffered end to end: door + writer.

Rates are events per second of wall time (medians over repetitions); ratios against direct in the same
run. Buffering does not make a database write cheaper (the writer does what direct does, plus the
outcomes): it moves the write off the request path and lets a few writers absorb bursts.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any

from _harness import (
    BATCH_SIZE,
    Request,
    admin_connection,
    assign_users,
    context,
    create_events_experiment,
    drop_database,
    environment_line,
    markdown_table,
    prepare,
)
from bench_ingest import make_batch

DATABASE = "abtest_bench_buffered"


class Captured:
    """The door's queue: keeps the message bodies."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send(self, bodies: Sequence[str]) -> None:
        self.bodies.extend(bodies)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--users", type=int, default=50_000)
    args = parser.parse_args(argv)
    url = prepare(DATABASE)
    experiment = create_events_experiment("bench-ingest-buffered")
    with admin_connection(url) as admin:
        assign_users(admin, experiment, "u-", 0, args.users)
        admin.execute("VACUUM (ANALYZE) assignments")

    from abtest import wiring
    from abtest.ingest import door, writer
    from abtest.ingest.queue import sqs_record
    from events_handler import lambda_handler

    captured = Captured()
    wiring.event_queue = lambda: captured  # type: ignore[assignment]  # the seam: where the door sends

    def direct(batch: Any) -> float:
        door.buffered = lambda: False  # type: ignore[assignment]
        start = time.perf_counter()
        reply = Request.reply(lambda_handler(batch.api_event, context()))
        elapsed = time.perf_counter() - start
        assert reply.status == 200, reply
        assert reply.body["accepted"] == BATCH_SIZE, reply
        return elapsed

    def buffered(batch: Any) -> tuple[float, float]:
        door.buffered = lambda: True  # type: ignore[assignment]
        captured.bodies.clear()
        start = time.perf_counter()
        reply = Request.reply(lambda_handler(batch.api_event, context()))
        door_time = time.perf_counter() - start
        assert reply.status == 202, reply
        assert reply.body["queued"] == BATCH_SIZE, reply
        records = [sqs_record(str(uuid.uuid4()), body) for body in captured.bodies]
        start = time.perf_counter()
        answer = writer.handle({"Records": records}, None)
        writer_time = time.perf_counter() - start
        assert answer["batchItemFailures"] == [], answer
        return door_time, writer_time

    rng = random.Random(27)
    for b in range(2):  # warm-up
        direct(make_batch(experiment, args.users, f"warm-d-{b}", rng))
        buffered(make_batch(experiment, args.users, f"warm-b-{b}", rng))
    rates: dict[str, list[float]] = {"direct": [], "door": [], "writer": [], "buffered end to end": []}
    messages = 0
    for rep in range(args.reps):
        times: dict[str, list[float]] = {name: [] for name in rates}
        for b in range(args.batches):
            one = make_batch(experiment, args.users, f"d-{rep}-{b}", rng)
            other = make_batch(experiment, args.users, f"b-{rep}-{b}", rng)
            runs = [("direct", one), ("buffered", other)]
            for name, batch in runs if (rep + b) % 2 == 0 else runs[::-1]:
                if name == "direct":
                    times["direct"].append(direct(batch))
                else:
                    door_time, writer_time = buffered(batch)
                    messages = len(captured.bodies)
                    times["door"].append(door_time)
                    times["writer"].append(writer_time)
                    times["buffered end to end"].append(door_time + writer_time)
        for name in rates:
            rates[name].append(BATCH_SIZE * args.batches / sum(times[name]))
    with admin_connection(url) as admin:
        outcomes = admin.execute("SELECT count(*) FROM ingest_outcomes").fetchone()
    environment = environment_line(url)
    wiring.get_database().close()
    drop_database(url)
    base = statistics.median(rates["direct"])
    rows = [
        [
            name,
            f"{statistics.median(values):,.0f}",
            f"{BATCH_SIZE / statistics.median(values) * 1000:.1f}",
            f"{statistics.median(values) / base:.2f}x",
        ]
        for name, values in rates.items()
    ]
    print(
        f"# Buffered vs direct ingestion (bench_ingest_buffered.py, {args.reps} x {args.batches} batches)\n"
    )
    print(environment + "\n")
    print(
        f"Batches of {BATCH_SIZE} events; each became {messages} queue message(s); "
        f"{outcomes[0] if outcomes else 0} outcomes recorded.\n"
    )
    print(markdown_table(["path", "events/s", "ms per batch", "vs direct"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
