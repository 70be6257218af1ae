"""Per-user overrides (forced variants): what the API accepts and answers, and the rules (pure).

A forced user is served the override's variant while the experiment runs (the pipeline's `override`
stage, right after `running`), is never stored as an assignment nor takes a namespace membership, and
their exposures and conversions are recorded in tables of their own that the analysis never reads.
A user who already had an assignment keeps it (it serves again once the override is deleted); what
they did before the override stays in the analysis under their real variant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from abtest.domain.experiments import Experiment, Status, Variant, VariantName
from abtest.errors import Conflict, ErrorCode, InvalidInput
from abtest.limits import MAX_OVERRIDES_PER_EXPERIMENT, MAX_USER_ID_LENGTH, text_problem

# Overrides are for QA accounts and demos, not for serving a population: a bound keeps the listing
# one bounded page and the per-experiment count cheap.

# The PUT answers this warning when the user already has a stored assignment in the experiment.
USER_ALREADY_ASSIGNED = "user_already_assigned"


class OverrideIn(BaseModel):
    """Body of PUT /api/v1/experiments/{id}/overrides/{user_id}."""

    model_config = ConfigDict(extra="forbid")

    variant: VariantName = Field(description="The name of the variant to force")


class Override(BaseModel):
    """A stored override."""

    experiment_id: UUID
    user_id: str
    variant: str = Field(description="The forced variant's name")
    variant_id: UUID
    created_at: datetime
    updated_at: datetime


class OverrideWritten(Override):
    """The answer to a PUT: the override, and a warning when the user already has an assignment."""

    warning: Literal["user_already_assigned"] | None = Field(
        default=None,
        description="user_already_assigned: the user's stored assignment is kept (and serves again once "
        "the override is deleted); their events before the override stay in the analysis",
    )
    assigned_variant: str | None = Field(
        default=None, description="The user's stored (real) variant, when the warning is set"
    )


class OverrideList(BaseModel):
    """GET /api/v1/experiments/{id}/overrides: every override, oldest first."""

    experiment_id: UUID
    count: int
    max_overrides: int = Field(description=f"At most {MAX_OVERRIDES_PER_EXPERIMENT} per experiment")
    overrides: list[Override]


class OverrideCounts(BaseModel):
    """What forced users did, shown beside /metrics and /results but never part of them."""

    active: int = Field(default=0, description="Overrides that exist now")
    users: int = Field(default=0, description="Distinct forced users with a recorded exposure or conversion")
    exposures: int = Field(default=0, description="Exposures recorded while forced")
    conversions: int = Field(default=0, description="Conversions recorded while forced")


Source = Literal["assignment", "override"]


def check_user_id(user_id: str) -> str:
    """A user id from a path, held to the limits of user ids in bodies (1..MAX_USER_ID_LENGTH characters,
    storable text)."""
    problem = text_problem(user_id)
    if problem is None and not 1 <= len(user_id) <= MAX_USER_ID_LENGTH:
        problem = f"must be 1 to {MAX_USER_ID_LENGTH} characters (once percent-decoded, in a path)"
    if problem is not None:
        raise InvalidInput(f"user_id: {problem}", field="user_id")
    return user_id


def check_overridable(experiment: Experiment) -> None:
    """Overrides are written on drafts (QA before the start), running and paused experiments; a
    completed experiment serves nobody, so an override there could never apply."""
    if experiment.status == Status.COMPLETED:
        raise Conflict(
            "the experiment is completed: it serves no one, so an override could never apply",
            code=ErrorCode.EXPERIMENT_COMPLETED,
            field="experiment_id",
        )


def forced_variant(experiment: Experiment, name: str) -> Variant:
    """The experiment's variant called `name`; InvalidInput naming `variant` if there is none."""
    for variant in experiment.variants:
        if variant.name == name:
            return variant
    names = ", ".join(v.name for v in experiment.variants)
    raise InvalidInput(
        f"variant: the experiment has no variant {name!r}; its variants are {names}",
        code=ErrorCode.UNKNOWN_VARIANT,
        field="variant",
    )


def check_room(count: int, replacing: bool) -> None:
    """At most MAX_OVERRIDES_PER_EXPERIMENT per experiment; changing an existing one always fits."""
    if not replacing and count >= MAX_OVERRIDES_PER_EXPERIMENT:
        raise Conflict(
            f"the experiment already has {MAX_OVERRIDES_PER_EXPERIMENT} overrides, the most it may have",
            code=ErrorCode.TOO_MANY_OVERRIDES,
            field="user_id",
        )
