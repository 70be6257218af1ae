"""Config schema versions of a surface and config phases of an experiment: the stored models, and the
bodies that publish a schema and open a phase (the rules themselves: abtest.domain.config_schemas).

A phase is a period in which an experiment's variants keep one config version each. Phase 1 starts
with the experiment; every change of a started experiment's configs opens the next one (re-publishing an
earlier config version too). Assignments and weights never change with a phase: the same users stay in
the same variants, and are served their variant's newest config.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from abtest.domain.audit import Actor
from abtest.domain.experiments import Config, Description, VariantName
from abtest.domain.fields import StrictInput
from abtest.limits import MAX_REASON_LENGTH, MAX_VARIANTS

PublishMode = Literal["strict", "warn"]
# Members of a served schema document that are not JSON Schema: its surface and version (vendor
# extensions, which code generators ignore), dropped again if a client publishes the document back.
SERVED_MEMBERS = ("x-surface", "x-version")


class ConfigViolation(BaseModel):
    """A live experiment's variant config that fails a schema: where, which keyword, why."""

    experiment_id: str
    experiment_name: str
    status: str
    variant: str
    field: str
    keyword: str
    message: str


class SchemaVersion(BaseModel):
    """One stored version of a surface's config schema."""

    surface: str
    version: int
    mode: PublishMode = Field(
        description="strict: no live experiment violated it; warn: stored despite violations"
    )
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON Schema with its invariants")
    violations: list[ConfigViolation] = Field(
        default_factory=list, description="Live experiments' configs that failed it when it was published"
    )
    created_by: str
    created_at: datetime

    model_config = {"populate_by_name": True}

    def served_document(self) -> dict[str, Any]:
        """The schema as GET serves it: usable as-is by code generators, with x-surface and x-version."""
        return {**self.schema_, "x-surface": self.surface, "x-version": self.version}


class SchemaVersionSummary(BaseModel):
    """A schema version in the versions listing (the schema itself: GET ?version=)."""

    surface: str
    version: int
    mode: PublishMode
    violation_count: int
    created_by: str
    created_at: datetime


class PhaseVariantIn(StrictInput):
    """One variant's config in a new phase: a new config, or an earlier `config_version` re-published."""

    name: VariantName
    config: Config | None = None
    config_version: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> PhaseVariantIn:
        if (self.config is None) == (self.config_version is None):
            raise ValueError("give either config (a new version) or config_version (an earlier one)")
        return self


class PhaseCreate(StrictInput):
    """Body of POST /api/v1/experiments/{id}/phases: the variants whose configs change (the others keep
    theirs), and why."""

    variants: Annotated[list[PhaseVariantIn], Field(min_length=1, max_length=MAX_VARIANTS)]
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON_LENGTH)] | None = None
    description: Description | None = None


class PhaseVariant(BaseModel):
    name: str
    config_version: int


class Phase(BaseModel):
    """A config phase of an experiment."""

    phase: int
    started_at: datetime | None = Field(description="Phase 1: when the experiment started (null while draft)")
    ended_at: datetime | None = Field(default=None, description="When the next phase started (null: current)")
    actor: Actor | None = Field(default=None, description="Who opened the phase (null for phase 1)")
    reason: str | None = None
    variants: list[PhaseVariant]


class PhaseList(BaseModel):
    experiment_id: str
    current_phase: int
    phases: list[Phase]


class ConfigVersion(BaseModel):
    version: int
    config: dict[str, Any]
    created_at: datetime


class ConfigVersionList(BaseModel):
    experiment_id: str
    variant: str
    current_version: int
    versions: list[ConfigVersion]
