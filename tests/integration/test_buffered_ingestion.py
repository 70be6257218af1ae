"""Buffered ingestion (INGEST_MODE=buffered) through moto's SQS and the real boto3 client: the door
queues (202), IngestFunction writes; the same events give exactly the /metrics and /results of
direct ingestion, replays included (SQS redeliveries and client retries), and a poisoned message
never blocks its batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws

from abtest import wiring
from localdev.lambda_events import LocalLambdaContext
from tests.integration.conftest import ApiResponse, call
from tests.integration.test_experiments_api import BASE, experiment_body

USERS = [f"user-{n}" for n in range(40)]


class Queue:
    """moto's SQS queue, drained into IngestFunction's handler like Lambda's event source mapping."""

    def __init__(self) -> None:
        self.client = boto3.client("sqs", region_name="us-east-1")
        self.url = self.client.create_queue(QueueName="abtest-ingest")["QueueUrl"]

    def receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, AttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)

    @staticmethod
    def event(messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:abtest-ingest",
                    "awsRegion": "us-east-1",
                }
                for m in messages
            ]
        }

    def deliver(self, messages: list[dict[str, Any]], times: int = 1) -> list[dict[str, Any]]:
        """Hand the messages to the writer `times` times (an SQS redelivery), in batches of 10, then
        delete those it stored; the failures it reported, per delivery."""
        import ingest_handler

        failures: list[dict[str, Any]] = []
        for _ in range(times):
            for start in range(0, len(messages), 10):
                chunk = messages[start : start + 10]
                answer = ingest_handler.lambda_handler(
                    self.event(chunk), LocalLambdaContext(function_name="IngestFunction")
                )
                failures.extend(answer["batchItemFailures"])
        failed = {f["itemIdentifier"] for f in failures}
        for message in messages:
            if message["MessageId"] not in failed:
                self.client.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return failures


@pytest.fixture
def queue(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    with mock_aws():
        q = Queue()
        yield q
    monkeypatch.delenv("INGEST_MODE", raising=False)
    wiring.reset()


def mode(monkeypatch: pytest.MonkeyPatch, name: str, url: str | None = None) -> None:
    monkeypatch.setenv("INGEST_MODE", name)
    if url:
        monkeypatch.setenv("INGEST_QUEUE_URL", url)
    else:
        monkeypatch.delenv("INGEST_QUEUE_URL", raising=False)
    wiring.reset()


def started() -> dict[str, Any]:
    created = call("POST", BASE, experiment_body(traffic_allocation=1.0)).json
    return call("PUT", f"{BASE}/{created['id']}/status", {"status": "running"}).json  # type: ignore[no-any-return]


# Everything events write (the experiment and its assignments stay).
EVENT_TABLES = (
    "ingest_outcomes, refused_events, override_conversions, override_exposures, holdout_conversions, "
    "experiment_metrics, rollup_failures, snapshot_metrics, snapshot_variants, rollup_metrics, "
    "rollup_variants, rollup_user_metrics, rollup_users, conversions, exposures"
)


def requests(experiment_id: str) -> list[tuple[str, dict[str, Any]]]:
    """One experiment's traffic: batches and single conversions, with every kind of outcome."""
    exposures = [
        {"type": "exposure", "experiment_id": experiment_id, "user_id": u, "event_id": f"x-{u}"}
        for u in USERS[:30]
    ]
    conversions = [
        {
            "type": "conversion",
            "experiment_id": experiment_id,
            "user_id": u,
            "event_id": f"c-{u}",
            "metric_name": "purchase",
            "value": float(n % 7) + 0.5,
            "metadata": {"sku": f"S{n}", "none": None},
        }
        for n, u in enumerate(USERS[:20])
    ]
    oddities = [
        conversions[0],  # the same event twice in a batch: a duplicate
        {**conversions[1], "value": 99.0},  # a reused id, another payload: rejected
        {**conversions[2], "user_id": "nobody", "event_id": "c-nobody"},  # not assigned: rejected
        {**conversions[3], "metric_name": "signup", "event_id": "s-3"},
        {**conversions[4], "experiment_id": str(uuid.uuid4()), "event_id": "c-elsewhere"},  # no experiment
    ]
    singles = [
        {
            "experiment_id": experiment_id,
            "user_id": u,
            "metric_name": "revenue",
            "value": 10.0,
            "event_id": f"r-{u}",
        }
        for u in USERS[20:26]
    ] + [
        {"experiment_id": experiment_id, "user_id": USERS[27], "metric_name": "revenue", "value": 3.0},
        {"experiment_id": experiment_id, "user_id": "stranger", "metric_name": "revenue", "event_id": "r-x"},
        {
            "experiment_id": str(uuid.uuid4()),
            "user_id": USERS[0],
            "metric_name": "revenue",
            "event_id": "r-0",
        },
    ]
    return [
        ("/api/v1/events", {"events": exposures}),
        ("/api/v1/events", {"events": conversions + oddities}),
        ("/api/v1/events", {"events": conversions[:5]}),  # a client retry of part of a batch
        *[("/api/v1/experiments/conversions", single) for single in singles],
        ("/api/v1/experiments/conversions", singles[0]),  # a client retry
    ]


def read(experiment_id: str) -> dict[str, Any]:
    """/metrics and /results of the experiment, without the time they were computed at."""

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items() if k not in {"computed_at", "generated_at"}}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return {
        route: scrub(call("GET", f"{BASE}/{experiment_id}/{route}").json) for route in ("metrics", "results")
    }


