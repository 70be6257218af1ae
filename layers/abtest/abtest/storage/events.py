"""Conversions and batches of exposures and conversions, each written in one statement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from abtest.domain.event_times import MESSAGES, EventTimeError
from abtest.domain.events import Conversion, ConversionEvent, ConversionIn, EventResult, ExposureEvent
from abtest.domain.experiments import Status
from abtest.domain.holdouts import HOLDING_OUT
from abtest.domain.lifecycle import ACCEPTING, CONVERTING, EXPOSING
from abtest.errors import Conflict, ErrorCode, InvalidInput, experiment_not_found
from abtest.limits import MAX_METRICS_PER_EXPERIMENT
from abtest.storage.database import Connection, Database
from abtest.storage.event_times import stored_at_sql, time_error_sql
from abtest.storage.experiments import statuses_sql

_CONVERSION_COLUMNS = (
    "id, experiment_id, variant_id, user_id, metric_name, value, event_id, metadata, occurred_at, received_at"
)

# Holdout conversions: the columns a Conversion answer needs (no variant), and the test that the user is a
# recorded member of a running holdout covering the experiment's surface ({user}, {experiment}: SQL).
_HOLDOUT_CONVERSION_COLUMNS = (
    "id, experiment_id, NULL::uuid AS variant_id, user_id, metric_name, value, event_id, metadata,"
    " occurred_at, received_at, true AS holdout_conversion"
)
_HELD_MEMBER = f"""
        SELECT 1 FROM holdout_members hm JOIN holdouts h ON h.id = hm.holdout_id
        WHERE hm.user_id = {{user}} AND h.status IN {statuses_sql(HOLDING_OUT)}
          AND (h.surfaces IS NULL OR
               (SELECT surface FROM experiments WHERE id = {{experiment}}) = ANY (h.surfaces))"""
_HELD_ONE = _HELD_MEMBER.format(user="%(user_id)s", experiment="%(experiment_id)s")
_HELD_BATCH = _HELD_MEMBER.format(user="c.user_id", experiment="c.experiment_id")

# The experiment's status, the user's assignment and the insert in one round trip. Conversions count
# while the experiment runs or is paused (late conversions of exposed users), never once completed.
_RECORD_CONVERSION = f"""
WITH experiment AS (
    -- on_time: the event-time rule (abtest.domain.event_times); a conversion is never moved.
    SELECT status,
           {time_error_sql("'conversion'", "COALESCE(%(occurred_at)s, now())", "started_at", "NULL")}
             IS NULL AS on_time
    FROM experiments WHERE id = %(experiment_id)s
), assigned AS (
    SELECT variant_id FROM assignments WHERE experiment_id = %(experiment_id)s AND user_id = %(user_id)s
), forced AS (
    -- A forced user's conversions go to override_conversions, which the analysis never reads.
    SELECT variant_id FROM experiment_overrides
    WHERE experiment_id = %(experiment_id)s AND user_id = %(user_id)s
), metric AS (
    -- A known metric name, or room for one more (MAX_METRICS_PER_EXPERIMENT).
    SELECT EXISTS (SELECT 1 FROM experiment_metrics
                   WHERE experiment_id = %(experiment_id)s AND metric_name = %(metric_name)s)
           OR (SELECT count(*) FROM experiment_metrics WHERE experiment_id = %(experiment_id)s)
              < {MAX_METRICS_PER_EXPERIMENT} AS allowed
), elsewhere AS (
    -- An event_id names one event per experiment, in whichever of the three tables holds it.
    SELECT EXISTS (SELECT 1 FROM override_conversions
                   WHERE experiment_id = %(experiment_id)s AND event_id = %(event_id)s) AS forced,
           EXISTS (SELECT 1 FROM holdout_conversions
                   WHERE experiment_id = %(experiment_id)s AND event_id = %(event_id)s) AS held,
           EXISTS (SELECT 1 FROM conversions
                   WHERE experiment_id = %(experiment_id)s AND event_id = %(event_id)s) AS analysed
), inserted AS (
    INSERT INTO conversions (experiment_id, variant_id, user_id, metric_name, value, event_id, metadata,
                             occurred_at, payload_hash)
    SELECT %(experiment_id)s, variant_id, %(user_id)s, %(metric_name)s, %(value)s, %(event_id)s,
           %(metadata)s, COALESCE(%(occurred_at)s, now()), %(payload_hash)s
    FROM assigned
    WHERE (SELECT status FROM experiment) IN {statuses_sql(CONVERTING)} AND (SELECT on_time FROM experiment)
      AND (SELECT allowed FROM metric)
      AND NOT EXISTS (SELECT 1 FROM forced)
      AND NOT (SELECT forced OR held FROM elsewhere)
    ON CONFLICT (experiment_id, event_id) DO NOTHING
    RETURNING {_CONVERSION_COLUMNS}
), forced_inserted AS (
    INSERT INTO override_conversions (experiment_id, variant_id, user_id, metric_name, value, event_id,
                                      metadata, occurred_at, payload_hash)
    SELECT %(experiment_id)s, variant_id, %(user_id)s, %(metric_name)s, %(value)s, %(event_id)s,
           %(metadata)s, COALESCE(%(occurred_at)s, now()), %(payload_hash)s
    FROM forced
    WHERE (SELECT status FROM experiment) IN {statuses_sql(CONVERTING)} AND (SELECT on_time FROM experiment)
      AND NOT (SELECT analysed OR held FROM elsewhere)
    ON CONFLICT (experiment_id, event_id) DO NOTHING
    RETURNING {_CONVERSION_COLUMNS}
), held AS (
    -- No assignment and no override, but a member of a running holdout covering the experiment's
    -- surface: stored as a holdout conversion, for the holdout's results only.
    SELECT true AS held
    WHERE NOT EXISTS (SELECT 1 FROM assigned) AND NOT EXISTS (SELECT 1 FROM forced)
      AND EXISTS ({_HELD_ONE})
), held_inserted AS (
    INSERT INTO holdout_conversions (experiment_id, user_id, metric_name, value, event_id, metadata,
                                     occurred_at, payload_hash)
    SELECT %(experiment_id)s, %(user_id)s, %(metric_name)s, %(value)s, %(event_id)s,
           %(metadata)s, COALESCE(%(occurred_at)s, now()), %(payload_hash)s
    FROM held
    WHERE (SELECT status FROM experiment) IN {statuses_sql(CONVERTING)} AND (SELECT on_time FROM experiment)
      AND (SELECT allowed FROM metric)
      AND NOT (SELECT analysed OR forced FROM elsewhere)
    ON CONFLICT (experiment_id, event_id) DO NOTHING
    RETURNING {_HOLDOUT_CONVERSION_COLUMNS}
), registered AS (
    INSERT INTO experiment_metrics (experiment_id, metric_name)
    SELECT experiment_id, metric_name FROM inserted
    UNION SELECT experiment_id, metric_name FROM held_inserted
    ON CONFLICT DO NOTHING
)
SELECT (SELECT status FROM experiment) AS status,
       (SELECT on_time FROM experiment) AS on_time,
       (SELECT variant_id FROM assigned) AS assigned_variant,
       (SELECT allowed FROM metric) AS metric_allowed,
       COALESCE((SELECT to_jsonb(inserted) FROM inserted),
                (SELECT to_jsonb(held_inserted) FROM held_inserted)) AS conversion,
       (SELECT to_jsonb(forced_inserted) FROM forced_inserted) AS forced_conversion,
       EXISTS (SELECT 1 FROM held) AS held
