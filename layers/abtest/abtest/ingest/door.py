"""The door of buffered ingestion: what POST /events and POST /experiments/conversions do when
INGEST_MODE=buffered. The request was validated by its model (shape and limits, as in direct mode);
here in-batch copies are decided, the rest is queued with the time it arrived, and the answer (202)
names every event id, whose outcome the writer records (GET /api/v1/events/outcome)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from abtest import wiring
from abtest.domain.events import ConversionEvent, ConversionIn, ExposureEvent
from abtest.errors import ErrorCode, NotFound
from abtest.ingest.messages import QueuedBatch, QueuedConversion, admit, conversion_event, encode
from abtest.settings import get_settings


class EventOutcome(BaseModel):
    kind: str = Field(description="exposure or conversion")
    status: str = Field(description="accepted, duplicate or rejected, as in a direct batch's answer")
    error: str | None = None
    message: str | None = None
    decided_at: datetime


class EventOutcomes(BaseModel):
    """What the writer decided for a queued event id (one entry per kind sent under that id)."""

    experiment_id: UUID
    event_id: str
    outcomes: list[EventOutcome]


def buffered() -> bool:
    """Whether events go through the queue (INGEST_MODE=buffered)."""
    return get_settings().ingest_mode == "buffered"


def queue_batch(events: list[ExposureEvent | ConversionEvent]) -> QueuedBatch:
    positions, results = admit(events)
    wiring.event_queue().send(encode([events[p] for p in positions], datetime.now(UTC)))
    return QueuedBatch(
        queued=len(positions),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=results,
    )


def queue_conversion(body: ConversionIn) -> QueuedConversion:
    event = conversion_event(body)
    wiring.event_queue().send(encode([event], datetime.now(UTC)))
    return QueuedConversion(experiment_id=event.experiment_id, event_id=event.event_id)


def outcomes(experiment_id: UUID, event_id: str) -> EventOutcomes:
    rows: list[dict[str, Any]] = wiring.ingest().outcomes(experiment_id, event_id)
    if not rows:
        raise NotFound(
            "no outcome recorded for this event id (yet): a queued event is usually decided within "
            "seconds; an event sent in direct mode has none",
            code=ErrorCode.EVENT_OUTCOME_NOT_FOUND,
            field="event_id",
        )
    return EventOutcomes(
        experiment_id=experiment_id,
        event_id=event_id,
        outcomes=[EventOutcome.model_validate(row) for row in rows],
    )
