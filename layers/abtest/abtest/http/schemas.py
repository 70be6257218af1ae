"""HTTP-only views: request bodies and answers that exist only at the API boundary.

Entities, commands and events live with their aggregate in abtest.domain; a view here names them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from abtest.domain.alerts import Alert, Delivery, Webhook
from abtest.domain.assignment import AssignedVariant, Reason
from abtest.domain.audit import AuditEvent
from abtest.domain.bandits import Allocation, BanditPeriod
from abtest.domain.config_versions import SchemaVersionSummary
from abtest.domain.experiments import RECOMMENDATIONS_SURFACE, Experiment, Surface
from abtest.domain.fields import Attributes, Context, UserId
from abtest.domain.holdouts import Holdout
from abtest.domain.metric_definitions import MetricDefinition
from abtest.domain.namespaces import SurfaceMembership, SurfaceNamespace


class ExperimentPage(BaseModel):
    """One page of a listing; pass `next_cursor` back as `cursor` for the next page."""

    experiments: list[Experiment]
    next_cursor: str | None


class HoldoutPage(BaseModel):
    """One page of holdouts, oldest first; pass `next_cursor` back as `cursor` for the next."""

    holdouts: list[Holdout]
    next_cursor: str | None


class AuditPage(BaseModel):
    """Entries newest first; pass `next_cursor` back as `cursor` for the next (older) page."""

    events: list[AuditEvent]
    next_cursor: str | None


class MetricDefinitionPage(BaseModel):
    """Metric definitions by name; pass `next_cursor` back as `cursor` for the next page."""

    metric_definitions: list[MetricDefinition]
    next_cursor: str | None


class RecommendationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    limit: StrictInt = Field(default=10, ge=1, le=100)
    context: Context | None = None
    surface: Surface = RECOMMENDATIONS_SURFACE
    attributes: Attributes | None = None


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    score: float
    experiment_variant: str | None = Field(description='"experiment_name:variant_name"; null if not enrolled')


class RecommendationResponse(BaseModel):
    user_id: str
    experiment_id: UUID | None = Field(description="The experiment the user is enrolled in, if any")
    experiment_variant: str | None
    reason: Reason = Field(description="Why the user is or is not in an experiment of the surface")
    source: Literal["assignment", "override"] | None = Field(
        default=None,
        description='Where the variant comes from: "assignment" (the stored assignment), "override" '
        "(a forced user: never stored, excluded from metrics and results); null when none is served",
    )
    config_version: int | None = Field(
        default=None, description="Version of the variant config that shaped the recommendations"
    )
    schema_version: int | None = Field(
        default=None, description="The surface's config schema version that config was checked against"
    )
    recommendations: list[RecommendedItem]
    degraded: bool = Field(description="true when served without the database (untagged, popularity)")


class AssignmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    experiment_id: UUID
    context: Context | None = None
    record_exposure: StrictBool = True
    attributes: Attributes | None = None


class AssignmentResponse(BaseModel):
    experiment_id: UUID
    experiment_name: str
    user_id: str
    enrolled: bool
    reason: Reason
    variant: AssignedVariant | None
    experiment_variant: str | None
    new_assignment: bool
    exposure_recorded: bool
    source: Literal["assignment", "override"] | None = Field(
        default=None,
        description='Where the variant comes from: "assignment" (the stored assignment), "override" '
        "(a forced user: never stored, excluded from metrics and results); null when none is served",
    )


class StoredAssignmentResponse(BaseModel):
    experiment_id: UUID
    experiment_name: str
    user_id: str
    enrolled: bool
    variant: AssignedVariant | None
    experiment_variant: str | None


class SchemaVersionPage(BaseModel):
    """A page of a surface's config schema versions, newest first; pass `next_cursor` back as `cursor`."""

    versions: list[SchemaVersionSummary]
    next_cursor: str | None = None


class SurfaceList(BaseModel):
    """A page of surfaces by name; pass `next_cursor` back as `cursor` for the next page."""

    surfaces: list[SurfaceNamespace]
    next_cursor: str | None = None


class SurfaceAssignmentResponse(SurfaceMembership):
    """Which experiment and variant of a surface a user is in, looked up without enrolling."""


class BanditReweightResponse(BaseModel):
    """The period a reweight closed, and the weights new users are bucketed with from now on."""

    created: bool = Field(
        description="True: this request closed the period; false: a concurrent reweight had (its stored row)"
    )
    period: BanditPeriod
    open_period: int = Field(description="The period now open")
    weights: list[float] = Field(description="The open period's weights, in variant order")


class BanditPage(BaseModel):
    """A bandit's settings, current weights and P(best), and a page of its closed periods, oldest first;
    pass `next_cursor` back as `cursor` for the next."""

    experiment_id: UUID
    allocation: Allocation
    open_period: int
    period_started_at: datetime | None
    weights: list[float] = Field(description="Current weights (the open period's), in variant order")
    variants: list[str] = Field(description="Variant names, in the order of every per-arm list")
    p_best: list[float] | None = Field(description="P(best) at the latest reweight (null before one)")
    periods: list[BanditPeriod]
    next_cursor: str | None


class AlertPage(BaseModel):
    """Alerts newest first; pass `next_cursor` back as `cursor` for the next (older) page."""

    alerts: list[Alert]
    next_cursor: str | None


class WebhookList(BaseModel):
    """Every webhook subscription, oldest first (there are at most 100); never their secrets."""

    webhooks: list[Webhook]


class DeliveryPage(BaseModel):
    """A subscription's delivery attempts, newest first; pass `next_cursor` back as `cursor`."""

    deliveries: list[Delivery]
    next_cursor: str | None


class TestDeliveryResponse(BaseModel):
    """The test event queued for delivery: its message id is the `webhook-id` it arrives with."""

    message_id: str
    type: str