"""

# A whole batch in one statement: one array per column in (sent in binary, `%(name)b`: the server
# reads them without parsing text, faster than one JSON document or a VALUES list), one row out per
# event that was not stored now.
_RECORD_BATCH = f"""
WITH input AS (
    SELECT *
    FROM unnest(%(position)b::int[], %(kind)b::text[], %(experiment_id)b::uuid[], %(user_id)b::text[],
                %(event_id)b::text[], %(occurred_at)b::timestamptz[], %(metric_name)b::text[],
                %(value)b::float8[], %(payload)b::jsonb[], %(payload_hash)b::text[])
         AS t(position, kind, experiment_id, user_id, event_id, occurred_at, metric_name, value, payload,
              payload_hash)
), joined AS (
    SELECT i.*, e.status, e.started_at, a.variant_id, a.assigned_at, o.forced_variant
    FROM input i
    LEFT JOIN experiments e ON e.id = i.experiment_id
    -- A primary-key probe per event: a plain join lets the planner hash-join a full scan of assignments.
    LEFT JOIN LATERAL (
        SELECT variant_id, assigned_at FROM assignments
        WHERE experiment_id = i.experiment_id AND user_id = i.user_id LIMIT 1
    ) a ON true
    -- Forced users' events go to the override tables, which the analysis never reads.
    LEFT JOIN LATERAL (
        SELECT variant_id AS forced_variant FROM experiment_overrides
        WHERE experiment_id = i.experiment_id AND user_id = i.user_id LIMIT 1
    ) o ON true
), checked AS (
    -- The event-time rule (abtest.domain.event_times): refused (time_error) or the time to store.
    SELECT j.*, {time_error_sql("j.kind", "j.at", "j.started_at", "j.assigned_at")} AS time_error,
           {stored_at_sql("j.kind", "j.at", "j.assigned_at")} AS stored_at
    FROM (SELECT joined.*, COALESCE(joined.occurred_at, now()) AS at FROM joined) j
), new_exposures AS (
    INSERT INTO exposures (experiment_id, variant_id, user_id, event_id, context, occurred_at, payload_hash)
    SELECT experiment_id, variant_id, user_id, event_id, payload, stored_at, payload_hash
    FROM checked
    WHERE kind = 'exposure' AND status IN {statuses_sql(EXPOSING)} AND variant_id IS NOT NULL
      AND forced_variant IS NULL AND time_error IS NULL
      AND NOT EXISTS (SELECT 1 FROM override_exposures x
                      WHERE x.experiment_id = checked.experiment_id AND x.event_id = checked.event_id)
    ON CONFLICT (experiment_id, event_id) DO NOTHING
    RETURNING experiment_id, event_id
), new_override_exposures AS (
    INSERT INTO override_exposures (experiment_id, variant_id, user_id, event_id, context, occurred_at,
                                    payload_hash)
    SELECT experiment_id, forced_variant, user_id, event_id, payload, stored_at,
           payload_hash
    FROM checked
    WHERE kind = 'exposure' AND status IN {statuses_sql(EXPOSING)} AND forced_variant IS NOT NULL
      AND time_error IS NULL
      AND NOT EXISTS (SELECT 1 FROM exposures x
                      WHERE x.experiment_id = checked.experiment_id AND x.event_id = checked.event_id)
    ON CONFLICT (experiment_id, event_id) DO NOTHING
    RETURNING experiment_id, event_id
), fresh_metrics AS (
    -- Metric names new to their experiment, numbered in batch order, and the experiment's count.
    SELECT f.experiment_id, f.metric_name,
           row_number() OVER (PARTITION BY f.experiment_id ORDER BY f.first) +
           (SELECT count(*) FROM experiment_metrics m WHERE m.experiment_id = f.experiment_id) AS rank
    FROM (
        SELECT experiment_id, metric_name, min(position) AS first FROM checked c
        WHERE kind = 'conversion' AND forced_variant IS NULL AND time_error IS NULL AND NOT EXISTS (
            SELECT 1 FROM experiment_metrics m
            WHERE m.experiment_id = c.experiment_id AND m.metric_name = c.metric_name)
        GROUP BY experiment_id, metric_name
    ) f
), refused_metrics AS (
    SELECT experiment_id, metric_name FROM fresh_metrics WHERE rank > {MAX_METRICS_PER_EXPERIMENT}
), new_conversions AS (
    INSERT INTO conversions (experiment_id, variant_id, user_id, metric_name, value, event_id, metadata,
                             occurred_at, payload_hash)
    SELECT experiment_id, variant_id, user_id, metric_name, value, event_id, payload,
           stored_at, payload_hash
    FROM checked
    WHERE kind = 'conversion' AND status IN {statuses_sql(CONVERTING)} AND variant_id IS NOT NULL
      AND time_error IS NULL
      AND (experiment_id, metric_name) NOT IN (SELECT experiment_id, metric_name FROM refused_metrics)
      AND forced_variant IS NULL
      AND NOT EXISTS (SELECT 1 FROM override_conversions x
                      WHERE x.experiment_id = checked.experiment_id AND x.event_id = checked.event_id)
      AND NOT EXISTS (SELECT 1 FROM holdout_conversions hc
                      WHERE hc.experiment_id = checked.experiment_id AND hc.event_id = checked.event_id)
    ON CONFLICT (experiment_id, event_id) DO NOTHING
    RETURNING experiment_id, event_id, metric_name
), held_events AS (
    -- Conversions of users without an assignment who are members of a running holdout covering the
    -- experiment's surface: stored as holdout conversions, for the holdout's results only.
    SELECT c.* FROM checked c
    WHERE c.kind = 'conversion' AND c.variant_id IS NULL AND c.forced_variant IS NULL
      AND c.status IN {statuses_sql(CONVERTING)} AND c.time_error IS NULL
      AND EXISTS ({_HELD_BATCH})
), new_holdout_conversions AS (
    INSERT INTO holdout_conversions (experiment_id, user_id, metric_name, value, event_id, metadata,
                                     occurred_at, payload_hash)
    SELECT experiment_id, user_id, metric_name, value, event_id, payload, stored_at,
           payload_hash
    FROM held_events h
    WHERE (experiment_id, metric_name) NOT IN (SELECT experiment_id, metric_name FROM refused_metrics)
      AND NOT EXISTS (SELECT 1 FROM conversions c
                      WHERE c.experiment_id = h.experiment_id AND c.event_id = h.event_id)
      AND NOT EXISTS (SELECT 1 FROM override_conversions x
                      WHERE x.experiment_id = h.experiment_id AND x.event_id = h.event_id)
    ON CONFLICT (experiment_id, event_id) DO NOTHING
    RETURNING experiment_id, event_id, metric_name
), new_override_conversions AS (
    INSERT INTO override_conversions (experiment_id, variant_id, user_id, metric_name, value, event_id,
                                      metadata, occurred_at, payload_hash)
    SELECT experiment_id, forced_variant, user_id, metric_name, value, event_id, payload,
           stored_at, payload_hash
    FROM checked
    WHERE kind = 'conversion' AND status IN {statuses_sql(CONVERTING)} AND forced_variant IS NOT NULL
      AND time_error IS NULL
      AND NOT EXISTS (SELECT 1 FROM conversions x
                      WHERE x.experiment_id = checked.experiment_id AND x.event_id = checked.event_id)
      AND NOT EXISTS (SELECT 1 FROM holdout_conversions x
                      WHERE x.experiment_id = checked.experiment_id AND x.event_id = checked.event_id)
    ON CONFLICT (experiment_id, event_id) DO NOTHING
    RETURNING experiment_id, event_id
), registered AS (
    INSERT INTO experiment_metrics (experiment_id, metric_name)
    SELECT experiment_id, metric_name FROM new_conversions
    UNION SELECT experiment_id, metric_name FROM new_holdout_conversions
    ON CONFLICT DO NOTHING
)
-- Only the events that were NOT stored now (usually none): an event without a row was accepted. This
-- keeps the answer small, and looks up a stored payload hash only for an event_id already taken.
SELECT c.position, c.kind, c.status, (c.variant_id IS NOT NULL OR c.forced_variant IS NOT NULL) AS assigned,
       (c.kind = 'conversion'
        AND (c.experiment_id, c.event_id) IN (SELECT experiment_id, event_id FROM held_events)) AS held,
       -- An event_id stored before with a different payload (rows from before payload hashes: NULL).
       COALESCE(stored.payload_hash <> c.payload_hash, false) AS reused,
       (c.kind = 'conversion' AND c.forced_variant IS NULL
        AND (c.experiment_id, c.metric_name) IN (SELECT * FROM refused_metrics)) AS too_many_metrics,
       c.time_error
