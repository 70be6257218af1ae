"""Alerts: what the service tells people about an experiment, and when (pure; no SQL, no HTTP).

An alert fires once per transition of a condition, never at every rollup: each condition (kind, and a
subject such as a metric name) is stored with whether it held at the last evaluation and, for
`decision_changed`, the value it had; `transitions` compares the new evaluation with the stored one and
returns the alerts to raise. The kinds:

- `srm_detected`: the sequential SRM p-value fell below the threshold (default 0.001); it never rises
  again, so this fires at most once per experiment and period product;
- `decision_changed`: the results carry a `decision` (issue 22) whose value differs from the last one;
- `significance_reached`: without decisions, a metric's conversion or value comparison became
  significant at the experiment's alpha;
- `guardrail_breached`: the results carry guardrail outcomes (`guardrails`, see `guardrail_breaches`)
  and one of them is breached;
- `no_exposures`: a running experiment recorded no exposure for N hours (default 24);
- `experiment_failed_rollup`: the rollup of the experiment failed (its events wait, nothing is lost);
- `digest` and `test` exist only as webhook deliveries, never as stored alerts.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from abtest.limits import MAX_WEBHOOK_DESCRIPTION_LENGTH, MAX_WEBHOOK_URL_LENGTH


class AlertKind(StrEnum):
    """The kinds of stored alerts (a webhook subscribes to any of them)."""

    SRM_DETECTED = "srm_detected"
    DECISION_CHANGED = "decision_changed"
    SIGNIFICANCE_REACHED = "significance_reached"
    GUARDRAIL_BREACHED = "guardrail_breached"
    NO_EXPOSURES = "no_exposures"
    EXPERIMENT_FAILED_ROLLUP = "experiment_failed_rollup"


# Message types a webhook receives besides the alert kinds.
DIGEST_TYPE = "digest"
TEST_TYPE = "test"

# EventBridge detail-type per kind (documented in docs/alerts.md; rules match on them).
DETAIL_TYPES: dict[AlertKind, str] = {
    AlertKind.SRM_DETECTED: "Experiment SRM Detected",
    AlertKind.DECISION_CHANGED: "Experiment Decision Changed",
    AlertKind.SIGNIFICANCE_REACHED: "Experiment Significance Reached",
    AlertKind.GUARDRAIL_BREACHED: "Experiment Guardrail Breached",
    AlertKind.NO_EXPOSURES: "Experiment No Exposures",
    AlertKind.EXPERIMENT_FAILED_ROLLUP: "Experiment Rollup Failed",
}
EVENT_SOURCE = "abtest.alerts"


class Alert(BaseModel):
    """A stored alert with the evidence that raised it."""

    id: UUID
    kind: AlertKind
    experiment_id: UUID | None
    experiment_name: str | None = None
    subject: str = Field(default="", description="What within the experiment, e.g. the metric name")
    evidence: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Condition:
    """One condition as evaluated now: does it hold, with what value (decisions) and evidence."""

    kind: AlertKind
    subject: str
    active: bool
    evidence: dict[str, Any]
    value: Any = None


@dataclass(frozen=True)
class StoredCondition:
    active: bool
    value: Any = None


@dataclass(frozen=True)
class NewAlert:
    """An alert to store (with its outbox row, in the evaluation's transaction)."""

    experiment_id: UUID
    kind: AlertKind
    subject: str
    evidence: dict[str, Any]


def transitions(
    experiment_id: UUID,
    conditions: Iterable[Condition],
    stored: Mapping[tuple[str, str], StoredCondition],
) -> list[NewAlert]:
    """The alerts raised by the conditions that changed since the last evaluation.

    A condition fires when it holds now and did not at the last evaluation (or never was evaluated);
    a decision fires when its value differs from the stored one (the first non-empty decision too).
    A condition that stops holding fires nothing, and fires again if it comes back.
    """
    alerts = []
    for condition in conditions:
        before = stored.get((condition.kind.value, condition.subject))
        if condition.kind is AlertKind.DECISION_CHANGED:
            previous = None if before is None else before.value
            if condition.value is not None and condition.value != previous:
                evidence = {**condition.evidence, "previous": previous}
                alerts.append(NewAlert(experiment_id, condition.kind, condition.subject, evidence))
        elif condition.active and (before is None or not before.active):
            alerts.append(NewAlert(experiment_id, condition.kind, condition.subject, condition.evidence))
    return alerts


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def decision_of(results: Any) -> Any:
    """The results' `decision` (issue 22) as plain JSON, or None when the results carry none."""
    decision = _plain(getattr(results, "decision", None))
    if isinstance(decision, dict):
        # The headline (e.g. {"action": "ship", "variant": "b"}); computed_at-like fields would change
        # at every rollup and fire for nothing.
        return {key: value for key, value in decision.items() if not key.endswith("_at")}
    return decision


def guardrail_breaches(results: Any) -> list[dict[str, Any]]:
    """The hook for guardrail outcomes: `results.guardrails`, when present, is a list (or a mapping by
    metric) of outcomes each with a `metric` name and a boolean `breached` (models or dicts). Returns
    the breached ones as plain JSON, each with its metric."""
    guardrails = _plain(getattr(results, "guardrails", None))
    if guardrails is None:
        return []
    if isinstance(guardrails, dict):
        items = [{"metric": name, **(_plain(item) or {})} for name, item in guardrails.items()]
    else:
        items = [_plain(item) for item in guardrails]
    return [item for item in items if isinstance(item, dict) and item.get("breached") is True]


# --- Webhook subscriptions ---------------------------------------------------------------------------

WEBHOOK_KINDS = tuple(kind.value for kind in AlertKind)


class DigestSchedule(BaseModel):
    """When a subscription gets its digest: every day, or every week on Mondays, at `hour_utc`."""

    model_config = ConfigDict(extra="forbid")

    every: Literal["day", "week"]
    hour_utc: Annotated[int, Field(ge=0, le=23)]


WebhookUrlField = Annotated[str, Field(min_length=1, max_length=MAX_WEBHOOK_URL_LENGTH)]
Description = Annotated[str, Field(max_length=MAX_WEBHOOK_DESCRIPTION_LENGTH)]


def _unique_kinds(kinds: list[AlertKind]) -> list[AlertKind]:
    return sorted(set(kinds), key=WEBHOOK_KINDS.index)


class WebhookCreate(BaseModel):
    """A new subscription: where, which alert kinds, and optionally a digest schedule."""

    model_config = ConfigDict(extra="forbid")

    url: WebhookUrlField
    kinds: list[AlertKind] = Field(
        default_factory=lambda: list(AlertKind), description="Alert kinds to deliver (default: all)"
    )
    digest: DigestSchedule | None = None
    description: Description = ""

    _kinds = field_validator("kinds")(_unique_kinds)


class WebhookUpdate(BaseModel):
    """A change: any field; `enabled: true` re-enables a disabled subscription, `rotate_secret: true`
    issues a new secret (answered once)."""

    model_config = ConfigDict(extra="forbid")

    url: WebhookUrlField | None = None
    kinds: list[AlertKind] | None = None
    digest: DigestSchedule | None = None
    description: Description | None = None
    enabled: bool | None = None
    rotate_secret: bool = False

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, kinds: list[AlertKind] | None) -> list[AlertKind] | None:
        return None if kinds is None else _unique_kinds(kinds)


