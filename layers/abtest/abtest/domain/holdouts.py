"""Holdouts in the domain: what the API accepts and returns, and what the pipeline reads.

A holdout keeps `percent` of the users (its `holdout` group) away from every experiment of the
surfaces it covers, and samples an equally sized `measurement` group that gets normal traffic; the
two are compared to measure the sum of everything launched meanwhile (docs/api/holdouts.md; as
GrowthBook's equal-sized comparison and Statsig's balanced groups do). Membership is the contract's
hash rule (abtest.contract.holdouts) with the holdout's own salt.

Lifecycle: the experiments' (abtest.domain.lifecycle): draft -> running <-> paused -> completed.
Only a running holdout holds anybody out (and records members and accepts their conversions);
a paused or completed one holds nobody out, so pausing lets held-out users into experiments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator

from abtest.contract.holdouts import MAX_HOLDOUT_PERCENT, HoldoutGroup, holdout_group, holdout_size
from abtest.domain.experiments import EXPERIMENT_NAME_PATTERN, Status, Surface
from abtest.limits import MAX_HOLDOUT_SURFACES

# Statuses in which a holdout holds its users out (the enrollment statement checks the same).
HOLDING_OUT = frozenset({Status.RUNNING})

HoldoutName = Annotated[str, Field(min_length=1, max_length=128, pattern=EXPERIMENT_NAME_PATTERN)]


class HoldoutCreate(BaseModel):
    """Body of POST /api/v1/holdouts: exactly one of `surfaces` and `all: true`."""

    model_config = ConfigDict(extra="forbid")

    name: HoldoutName
    percent: float = Field(
        strict=True,
        gt=0,
        le=MAX_HOLDOUT_PERCENT,
        allow_inf_nan=False,
        description="Share of users held out (a multiple of 0.0001, at most 0.10); "
        "an equal share forms the measurement group",
    )
    # Declared before `surfaces` so its validator can see it.
    all_: StrictBool | None = Field(
        default=None, alias="all", description="true: cover every surface, present and future"
    )
    surfaces: list[Surface] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_HOLDOUT_SURFACES,
        validate_default=True,
        description="The surfaces covered (or give all: true instead)",
    )

    @field_validator("percent")
    @classmethod
    def _whole_buckets(cls, value: float) -> float:
        holdout_size(value)  # ValueError: not a multiple of 0.0001
        return value

    @field_validator("all_")
    @classmethod
    def _only_true(cls, value: bool | None) -> bool | None:
        if value is False:
            raise ValueError("all must be true when given; list the surfaces instead")
        return value

    @field_validator("surfaces")
    @classmethod
    def _exactly_one(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        covers_all = info.data.get("all_") is True
        if value is None and not covers_all and "all_" in info.data:
            raise ValueError("give the surfaces covered, or all: true")
        if value is not None and covers_all:
            raise ValueError("give either surfaces or all: true, not both")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("surfaces must not repeat")
        return value


class Holdout(BaseModel):
    """A stored holdout."""

    id: UUID
    name: str
    salt: str = Field(description="The holdout's own hash salt (random, immutable)")
    percent: float = Field(description="Share held out; the measurement group is as large")
    surfaces: list[str] | None = Field(description="The surfaces covered; null: every surface")
    all_surfaces: bool = Field(description="true when it covers every surface (created with all: true)")
    status: Status
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


def holdout_row(row: dict[str, Any]) -> Holdout:
    """A holdout from its stored columns (surfaces NULL means every surface)."""
    return Holdout.model_validate(
        {**row, "percent": float(row["percent"]), "all_surfaces": row["surfaces"] is None}
    )


@dataclass(frozen=True)
class RunningHoldout:
    """A running holdout as the serving cache holds it."""

    id: UUID
    salt: str
    size: int  # buckets of the holdout group (contract.holdouts.holdout_size)
    surfaces: frozenset[str] | None  # None: every surface

    @classmethod
    def of(cls, holdout: Holdout) -> RunningHoldout:
        surfaces = None if holdout.surfaces is None else frozenset(holdout.surfaces)
        return cls(holdout.id, holdout.salt, holdout_size(holdout.percent), surfaces)

    def covers(self, surface: str) -> bool:
        """Whether this holdout applies on a surface."""
        return self.surfaces is None or surface in self.surfaces

    def group(self, user_id: str) -> HoldoutGroup | None:
        """The user's group: holdout, measurement, or None."""
        return holdout_group(self.salt, user_id, self.size)


def running_holdouts(holdouts: Iterable[Holdout]) -> tuple[RunningHoldout, ...]:
    """The holdouts that hold users out (running), by id."""
    return tuple(
        sorted((RunningHoldout.of(h) for h in holdouts if h.status in HOLDING_OUT), key=lambda h: h.id)
    )


def covering(holdouts: Sequence[RunningHoldout], surface: str) -> tuple[RunningHoldout, ...]:
    """The running holdouts that cover a surface, by id (the order the enrollment statement compares)."""
    return tuple(h for h in holdouts if h.covers(surface))


def memberships(holdouts: Sequence[RunningHoldout], user_id: str) -> tuple[tuple[UUID, HoldoutGroup], ...]:
    """(holdout id, group) for each of these holdouts the user is a member of."""
    out: list[tuple[UUID, HoldoutGroup]] = []
    for holdout in holdouts:
        group = holdout.group(user_id)
        if group is not None:
            out.append((holdout.id, group))
    return tuple(out)


def held_out(holdouts: Sequence[RunningHoldout], user_id: str) -> RunningHoldout | None:
    """The first of these holdouts that holds the user out, if any."""
    return next((h for h in holdouts if h.group(user_id) == "holdout"), None)
