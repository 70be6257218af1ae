"""Assignment building blocks: an experiment with its variant ranges, and what the pipeline asks of
and learns from the enrollment statement (abtest.domain.decision decides; the storage stores).

The stored assignment is the truth once written (sticky), whatever the hash would say later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from abtest.contract.bucketing import Allocation
from abtest.domain.experiments import Experiment, Status, Variant


class Reason(StrEnum):
    """Why a user is or is not in an experiment."""

    ASSIGNED = "assigned"  # enrolled: the stored (or just stored) variant
    EXCLUDED_BY_TRAFFIC = "excluded_by_traffic"  # in the experiment's share, outside its traffic
    NOT_IN_SHARE = "not_in_experiment_share"  # the user's namespace bucket is not the experiment's
    IN_OTHER_EXPERIMENT = "in_other_experiment"  # already a member of a sibling in the namespace
    NOT_RUNNING = "experiment_not_running"  # draft, paused or completed: untagged defaults
    NO_EXPERIMENT = "no_experiment"  # nothing is running or paused on the surface
    TARGETING_NOT_MET = "targeting_not_met"  # the user's attributes do not match the targeting
    DATABASE_UNAVAILABLE = "database_unavailable"  # served without the database (fail open)
    OVERRIDE = "override"  # forced by an override: served its variant, never stored as an assignment
    HOLDOUT = "holdout"  # held out by a running holdout covering the surface: defaults, never enrolled
    # The assigned variant's config fails the surface's current schema (after a `warn` publish): served
    # control's config (or, if control's fails too, untagged defaults); still in the variant for analysis
    CONFIG_INVALID = "config_invalid"


class AssignedVariant(BaseModel):
    id: UUID
    name: str
    config: dict[str, Any]
    config_version: int = Field(default=1, description="Version of the config served")
    schema_version: int | None = Field(
        default=None, description="The surface's config schema version the served config was checked against"
    )
    config_from: str | None = Field(
        default=None,
        description="The variant whose config is served when it is not this one's (reason config_invalid)",
    )


@dataclass(frozen=True)
class EnrollRequest:
    """What the pipeline asks the enrollment statement to do, in one round trip.

    The statement decides about `experiment_id`, or, when `follow_membership` is set (surfaces), about
    the experiment the user already belongs to in the namespace if that one is not completed. It stores
    `variant_id` (with the namespace membership) only if that target is `experiment_id`, running, and
    the user has neither an assignment there nor a live membership elsewhere; it records an exposure
    for whatever assignment is stored if asked and the target is running. `variant_id` None: only read.
    An override of the user (in `experiment_id`; on a surface, in any running experiment of it, the
    oldest override first) makes its experiment the target: nothing is stored but a forced exposure.

    Holdouts: `holdout_ids` are the running holdouts covering the surface as the caller's cache knows
    them (sorted). The statement compares them with the database's; if they differ it writes nothing
    (no membership, assignment, exposure or holdout member) and says `holdouts_stale`, so the caller
    reloads and asks again. Otherwise it records `holdout_members` ((holdout id, group) pairs the
    caller computed with the contract's hash rule) if they are new.
    """

    surface: str
    user_id: str
    experiment_id: UUID | None
    variant_id: UUID | None
    follow_membership: bool
    context: dict[str, Any] | None = None
    record_exposure: bool = True
    with_profile: bool = False
    holdout_ids: tuple[UUID, ...] = ()
    holdout_members: tuple[tuple[UUID, str], ...] = ()
    # A bandit's open period as the caller's cache knows it: the period whose weights chose
    # `variant_id`, stored with the assignment (None for a fixed allocation).
    bandit_period: int | None = None
    # Breakdowns and strata (abtest.domain.breakdowns): the values to capture with a new assignment
    # (None: the experiment has no dimensions), and for a stratified experiment the variant of each
    # block slot (abtest.contract.blocks.block_slots) and the dimension whose value is the stratum. The
    # statement then stores the block's variant instead of `variant_id` (which only says "enroll").
    dimensions: dict[str, str] | None = None
    block_slots: tuple[UUID, ...] = ()
    stratum_dimension: str | None = None


@dataclass(frozen=True)
class Enrollment:
    """What the enrollment statement found, after doing what it was asked."""

    experiment_id: UUID | None  # the experiment it was about (None: none, or it does not exist)
    status: Status | None  # that experiment's status
    variant_id: UUID | None  # the user's stored assignment in it
    member_of: UUID | None  # the user's live membership in the namespace (experiment not completed)
    created: bool = False  # this request stored the assignment
    exposed: bool = False  # an exposure row was written
    profile: list[float] | None = None  # the user's profile vector, when asked for and assigned (or forced)
    # The variant an override forces on the user in `experiment_id` (the statement then stored no
    # assignment or membership, and recorded any exposure as a forced one); None: not forced.
    forced_variant_id: UUID | None = None
    holdouts_stale: bool = False  # the caller's running holdouts were not the database's: nothing written
    # The experiment's config phase and the served variant's schema version as the database holds them
    # (None: not read); a cache that disagrees is reloaded before serving. Facts about the cache's
    # freshness, not about the enrollment: left out of comparisons.
    phase: int | None = field(default=None, compare=False)
    schema_version: int | None = field(default=None, compare=False)


def experiment_variant_tag(experiment_name: str, variant_name: str) -> str:
    """The tag recommendations carry: "experiment_name:variant_name"."""
    return f"{experiment_name}:{variant_name}"


@dataclass(frozen=True)
class LiveExperiment:
    """An experiment that holds its namespace buckets (running or paused: a paused one still answers
    for its users, with defaults), with its variant ranges computed once per cache load."""

    experiment: Experiment
    allocation: Allocation

    @classmethod
    def of(cls, experiment: Experiment) -> LiveExperiment:
        # A bandit's current weights (its open period's), else the variants' weights.
        return cls(experiment, Allocation(experiment.serving_weights(), experiment.traffic_allocation))

    @property
    def id(self) -> UUID:
        return self.experiment.id

    def variant(self, variant_id: UUID) -> Variant:
        """A variant of this experiment by id (a stored assignment's variant)."""
        for variant in self.experiment.variants:
            if variant.id == variant_id:
                return variant
        raise LookupError(f"variant {variant_id} is not part of experiment {self.experiment.id}")
