"""The door of buffered ingestion: what POST /events and POST /experiments/conversions do when
INGEST_MODE=buffered. The request was validated by its model (shape and limits, as in direct mode);
here in-batch copies are decided and events for an experiment that does not exist are refused (from a
per-container cache of known experiment ids: a warm door reads nothing from the database), the rest
is queued with the time it arrived, and the answer (202) names every event id, whose outcome the
writer records (GET /api/v1/events/outcome). What may change (an experiment's status, a user's
assignment, an event id stored before) is left to the writer, so that both modes decide alike."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from abtest import wiring
from abtest.domain.events import ConversionEvent, ConversionIn, ExposureEvent
from abtest.errors import ErrorCode, NotFound, Unavailable, experiment_not_found
from abtest.ingest.messages import (
    QueuedBatch,
    QueuedConversion,
    QueuedEvent,
    admit,
    conversion_event,
    encode,
)
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


class KnownExperiments:
    """Experiment ids seen to exist, each trusted for `ttl` seconds (wall clock). An id not known is
    looked up (live), never remembered as missing: an experiment created a moment ago is found."""

    MAX_IDS = 10_000

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._seen: dict[UUID, float] = {}
        self._lock = threading.Lock()

    def missing(self, ids: Iterable[UUID]) -> set[UUID]:
        now = time.time()
        with self._lock:
            unknown = {i for i in ids if not 0 <= now - self._seen.get(i, -1e18) < self._ttl}
        if not unknown:
            return set()
        try:
            found = wiring.ingest().existing_experiments(sorted(unknown))
        except Unavailable:
            return set()  # fail open: the door keeps accepting, the writer decides (and retries)
        with self._lock:
            if len(self._seen) > self.MAX_IDS:
                self._seen.clear()
            self._seen.update(dict.fromkeys(found, now))
        return unknown - found


_known: KnownExperiments | None = None


def known_experiments() -> KnownExperiments:
    global _known
    if _known is None:
        _known = KnownExperiments(get_settings().experiment_cache_ttl_seconds)
    return _known


def forget() -> None:
    """Drop the known experiment ids (SnapStart's reset)."""
    global _known
    _known = None


def buffered() -> bool:
    """Whether events go through the queue (INGEST_MODE=buffered)."""
    return get_settings().ingest_mode == "buffered"


def queue_batch(events: list[ExposureEvent | ConversionEvent]) -> QueuedBatch:
    positions, results = admit(events)
    missing = known_experiments().missing({events[p].experiment_id for p in positions})
    if missing:
        for p in [p for p in positions if events[p].experiment_id in missing]:
            results[p] = QueuedEvent(
                index=p,
                event_id=events[p].event_id,
                status="rejected",
                error=ErrorCode.EXPERIMENT_NOT_FOUND,
                message="no experiment with this id",
            )
        positions = [p for p in positions if events[p].experiment_id not in missing]
    if positions:
        wiring.event_queue().send(encode([events[p] for p in positions], datetime.now(UTC)))
    return QueuedBatch(
        queued=len(positions),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=results,
    )


def queue_conversion(body: ConversionIn) -> QueuedConversion:
    if known_experiments().missing([body.experiment_id]):
        raise experiment_not_found(body.experiment_id)
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