FROM checked c
LEFT JOIN new_exposures x
       ON c.kind = 'exposure' AND x.experiment_id = c.experiment_id AND x.event_id = c.event_id
LEFT JOIN new_conversions v
       ON c.kind = 'conversion' AND v.experiment_id = c.experiment_id AND v.event_id = c.event_id
LEFT JOIN new_override_exposures ox
       ON c.kind = 'exposure' AND ox.experiment_id = c.experiment_id AND ox.event_id = c.event_id
LEFT JOIN new_override_conversions ov
       ON c.kind = 'conversion' AND ov.experiment_id = c.experiment_id AND ov.event_id = c.event_id
LEFT JOIN new_holdout_conversions hv
       ON c.kind = 'conversion' AND hv.experiment_id = c.experiment_id AND hv.event_id = c.event_id
LEFT JOIN LATERAL (
    SELECT payload_hash FROM exposures
    WHERE c.kind = 'exposure' AND experiment_id = c.experiment_id AND event_id = c.event_id
    UNION ALL
    SELECT payload_hash FROM conversions
    WHERE c.kind = 'conversion' AND experiment_id = c.experiment_id AND event_id = c.event_id
    UNION ALL
    SELECT payload_hash FROM override_exposures
    WHERE c.kind = 'exposure' AND experiment_id = c.experiment_id AND event_id = c.event_id
    UNION ALL
    SELECT payload_hash FROM override_conversions
    WHERE c.kind = 'conversion' AND experiment_id = c.experiment_id AND event_id = c.event_id
    UNION ALL
    SELECT payload_hash FROM holdout_conversions
    WHERE c.kind = 'conversion' AND experiment_id = c.experiment_id AND event_id = c.event_id
) stored ON x.event_id IS NULL AND v.event_id IS NULL AND ox.event_id IS NULL AND ov.event_id IS NULL
        AND hv.event_id IS NULL
