"""Buffered ingestion's queue messages (abtest.ingest.messages) and the SQS batching of the door."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from abtest.domain.events import ConversionIn, EventBatch
from abtest.ingest.messages import admit, conversion_event, decode, encode
from abtest.ingest.queue import SQS_BATCH_BYTES, SQS_BATCH_ENTRIES, _chunks
from abtest.limits import MAX_QUEUE_MESSAGE_BYTES

EXPERIMENT = str(uuid.uuid4())
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def events(count: int, padding: int = 0) -> list:  # type: ignore[type-arg]
    return EventBatch.model_validate(
        {
            "events": [
                {
                    "type": "conversion",
                    "experiment_id": EXPERIMENT,
                    "user_id": f"u{n}",
                    "event_id": f"e{n}",
                    "metric_name": "purchase",
                    "value": n + 0.25,
                    "metadata": {"pad": "x" * padding, "none": None},
                }
                for n in range(count)
            ]
        }
    ).events


def test_a_message_round_trips_with_the_same_payload_hashes() -> None:
    sent = events(5)
    (body,) = encode(sent, AT)
    message = decode(body)
    assert message.received_at == AT
    assert [e.payload_hash() for e in message.events] == [e.payload_hash() for e in sent]
    assert [e.model_dump() for e in message.events] == [e.model_dump() for e in sent]


def test_large_batches_split_into_messages_under_the_limit_in_order() -> None:
    sent = events(1000, padding=900)  # about 1 MB of JSON
    bodies = encode(sent, AT)
    assert len(bodies) > 3
    assert all(len(body.encode()) <= MAX_QUEUE_MESSAGE_BYTES for body in bodies)
    decoded = [event.event_id for body in bodies for event in decode(body).events]
    assert decoded == [event.event_id for event in sent]


def test_sqs_calls_hold_at_most_ten_entries_and_256_kib() -> None:
    bodies = ["x" * 100_000] * 7 + ["y" * 10] * 25
    chunks = _chunks(bodies)
    assert [b for chunk in chunks for b in chunk] == bodies
    assert all(len(chunk) <= SQS_BATCH_ENTRIES for chunk in chunks)
    assert all(sum(len(b) for b in chunk) <= SQS_BATCH_BYTES for chunk in chunks)


def test_the_door_decides_copies_within_a_batch_as_direct_ingestion_does() -> None:
    sent = events(3)
    copy = sent[0].model_copy()
    reused = sent[1].model_copy(update={"value": 99.0})
    positions, results = admit([*sent, copy, reused])
    assert positions == [0, 1, 2]
    assert [r.status for r in results] == ["queued", "queued", "queued", "duplicate", "rejected"]
    assert results[4].error == "event_id_reused"


def test_a_conversion_without_event_id_gets_one() -> None:
    body = ConversionIn.model_validate({"experiment_id": EXPERIMENT, "user_id": "u", "metric_name": "m"})
    event = conversion_event(body)
    assert event.event_id.startswith("svc-")
    assert event.payload_hash() == body.payload_hash()


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"v": 2, "received_at": AT.isoformat(), "events": []}),
        json.dumps({"v": 1, "received_at": AT.isoformat(), "events": []}),
        json.dumps({"v": 1, "received_at": AT.isoformat(), "events": [{"type": "exposure"}]}),
    ],
)
def test_poisoned_messages_are_refused(body: str) -> None:
    with pytest.raises((ValueError, ValidationError)):
        decode(body)
