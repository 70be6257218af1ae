"""Experiments: the commands that create and edit them, the stored entity, its statuses and name patterns.

Validation rules that the database also enforces (names, weights, traffic) are checked here first so a
client gets an error naming the field instead of a constraint name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Protocol
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from abtest.contract.bucketing import WEIGHT_SUM_TOLERANCE
from abtest.domain.bandits import Allocation, BanditServing, serving_weights
from abtest.domain.breakdowns import AssignmentDesign, Dimensions, HashAssignment
from abtest.domain.config_schemas import ConfigSchema, require_valid_configs
from abtest.domain.decisions import DecisionSettings
from abtest.domain.fields import StrictInput
from abtest.domain.metric_definitions import MetricRoles
from abtest.limits import MAX_CONFIG_BYTES, MAX_VARIANTS, MIN_SHARE, json_size_limit, json_value

# Names end up in tags like "experiment_name:variant_name", so neither may contain ':' or spaces.
EXPERIMENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
VARIANT_NAME_PATTERN = EXPERIMENT_NAME_PATTERN
SURFACE_PATTERN = r"^[a-z][a-z0-9_.-]*$"
RECOMMENDATIONS_SURFACE = "recommendations"


class Status(StrEnum):
    """Experiment lifecycle states (see abtest.domain.lifecycle for the transitions)."""

    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"


ExperimentName = Annotated[str, Field(min_length=1, max_length=128, pattern=EXPERIMENT_NAME_PATTERN)]
VariantName = Annotated[str, Field(min_length=1, max_length=64, pattern=VARIANT_NAME_PATTERN)]
Description = Annotated[str, Field(max_length=2000)]
Fraction = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]


def _off_or_at_least_min(value: float) -> float:
    if 0 < value < MIN_SHARE:
        raise ValueError(f"must be 0 (off) or at least {MIN_SHARE}")
    return value


Weight = Annotated[float, Field(strict=True, ge=MIN_SHARE, le=1, allow_inf_nan=False)]
TrafficAllocation = Annotated[Fraction, AfterValidator(_off_or_at_least_min)]
# A share of a surface's namespace: at least one of its 10,000 buckets.
NamespaceShare = Annotated[
    float,
    Field(
        strict=True,
        ge=0.0001,
        le=1,
        allow_inf_nan=False,
        description="Share of the surface's namespace the experiment owns once started: "
        "round(share * 10000) of its 10,000 buckets",
    ),
]
Salt = Annotated[str, Field(min_length=1, max_length=128)]
Surface = Annotated[str, Field(min_length=1, max_length=64, pattern=SURFACE_PATTERN)]
# The JSON value check runs first: the size check serialises, which needs finite, shallow values.
Config = Annotated[dict[str, Any], json_value("config"), json_size_limit("config", MAX_CONFIG_BYTES)]
# An experiment's targeting condition (GrowthBook's language; abtest.domain.targeting checks it, with
# its own depth and size limits, and names the path at fault).
Targeting = Annotated[
    dict[str, Any],
    json_value("targeting"),
    Field(
        description="Who may be enrolled: a GrowthBook condition on the request's attributes ({} = everyone)"
    ),
]


class VariantIn(StrictInput):
    """A variant as submitted: its position in the list is its stored order."""

    name: VariantName
    weight: Weight
    config: Config = Field(default_factory=dict)
    description: Description = ""

    @field_validator("config", mode="before")
    @classmethod
    def _config_is_object(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("config must be a JSON object")
        return value


def check_variants(variants: list[VariantIn]) -> list[VariantIn]:
    """At least two variants, unique names, weights summing to 1 (within 1e-9)."""
    if len(variants) < 2:
        raise ValueError("an experiment needs at least 2 variants")
    seen: set[str] = set()
    for variant in variants:
        if variant.name in seen:
            raise ValueError(f"variant names must be unique; '{variant.name}' appears twice")
        seen.add(variant.name)
    total = math.fsum(variant.weight for variant in variants)
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ValueError(f"variant weights must sum to 1; they sum to {total!r}")
    return variants


Variants = Annotated[list[VariantIn], Field(max_length=MAX_VARIANTS), AfterValidator(check_variants)]


class ExperimentCreate(StrictInput):
    """Body of POST /api/v1/experiments."""

    name: ExperimentName
    description: Description = ""
    variants: Variants
    traffic_allocation: TrafficAllocation = 1.0
    salt: Salt | None = Field(
        default=None, description="Hash salt; defaults to the experiment id. Immutable."
    )
    surface: Surface = Field(
        default=RECOMMENDATIONS_SURFACE,
        description="Where the experiment runs; POST /recommendations serves the 'recommendations' surface.",
    )
    namespace_share: NamespaceShare = 1.0
    targeting: Targeting = Field(default_factory=dict)
    allocation: Allocation = Field(
        default_factory=Allocation,
        description="fixed (the variants' weights) or bandit (docs/bandits.md); the weights start the bandit",
    )
    metrics: MetricRoles | None = Field(
        default=None,
        description="Metric definitions by role: goals, guardrails (with margins), secondary "
        "(docs/metrics-and-decisions.md); goals and guardrails are fixed once the experiment starts",
    )
    decision: DecisionSettings | None = Field(
        default=None, description="How /results decides: framework, min_days, target_mde"
    )
    dimensions: Dimensions = Field(default_factory=list)
    assignment: AssignmentDesign = Field(default_factory=HashAssignment)


class ExperimentPatch(StrictInput):
    """Body of PATCH /api/v1/experiments/{id}: only the fields given change."""

    name: ExperimentName | None = None
    description: Description | None = None
    variants: Variants | None = None
    traffic_allocation: TrafficAllocation | None = None
    surface: Surface | None = None
    namespace_share: NamespaceShare | None = None
    targeting: Targeting | None = None
    allocation: Allocation | None = None
    metrics: MetricRoles | None = None
    decision: DecisionSettings | None = None
    dimensions: Dimensions | None = None
    assignment: AssignmentDesign | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ExperimentPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        for field in self.model_fields_set:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields this patch sets, by name."""
        return {field: getattr(self, field) for field in self.model_fields_set}


