"""Buffered ingestion's writes: a queued message's events stored as a batch (the same statement and
rules as POST /events), and each event's outcome recorded, in one transaction; outcomes read by id."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from abtest.domain.events import ConversionEvent, EventResult, ExposureEvent
from abtest.limits import INGEST_OUTCOME_RETENTION_DAYS
from abtest.storage.database import Connection, Database
from abtest.storage.events import EventRepository

T = TypeVar("T")

_RECORD_OUTCOMES = """
INSERT INTO ingest_outcomes (experiment_id, kind, event_id, status, error, message, queue_message_id)
SELECT * FROM unnest(%(experiment_id)s::uuid[], %(kind)s::text[], %(event_id)s::text[], %(status)s::text[],
                     %(error)s::text[], %(message)s::text[], %(queue_message_id)s::text[])
ON CONFLICT (experiment_id, event_id, kind) DO NOTHING
"""

_READ_OUTCOMES = """
SELECT experiment_id, kind, event_id, status, error, message, decided_at FROM ingest_outcomes
WHERE experiment_id = %(experiment_id)s AND event_id = %(event_id)s ORDER BY kind
"""

_PRUNE = f"""
DELETE FROM ingest_outcomes WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM ingest_outcomes
    WHERE decided_at < now() - interval '{INGEST_OUTCOME_RETENTION_DAYS} days' LIMIT 1000))
"""


class _OnConnection:
    """A Database stand-in that runs every unit of work on one connection (inside the caller's
    transaction), so the batch and its outcomes commit together."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def run(self, work: Callable[[Connection], T], **_options: Any) -> T:
        return work(self._conn)


class IngestRepository:
    """Stores queued events and their outcomes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self,
        events: Sequence[ExposureEvent | ConversionEvent],
        received_at: datetime,
        queue_message_id: str | None = None,
    ) -> list[EventResult]:
        """Store the events as one batch and their outcomes (the first outcome of an event stays).

        Replaying the message changes nothing: its events come back as duplicates, and their
        recorded outcomes are kept."""

        def work(conn: Connection) -> list[EventResult]:
            events_here = EventRepository(_OnConnection(conn))  # type: ignore[arg-type]
            results = events_here.record_batch(events, received_at=received_at)
            columns: dict[str, list[Any]] = {
                "experiment_id": [],
                "kind": [],
                "event_id": [],
                "status": [],
                "error": [],
                "message": [],
                "queue_message_id": [],
            }
            for result in results:
                event = events[result.index]
                columns["experiment_id"].append(event.experiment_id)
                columns["kind"].append(event.type)
                columns["event_id"].append(event.event_id)
                columns["status"].append(result.status)
                columns["error"].append(result.error)
                columns["message"].append(result.message)
                columns["queue_message_id"].append(queue_message_id)
            conn.execute(_RECORD_OUTCOMES, columns)
            return results

        return self._db.run(work)

    def outcomes(self, experiment_id: UUID, event_id: str) -> list[dict[str, Any]]:
        """The recorded outcomes of an event id (one per kind: exposure, conversion)."""
        params = {"experiment_id": experiment_id, "event_id": event_id}
        return self._db.run(lambda conn: list(conn.execute(_READ_OUTCOMES, params)), transaction=False)

    def existing_experiments(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of these experiment ids name an experiment (the door's check)."""
        rows = self._db.run(
            lambda conn: list(conn.execute("SELECT id FROM experiments WHERE id = ANY(%s)", (list(ids),))),
            transaction=False,
        )
        return {row["id"] for row in rows}

    def prune(self) -> int:
        """Forget outcomes older than the retention, a thousand at a time; the number removed."""
        return self._db.run(lambda conn: conn.execute(_PRUNE).rowcount, transaction=False)
