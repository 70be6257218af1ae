"""Queue messages of buffered ingestion: what the door accepted, as the writer will store it (pure).

A message is JSON: `{"v": 1, "received_at": "...", "events": [<batch events as sent>]}`. The events keep
exactly what the client sent (the payload hash, hence idempotency, is computed from it); `received_at`
stands for "now" of an event sent without a timestamp, so an event written a minute later is stored at
the time it arrived, as direct ingestion stores it.

The door answers for what it can decide alone, like direct ingestion's one statement would: an event
sent twice in one batch counts once (the copy is a duplicate, or rejected if its payload differs).
Everything that needs the database (the experiment's status, the user's assignment, an event id stored
before) is decided by the writer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from abtest.domain.events import BatchEvent, ConversionEvent, ConversionIn, ExposureEvent
from abtest.errors import ErrorCode
from abtest.limits import MAX_BATCH_EVENTS, MAX_QUEUE_MESSAGE_BYTES

VERSION = 1
_EVENTS = TypeAdapter(list[BatchEvent])


class QueuedEvent(BaseModel):
    """What the door did with one event: queued for the writer, or decided at once."""

    index: int
    event_id: str
    status: Literal["queued", "duplicate", "rejected"]
    error: str | None = None
    message: str | None = None


class QueuedBatch(BaseModel):
    """Answer (202) to a batch with buffered ingestion: each event's outcome is read back by its id."""

    queued: int
    duplicates: int
    rejected: int
    results: list[QueuedEvent]


class QueuedConversion(BaseModel):
    """Answer (202) to a conversion with buffered ingestion."""

    experiment_id: uuid.UUID
    event_id: str = Field(description="The client's event_id, or the one the service gave it")
    status: Literal["queued"] = "queued"


@dataclass(frozen=True)
class Message:
    """A decoded queue message."""

    received_at: datetime
    events: list[ExposureEvent | ConversionEvent]


def conversion_event(body: ConversionIn) -> ConversionEvent:
    """A single conversion as a batch event; one without event_id gets one, so that a redelivered
    message is stored once (the id is returned to the client)."""
    return ConversionEvent(
        type="conversion",
        experiment_id=body.experiment_id,
        user_id=body.user_id,
        event_id=body.event_id or f"svc-{uuid.uuid4()}",
        metric_name=body.metric_name,
        value=body.value,
        timestamp=body.timestamp,
        metadata=body.metadata,
    )


def admit(events: Sequence[ExposureEvent | ConversionEvent]) -> tuple[list[int], list[QueuedEvent]]:
    """Positions to queue (first copies) and the answer for every event, in the order sent."""
    seen: dict[tuple[str, uuid.UUID, str], str] = {}
    to_queue: list[int] = []
    results: list[QueuedEvent] = []
    for position, event in enumerate(events):
        key = (event.type, event.experiment_id, event.event_id)
        payload_hash = event.payload_hash()
        if key not in seen:
            seen[key] = payload_hash
            to_queue.append(position)
            results.append(QueuedEvent(index=position, event_id=event.event_id, status="queued"))
        elif seen[key] == payload_hash:
            results.append(QueuedEvent(index=position, event_id=event.event_id, status="duplicate"))
        else:
            results.append(
                QueuedEvent(
                    index=position,
                    event_id=event.event_id,
                    status="rejected",
                    error=ErrorCode.EVENT_ID_REUSED,
                    message="event_id was already used for a different event (its payload differs)",
                )
            )
    return to_queue, results


def _event_json(event: ExposureEvent | ConversionEvent) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude_none=True)


def encode(events: Sequence[ExposureEvent | ConversionEvent], received_at: datetime) -> list[str]:
    """The events as queue message bodies, in order, each at most MAX_QUEUE_MESSAGE_BYTES."""
    stamp = received_at.astimezone(UTC).isoformat()
    envelope = len(json.dumps({"v": VERSION, "received_at": stamp, "events": []}))
    bodies: list[str] = []
    current: list[str] = []
    size = envelope
    for event in events:
        text = json.dumps(_event_json(event), separators=(",", ":"), ensure_ascii=False)
        extra = len(text.encode()) + 1
        if current and size + extra > MAX_QUEUE_MESSAGE_BYTES:
            bodies.append(_body(stamp, current))
            current, size = [], envelope
        current.append(text)
        size += extra
    if current:
        bodies.append(_body(stamp, current))
    return bodies


def _body(stamp: str, events: list[str]) -> str:
    return f'{{"v":{VERSION},"received_at":{json.dumps(stamp)},"events":[{",".join(events)}]}}'


def decode(body: str) -> Message:
    """A queue message body back into events (ValueError or pydantic's ValidationError if poisoned)."""
    data = json.loads(body)
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise ValueError("not a buffered-ingestion message of this version")
    received_at = datetime.fromisoformat(str(data["received_at"]))
    events = _EVENTS.validate_python(data["events"])
    if not 1 <= len(events) <= MAX_BATCH_EVENTS:
        raise ValueError("a message holds 1 to MAX_BATCH_EVENTS events")
    return Message(received_at=received_at, events=events)