WHERE x.event_id IS NULL AND v.event_id IS NULL AND ox.event_id IS NULL AND ov.event_id IS NULL
  AND hv.event_id IS NULL
ORDER BY c.position
"""


_BATCH_COLUMNS = (
    "position",
    "kind",
    "experiment_id",
    "user_id",
    "event_id",
    "occurred_at",
    "metric_name",
    "value",
    "payload",
    "payload_hash",
)


@dataclass(frozen=True)
class RecordedConversion:
    conversion: Conversion
    replayed: bool  # the same event_id was already stored: this is the stored conversion


def _not_assigned(user_id: str) -> InvalidInput:
    return InvalidInput(
        f"user {user_id!r} is not assigned to this experiment; conversions count only for users "
        "enrolled through /recommendations or /assignments",
        code=ErrorCode.USER_NOT_ASSIGNED,
        field="user_id",
    )


def _too_many_metrics() -> InvalidInput:
    return InvalidInput(
        f"the experiment already has {MAX_METRICS_PER_EXPERIMENT} metric names; this one would be one more",
        code=ErrorCode.TOO_MANY_METRICS,
        field="metric_name",
    )


def _before_start() -> InvalidInput:
    return InvalidInput(
        MESSAGES[EventTimeError.BEFORE_START], code=ErrorCode.EVENT_BEFORE_START, field="timestamp"
    )


def _completed() -> Conflict:
    return Conflict(
        "the experiment is completed and accepts no more events",
        code=ErrorCode.EXPERIMENT_COMPLETED,
        field="experiment_id",
    )


class EventRepository:
    """Writes of exposures and conversions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record_conversion(self, new: ConversionIn) -> RecordedConversion:
        """Store a conversion against the user's assigned variant (idempotent by event_id)."""
        params = {
            "experiment_id": new.experiment_id,
            "user_id": new.user_id,
            "metric_name": new.metric_name,
            "value": new.value,
            "event_id": new.event_id,
            "metadata": Jsonb(new.metadata) if new.metadata is not None else None,
            "occurred_at": new.timestamp,
            "payload_hash": new.payload_hash(),
        }

        def work(conn: Connection) -> RecordedConversion:
            row = conn.execute(_RECORD_CONVERSION, params).fetchone()
            assert row is not None  # a SELECT without FROM yields one row
            if row["status"] is None:
                raise experiment_not_found(new.experiment_id)
            if row["conversion"] is not None:
                return RecordedConversion(Conversion.model_validate(row["conversion"]), replayed=False)
            if row["forced_conversion"] is not None:  # a forced user: stored outside the analysis
                return RecordedConversion(Conversion.model_validate(row["forced_conversion"]), replayed=False)
            # A retry of a stored event is answered with it, even once the experiment has completed.
            stored = _stored_replay(conn, new) if new.event_id is not None else None
            if stored is not None:
                return RecordedConversion(stored, replayed=True)
            if row["status"] == Status.COMPLETED:
                raise _completed()
            if not row["on_time"]:
                raise _before_start()
            if (row["assigned_variant"] is not None or row["held"]) and not row["metric_allowed"]:
                raise _too_many_metrics()
            raise _not_assigned(new.user_id)

        # A conversion without event_id cannot be told from its retry: never resent on a dropped link.
        return self._db.run(work, transaction=False, retry=new.event_id is not None)

    def record_batch(
        self, events: Sequence[ExposureEvent | ConversionEvent], *, received_at: datetime | None = None
    ) -> list[EventResult]:
        """Write a batch in one statement; each event is accepted, a duplicate, or rejected alone.

        `received_at` (buffered ingestion: when the door accepted the events) stands for "now" for an
        event sent without a timestamp; the payload hash is still the event's as sent."""
        results: dict[int, EventResult] = {}
        seen: dict[tuple[str, UUID, str], str] = {}
        columns: dict[str, list[Any]] = {name: [] for name in _BATCH_COLUMNS}
        for position, event in enumerate(events):
            key = (event.type, event.experiment_id, event.event_id)
            payload_hash = event.payload_hash()
            if key in seen:  # the same event twice in one batch: the first one counts
                if seen[key] != payload_hash:
                    results[position] = _reused(position, event.event_id)
                else:
                    results[position] = _result(index=position, event_id=event.event_id, status="duplicate")
                continue
            seen[key] = payload_hash
            payload = event.metadata if isinstance(event, ConversionEvent) else event.context
            columns["position"].append(position)
            columns["kind"].append(event.type)
            columns["experiment_id"].append(event.experiment_id)
            columns["user_id"].append(event.user_id)
            columns["event_id"].append(event.event_id)
            columns["occurred_at"].append(event.timestamp or received_at)
            columns["metric_name"].append(event.metric_name if isinstance(event, ConversionEvent) else None)
            columns["value"].append(float(event.value) if isinstance(event, ConversionEvent) else None)
            columns["payload"].append(Jsonb(payload) if payload is not None else None)
            columns["payload_hash"].append(payload_hash)

        def work(conn: Connection) -> list[dict[str, Any]]:
            return list(conn.execute(_RECORD_BATCH, columns))

        rows = self._db.run(work, transaction=False) if columns["position"] else []
        for row in rows:  # the events not stored now; every other one sent was accepted
            position = row["position"]
            results[position] = _batch_result(position, events[position].event_id, row)
        return [
            results[position]
            if position in results
            else _result(index=position, event_id=event.event_id, status="accepted")
            for position, event in enumerate(events)
        ]


