"""Digests: a scheduled summary of the running experiments (pure).

A subscription with `"digest": {"every": "day" | "week", "hour_utc": H}` gets one at H:00 UTC every day,
or every Monday. `latest_slot` is the most recent such time; a digest is queued once per slot. The same
content is the page at `GET /api/v1/digest`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from abtest.domain.alerts import Alert, DigestSchedule


def latest_slot(schedule: DigestSchedule, now: datetime) -> datetime:
    """The most recent time at or before `now` a digest of `schedule` was due."""
    now = now.astimezone(UTC)
    slot = now.replace(hour=schedule.hour_utc, minute=0, second=0, microsecond=0)
    if slot > now:
        slot -= timedelta(days=1)
    if schedule.every == "week":
        slot -= timedelta(days=slot.weekday())  # back to Monday (weekday 0), same hour
    return slot


def period_start(schedule: DigestSchedule | None, now: datetime) -> datetime:
    """Where a digest's period begins: one day or one week before `now`."""
    return now - (
        timedelta(days=7) if schedule is not None and schedule.every == "week" else timedelta(days=1)
    )


class DigestExperiment(BaseModel):
    """One running experiment in a digest."""

    id: UUID
    name: str
    status: str
    days_running: float | None
    users: int
    headline: str = Field(description="The decision, the metrics that reached significance, or why none")
    health: list[str] = Field(description="Empty when healthy: srm_detected, no_exposures, ...")
    sequential_srm_p_value: float | None
    alerts: int = Field(description="Alerts of the experiment in the period")


class Digest(BaseModel):
    """What a digest delivery carries as `data`, and what the digest page shows."""

    period_start: datetime
    period_end: datetime
    experiments: list[DigestExperiment]
    experiments_truncated: bool
    alert_counts: dict[str, int]
    alerts: list[Alert]


HEALTH_KINDS = ("srm_detected", "no_exposures", "experiment_failed_rollup", "guardrail_breached")


def headline(decision: Any, significant: list[str]) -> str:
    """The line a digest shows for an experiment's result."""
    if decision is not None:
        if isinstance(decision, dict):
            return "decision: " + ", ".join(f"{key} {value}" for key, value in decision.items())
        return f"decision: {decision}"
    if significant:
        return "significant: " + ", ".join(sorted(significant))
    return "no significant result yet"