class Webhook(BaseModel):
    """A subscription as the API shows it: never its secret."""

    id: UUID
    url: str
    kinds: list[AlertKind]
    digest: DigestSchedule | None
    description: str
    enabled: bool
    disabled_reason: str | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(Webhook):
    """The answer of a create or a rotation: the only time the secret is shown."""

    secret: str = Field(description="whsec_...: shown once; keep it to verify signatures")


class Delivery(BaseModel):
    """One attempt to deliver one message."""

    message_id: str
    type: str
    attempt: int
    attempted_at: datetime
    status_code: int | None
    ok: bool
    error: str | None
    duration_ms: int | None


# --- Retries -------------------------------------------------------------------------------------------


def backoff_seconds(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before the next attempt after `attempts` failed ones: exponential (base * 2^(n-1)), capped,
    with full jitter over its upper half so that receivers coming back are not hit all at once."""
    ceiling = min(cap, base * 2.0 ** max(attempts - 1, 0))
    draw = float(rng.random() if rng is not None else random.random())  # noqa: S311 (jitter, not a secret)
    return ceiling / 2 + draw * ceiling / 2


def message_body(kind: str, timestamp: datetime, data: Mapping[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks payload: `{"type", "timestamp", "data"}`."""
    return {"type": kind, "timestamp": timestamp.isoformat().replace("+00:00", "Z"), "data": dict(data)}