def _result(**fields: Any) -> EventResult:
    # Up to a thousand per batch: plain construction (validation of three small fields) is about four
    # times faster than model_construct in pydantic 2.14 (bench/README.md, ingestion).
    return EventResult(**fields)


def _reused(position: int, event_id: str) -> EventResult:
    message = "event_id was already used for a different event (its payload differs)"
    return _result(
        index=position, event_id=event_id, status="rejected", error=ErrorCode.EVENT_ID_REUSED, message=message
    )


def _batch_result(position: int, event_id: str, row: dict[str, Any]) -> EventResult:
    status = Status(row["status"]) if row["status"] is not None else None
    kind = row["kind"]
    if row["reused"]:
        return _reused(position, event_id)
    assigned = row["assigned"] or row["held"]  # a holdout member's conversion needs no assignment
    if row["too_many_metrics"] and status is not None and status in ACCEPTING[kind] and assigned:
        refused = _too_many_metrics()
        return _result(
            index=position, event_id=event_id, status="rejected", error=refused.code, message=refused.message
        )
    if status is None:
        error, message = ErrorCode.EXPERIMENT_NOT_FOUND, "no experiment with this id"
    elif status not in ACCEPTING[kind]:
        error, message = (
            (ErrorCode.EXPERIMENT_COMPLETED, "the experiment is completed")
            if status == Status.COMPLETED
            else (
                ErrorCode.EXPERIMENT_NOT_RUNNING,
                f"the experiment is {status.value}; {kind}s are not accepted",
            )
        )
    elif row["time_error"] is not None:
        time_error = EventTimeError(row["time_error"])
        error, message = ErrorCode(time_error), MESSAGES[time_error]
    elif not assigned:
        error, message = ErrorCode.USER_NOT_ASSIGNED, "the user is not assigned to this experiment"
    else:
        return _result(index=position, event_id=event_id, status="duplicate")
    return _result(index=position, event_id=event_id, status="rejected", error=error, message=message)