def test_buffered_gives_the_metrics_and_results_of_direct_replays_included(
    queue: Queue, monkeypatch: pytest.MonkeyPatch, sql: Any, clean_db: str
) -> None:
    experiment = started()
    for user in USERS[:28]:
        body = {"experiment_id": experiment["id"], "user_id": user, "record_exposure": False}
        assert call("POST", "/api/v1/assignments", body).status == 200

    mode(monkeypatch, "direct")
    for path, body in requests(experiment["id"]):
        assert call("POST", path, body).status in (200, 201, 404, 409, 422)
    direct = read(experiment["id"])
    stored_direct = sql("SELECT count(*) FROM conversions")[0][0]

    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {EVENT_TABLES}".encode())
    mode(monkeypatch, "buffered", queue.url)
    answers = [call("POST", path, body) for path, body in requests(experiment["id"])]
    assert [a.status for a in answers].count(404) == 1  # the conversion for no experiment, as in direct
    assert {a.status for a in answers} == {202, 404}
    batch = answers[1].json
    assert (batch["queued"], batch["duplicates"], batch["rejected"]) == (22, 1, 2)
    assert batch["results"][-1]["error"] == "experiment_not_found"
    assert sql("SELECT count(*) FROM conversions")[0][0] == 0  # nothing written before the writer runs
    messages = queue.receive()
    assert len(messages) == 3 + 9
    assert queue.deliver(messages, times=2) == []  # every message delivered twice: no failure
    assert queue.receive() == []
    buffered = read(experiment["id"])

    assert stored_direct > 0
    assert buffered == direct
    assert sql("SELECT count(*) FROM conversions")[0][0] == stored_direct
    buffered = {**buffered, "experiment_id": experiment["id"]}

    # Each queued event's outcome, by its id: the writer's first decision (replays did not change it).
    def outcome(event_id: str) -> ApiResponse:
        return call(
            "GET", "/api/v1/events/outcome", query=f"experiment_id={experiment['id']}&event_id={event_id}"
        )

    assert [o["status"] for o in outcome("c-user-0").json["outcomes"]] == ["accepted"]
    rejected = outcome("c-nobody").json["outcomes"][0]
    assert (rejected["status"], rejected["error"]) == ("rejected", "user_not_assigned")
    assert outcome("r-x").json["outcomes"][0]["error"] == "user_not_assigned"
    service_id = answers[-4].json["event_id"]  # the conversion sent without event_id got one
    assert service_id.startswith("svc-")
    assert outcome(service_id).json["outcomes"][0]["status"] == "accepted"
    missing = outcome("never-sent")
    assert (missing.status, missing.json["error"]) == (404, "event_outcome_not_found")


def test_a_poisoned_message_never_blocks_its_batch(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = started()
    assert (
        call("POST", "/api/v1/assignments", {"experiment_id": experiment["id"], "user_id": "u1"}).status
        == 200
    )
    mode(monkeypatch, "buffered", queue.url)
    good = {"experiment_id": experiment["id"], "user_id": "u1", "metric_name": "purchase", "event_id": "ok-1"}
    assert call("POST", "/api/v1/experiments/conversions", good).status == 202
    queue.client.send_message(QueueUrl=queue.url, MessageBody='{"v": 1, "events": "not a list"}')
    queue.client.send_message(QueueUrl=queue.url, MessageBody="not json at all")
    messages = queue.receive()
    assert len(messages) == 3
    failures = queue.deliver(messages)
    poisoned = {
        m["MessageId"] for m in messages if m["Body"] != messages[0]["Body"] or "ok-1" not in m["Body"]
    }
    assert {f["itemIdentifier"] for f in failures} == poisoned
    stored = call("GET", "/api/v1/events/outcome", query=f"experiment_id={experiment['id']}&event_id=ok-1")
    assert stored.json["outcomes"][0]["status"] == "accepted"


def test_the_door_refuses_what_it_can_check_and_fails_whole_when_the_queue_is_unreachable(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = started()
    mode(monkeypatch, "buffered", queue.url)
    bad = call(
        "POST", "/api/v1/events", {"events": [{"type": "exposure", "experiment_id": experiment["id"]}]}
    )
    assert bad.status == 422  # shape and limits, as in direct mode: nothing queued
    assert queue.receive() == []
    mode(monkeypatch, "buffered", queue.url.replace("abtest-ingest", "no-such-queue"))
    event = {"type": "exposure", "experiment_id": experiment["id"], "user_id": "u", "event_id": "e"}
    refused = call("POST", "/api/v1/events", {"events": [event]})
    assert refused.status == 503, refused
    assert refused.headers.get("Retry-After")


def test_the_door_keeps_accepting_while_the_database_is_down(
    queue: Queue, monkeypatch: pytest.MonkeyPatch, outage: Any
) -> None:
    experiment = started()
    body = {"experiment_id": experiment["id"], "user_id": "u1", "record_exposure": False}
    assert call("POST", "/api/v1/assignments", body).status == 200
    mode(monkeypatch, "buffered", queue.url)
    event = {"type": "exposure", "experiment_id": experiment["id"], "user_id": "u1", "event_id": "while-down"}
    outage(True)
    accepted = call("POST", "/api/v1/events", {"events": [event]})
    assert accepted.status == 202, accepted
    messages = queue.receive()
    failures = queue.deliver(messages)  # the writer cannot write now: the message stays queued
    assert [f["itemIdentifier"] for f in failures] == [messages[0]["MessageId"]]
    outage(False)
    wiring.reset()
    assert queue.deliver(messages) == []  # redelivered once the database is back
    query = f"experiment_id={experiment['id']}&event_id=while-down"
    stored = call("GET", "/api/v1/events/outcome", query=query)
    assert stored.json["outcomes"][0]["status"] == "accepted"
