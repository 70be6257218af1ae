"""Events: exposures and conversions as clients send them (alone or in a batch), as stored, and what
became of each; the payload hash that ties an event_id to what it stands for."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from abtest.domain.fields import Context, Metadata, StrictInput, UserId
from abtest.limits import (
    EARLIEST_EVENT,
    MAX_BATCH_EVENTS,
    MAX_CLOCK_SKEW,
    MAX_CONVERSION_VALUE,
    storable_text,
)

METRIC_NAME_PATTERN = r"^[a-z][a-z0-9_.]*$"

MetricName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=METRIC_NAME_PATTERN,
        description="Lower-case letters, digits, '_' and '.', starting with a letter",
    ),
]
EventId = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(storable_text)]
Value = Annotated[
    float,
    Field(
        strict=True,
        allow_inf_nan=False,
        ge=-MAX_CONVERSION_VALUE,
        le=MAX_CONVERSION_VALUE,
        description=f"A JSON number with |value| <= {MAX_CONVERSION_VALUE:.0e}",
    ),
]


def _event_time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # no offset given: the API's times are UTC
        value = value.replace(tzinfo=UTC)
    if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise ValueError("timestamp is in the future")
    if value < EARLIEST_EVENT:
        raise ValueError(f"timestamp is before {EARLIEST_EVENT.date().isoformat()}")
    return value


def _iso_text(value: Any) -> Any:
    # pydantic reads numbers as Unix times (1e12 even as milliseconds): refused, only ISO 8601 text.
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("timestamp must be an ISO 8601 string such as 2026-01-02T03:04:05Z")
    return value


Timestamp = Annotated[
    datetime | None,
    BeforeValidator(_iso_text),
    AfterValidator(_event_time),
    Field(description="When it happened (ISO 8601 text; UTC if no offset); default: when received"),
]


# json.dumps(sort_keys=True, separators=(",", ":"), allow_nan=False), built once: a batch hashes up to
# 1,000 events and json.dumps would build this encoder for each of them.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def event_payload_hash(
    user_id: str,
    timestamp: datetime | None,
    payload: dict[str, Any] | None,
    metric_name: str | None = None,
    value: float | None = None,
) -> str:
    """What an event_id stands for: a retry must send the same (same instant, same JSON, same value),
    or it is a different event under a used id. Equal for a conversion sent alone or in a batch."""
    canonical = _CANONICAL_JSON.encode(
        {
            "user_id": user_id,
            "timestamp": timestamp.astimezone(UTC).isoformat() if timestamp is not None else None,
            "payload": payload,
            "metric_name": metric_name,
            "value": float(value) if value is not None else None,
        }
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class ConversionIn(StrictInput):
    """Body of POST /api/v1/experiments/conversions."""

    experiment_id: UUID
    user_id: UserId
    metric_name: MetricName
    value: Value = 1.0
    metadata: Metadata | None = None
    event_id: EventId | None = Field(
        default=None, description="Client id for idempotency: the same event_id is stored once"
    )
    timestamp: Timestamp = None

    def payload_hash(self) -> str:
        return event_payload_hash(self.user_id, self.timestamp, self.metadata, self.metric_name, self.value)


class ExposureEvent(StrictInput):
    """An exposure in a batch: the user saw their assigned variant."""

    type: Literal["exposure"]
    experiment_id: UUID
    user_id: UserId
    event_id: EventId
    timestamp: Timestamp = None
    context: Context | None = None

    def payload_hash(self) -> str:
        return event_payload_hash(self.user_id, self.timestamp, self.context)


class ConversionEvent(StrictInput):
    """A conversion in a batch."""

    type: Literal["conversion"]
    experiment_id: UUID
    user_id: UserId
    event_id: EventId
    metric_name: MetricName
    value: Value = 1.0
    timestamp: Timestamp = None
    metadata: Metadata | None = None

    def payload_hash(self) -> str:
        return event_payload_hash(self.user_id, self.timestamp, self.metadata, self.metric_name, self.value)


BatchEvent = Annotated[ExposureEvent | ConversionEvent, Field(discriminator="type")]


class EventBatch(StrictInput):
    """Body of POST /api/v1/events."""

    events: list[BatchEvent] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class Conversion(BaseModel):
    """A stored conversion."""

    id: int
    experiment_id: UUID
    variant_id: UUID | None = Field(
        description="The user's variant; null for a holdout conversion (holdout_conversion true)"
    )
    user_id: str
    metric_name: str
    value: float
    event_id: str | None
    metadata: dict[str, Any] | None
    occurred_at: datetime
    received_at: datetime
    holdout_conversion: bool = Field(
        default=False,
        description="true: the user has no assignment and is a member of a running holdout covering the "
        "experiment's surface; stored for the holdout's results only",
    )


class EventResult(BaseModel):
    """What became of one event of a batch."""

    index: int
    event_id: str
    status: Literal["accepted", "duplicate", "rejected"]
    error: str | None = None
    message: str | None = None


class BatchResult(BaseModel):
    """Answer to a batch: counts, and one result per event in the order sent."""

    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]