def _stored_replay(conn: Connection, new: ConversionIn) -> Conversion | None:
    """The conversion already stored under this event_id (Conflict if it is a different one)."""
    # Forced users' conversions live in override_conversions, holdout members' in holdout_conversions:
    # an event_id is one event in any of the three.
    row = conn.execute(
        f"SELECT {_CONVERSION_COLUMNS}, false AS holdout_conversion, payload_hash FROM conversions"
        " WHERE experiment_id = %(experiment_id)s AND event_id = %(event_id)s"
        f" UNION ALL SELECT {_CONVERSION_COLUMNS}, false AS holdout_conversion, payload_hash"
        " FROM override_conversions WHERE experiment_id = %(experiment_id)s AND event_id = %(event_id)s"
        f" UNION ALL SELECT {_HOLDOUT_CONVERSION_COLUMNS}, payload_hash FROM holdout_conversions"
        " WHERE experiment_id = %(experiment_id)s AND event_id = %(event_id)s LIMIT 1".encode(),
        {"experiment_id": new.experiment_id, "event_id": new.event_id},
    ).fetchone()
    if row is None:
        return None
    stored = Conversion.model_validate(row)
    if row["payload_hash"] is not None:
        differs = row["payload_hash"] != new.payload_hash()
    else:  # stored before payload hashes: compare what can be compared
        differs = (stored.user_id, stored.metric_name, stored.value) != (
            new.user_id,
            new.metric_name,
            new.value,
        )
    if differs:
        raise Conflict(
            "event_id was already used for a different conversion (user, metric, value, metadata or "
            "timestamp differ)",
            code=ErrorCode.EVENT_ID_REUSED,
            field="event_id",
        )
    return stored