class StatusChange(StrictInput):
    """Body of PUT /api/v1/experiments/{id}/status."""

    status: Status


class Variant(BaseModel):
    """A stored variant."""

    id: UUID
    name: str
    description: str
    weight: float
    config: dict[str, Any]
    position: int
    config_version: int = Field(
        default=1,
        description="Version of this variant's config: a change of a started experiment's config adds one",
    )
    schema_version: int | None = Field(
        default=None, description="The surface's config schema version the config was checked against"
    )
    config_valid: bool = Field(
        default=True,
        description="Whether the config matches that schema (false only after a `warn` publish: "
        "its users are served control's config, reason config_invalid)",
    )


class Experiment(BaseModel):
    """A stored experiment with its variants in stored order."""

    id: UUID
    name: str
    description: str
    status: Status
    traffic_allocation: float
    salt: str
    surface: str
    namespace_share: float = Field(
        default=1.0,
        description="Share of the surface's namespace asked for (held as buckets while running or paused)",
    )
    variants: list[Variant]
    phase: int = Field(default=1, description="The current config phase (a config change starts the next)")
    targeting: dict[str, Any] = Field(
        default_factory=dict, description="Who may be enrolled (GrowthBook condition; {} = everyone)"
    )
    dimensions: list[str] = Field(
        default_factory=list, description="Attribute paths captured at enrollment (breakdowns)"
    )
    assignment: AssignmentDesign = Field(default_factory=HashAssignment)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    allocation: Allocation = Field(default_factory=Allocation, description="fixed or bandit")
    bandit: BanditServing | None = Field(
        default=None, description="A bandit's open period and current weights (null for fixed allocations)"
    )

    def serving_weights(self) -> list[float]:
        """The weights a new user is bucketed with (a bandit's current ones, else the variants')."""
        return serving_weights([variant.weight for variant in self.variants], self.bandit)

    metrics: MetricRoles | None = Field(
        default=None, description="Metric definitions by role (none: as before)"
    )
    decision: DecisionSettings | None = Field(
        default=None, description="Decision settings (none: the defaults)"
    )
    pinned_metrics: dict[str, int] = Field(
        default_factory=dict, description="Definition versions pinned when the experiment started, by name"
    )


class _HasConfig(Protocol):
    config: dict[str, Any]


def check_definition(variants: Sequence[_HasConfig], schema: ConfigSchema | None) -> None:
    """The one door for the rules that tie an experiment's variants to its surface, for a new experiment,
    an edited draft and a config change of a running one alike: every variant's config must match the
    surface's current config schema (None: the surface has none). Raises InvalidInput naming the
    offending field and the schema keyword that failed, e.g. `variants[1].config.lora_boost` (type).

    The recommendations surface's schema (migration 0015, RECOMMENDER_CONFIG_SCHEMA) holds the built-in
    recommender's checks.
    """
    require_valid_configs(schema, [variant.config for variant in variants])
