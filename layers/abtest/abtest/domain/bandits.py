"""Bandit experiments: the allocation setting, the serving state, closing a period (pure).

An experiment's `allocation` is `{"type": "fixed"}` (the variants' weights, forever) or
`{"type": "bandit", ...}`: traffic moves towards the best arm at each reweight (docs/bandits.md). The
variants' weights are the starting weights. Time is cut into periods numbered from 1; the open
period's weights are the ones a new user is bucketed with, and each assignment records the period
whose weights chose its variant. A reweight closes the open period: from every arm's users in periods
1..n it computes the period-weighted statistics (abtest.stats.bandit_periods), runs the bandit
(abtest.stats.bandit) and opens period n + 1 with the weights it decided (the same ones unless the
outcome is `updated`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from abtest.domain.fields import StrictInput
from abtest.errors import InvalidInput
from abtest.limits import MAX_BANDIT_MIN_USERS, MAX_BANDIT_PERIOD_HOURS

# The statistics engine's defaults (abtest.stats.bandit; a unit test holds them equal). Not imported:
# experiments import this module, and no function that only serves or edits them may load the engine.
DEFAULT_MIN_WEIGHT = 0.01
DEFAULT_MIN_USERS_PER_ARM = 100
Outcome = Literal["updated", "not_enough_users", "no_variance", "invalid_statistics"]

# The bandit metric's name: the same shape as an event's metric_name (abtest.domain.events).
BanditMetric = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]

_BANDIT_FIELDS = ("metric", "analysis", "direction", "period_hours", "min_users_per_arm", "min_weight")


def _unset(value: object) -> bool:
    # A fixed allocation answers {"type": "fixed"}: the fields only a bandit takes are left out.
    return value is None


class Allocation(StrictInput):
    """How traffic is split: `fixed` (the variants' weights) or `bandit` (moves to the best arm).

    A bandit needs `metric`, `analysis` and `period_hours`; `direction` defaults to higher,
    `min_users_per_arm` to 100 and `min_weight` to 0.01.
    """

    type: Literal["fixed", "bandit"] = "fixed"
    metric: BanditMetric | None = Field(
        default=None, exclude_if=_unset, description="The metric the bandit optimises"
    )
    analysis: Literal["conversion", "value"] | None = Field(
        default=None,
        exclude_if=_unset,
        description="conversion: converting users / users; value: mean per-user total",
    )
    direction: Literal["higher", "lower"] | None = Field(
        default=None, exclude_if=_unset, description="Which way is better"
    )
    period_hours: float | None = Field(
        default=None,
        exclude_if=_unset,
        strict=True,
        ge=1,
        le=MAX_BANDIT_PERIOD_HOURS,
        allow_inf_nan=False,
        description="The scheduled rollup reweights when this many hours have passed since the last reweight",
    )
    min_users_per_arm: int | None = Field(
        default=None,
        exclude_if=_unset,
        strict=True,
        ge=0,
        le=MAX_BANDIT_MIN_USERS,
        description="No reweight until every arm has these",
    )
    min_weight: float | None = Field(
        default=None,
        exclude_if=_unset,
        strict=True,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="The floor every arm keeps",
    )

    @property
    def is_bandit(self) -> bool:
        return self.type == "bandit"


FIXED = Allocation()


def check_allocation(allocation: Allocation, variants: int) -> Allocation:
    """The allocation as stored: a fixed one without bandit fields, a bandit one with every field.

    Raises InvalidInput naming `allocation.<field>`.
    """
    if allocation.type == "fixed":
        given = [name for name in _BANDIT_FIELDS if getattr(allocation, name) is not None]
        if given:
            raise InvalidInput(
                f"allocation.{given[0]}: only a bandit allocation takes it", field=f"allocation.{given[0]}"
            )
        return FIXED
    for required in ("metric", "analysis", "period_hours"):
        if getattr(allocation, required) is None:
            raise InvalidInput(
                f"allocation.{required}: a bandit allocation needs it", field=f"allocation.{required}"
            )
    filled = allocation.model_copy(
        update={
            "direction": allocation.direction or "higher",
            "min_users_per_arm": (
                allocation.min_users_per_arm
                if allocation.min_users_per_arm is not None
                else DEFAULT_MIN_USERS_PER_ARM
            ),
            "min_weight": allocation.min_weight if allocation.min_weight is not None else DEFAULT_MIN_WEIGHT,
        }
    )
    assert filled.min_weight is not None
    if variants * filled.min_weight > 1:
        raise InvalidInput(
            f"allocation.min_weight: {variants} arms cannot each keep {filled.min_weight}",
            field="allocation.min_weight",
        )
    return filled


def check_metric_direction(allocation: Allocation, defined_direction: str | None) -> None:
    """A bandit's direction must agree with its metric's definition, if one exists (issue 22 defines
    metrics; `defined_direction` is that definition's "higher"/"lower", None without a definition).

    Raises InvalidInput naming `allocation.direction`. The experiments' repository calls it on create
    and on an allocation edit, with abtest.storage.metric_definitions.definition_direction.
    """
    if not allocation.is_bandit or defined_direction is None:
        return
    if allocation.direction != defined_direction:
        raise InvalidInput(
            f"allocation.direction: the metric {allocation.metric!r} is defined with direction "
            f"{defined_direction!r}, the bandit says {allocation.direction!r}",
            field="allocation.direction",
        )


class BanditServing(BaseModel):
    """A bandit's serving state: the open period and the weights new users are bucketed with."""

    period: int = Field(description="The open period (from 1); new assignments record it")
    weights: list[float] | None = Field(
        default=None, description="Current weights in variant order (null: the variants' starting weights)"
    )
    period_started_at: datetime | None = Field(
        default=None, description="When the open period began (null until the experiment starts)"
    )


def serving_weights(variant_weights: Sequence[float], bandit: BanditServing | None) -> list[float]:
    """The weights a new user is bucketed with: the bandit's current ones, else the variants'."""
    if bandit is not None and bandit.weights is not None and len(bandit.weights) == len(variant_weights):
        return list(bandit.weights)
    return list(variant_weights)


class ArmTriple(BaseModel):
    """One arm's statistics as `python -m abtest.stats bandit` takes them."""

    users: float
    sum: float
    sum_squares: float


class BanditPeriod(BaseModel):
    """One closed period: what its reweight used and decided."""

    number: int
    started_at: datetime
    ended_at: datetime
    arms: list[ArmTriple] | None = Field(
        description="Per arm the period-weighted statistics of periods 1..number (null if impossible)"
    )
    period_users: list[int] = Field(description="Per arm the users enrolled in this period")
    p_best: list[float] | None
    weights_before: list[float] = Field(description="The weights users of this period were bucketed with")
    weights_after: list[float] = Field(description="The weights of the next period")
    outcome: Outcome
    error: str | None = Field(default=None, description="Which arm's statistics were impossible")
    trigger: Literal["api", "schedule"]


def decode_period_cursor(cursor: str | None) -> int | None:
    """The period number a bandit page's `next_cursor` names (the last period it held)."""
    if cursor is None:
        return None
    if not cursor.isdigit() or len(cursor) > 9:
        raise InvalidInput("cursor is not one this API returned", field="cursor")
    return int(cursor)
