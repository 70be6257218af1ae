"""Breakdowns by user attribute and stratified assignment: the experiment's design fields, and the
values captured at enrollment (pure; no SQL, no HTTP).

An experiment lists up to MAX_DIMENSIONS attribute paths (`dimensions`). When a user is enrolled
through a route that carries attributes (/assignments, /recommendations, OpenFeature evaluation),
the value at each path is captured with the assignment, normalised to a string of at most
MAX_DIMENSION_VALUE_LENGTH characters ("(none)" when absent), and never changed afterwards: a user's
slice is the value at first exposure. The database caps the distinct values per dimension at
MAX_DIMENSION_VALUES (later new values are stored as "(other)").

`assignment` chooses how new users get a variant: "hash" (the published bucketing contract) or
"stratified" (permuted blocks per value of the `stratum` path, abtest.contract.blocks). The stratum
path is always one of the dimensions (added if not listed), so its captured value is the stratum.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

from pydantic import AfterValidator, Field

from abtest.contract.blocks import block_size, block_slots
from abtest.domain.fields import StrictInput
from abtest.domain.targeting import attribute
from abtest.errors import ErrorCode, InvalidInput
from abtest.limits import (
    MAX_BLOCK_SIZE,
    MAX_DIMENSION_PATH_LENGTH,
    MAX_DIMENSION_VALUE_LENGTH,
    MAX_DIMENSIONS,
    text_problem,
)

NONE_VALUE = "(none)"  # the attribute was absent (or null) at enrollment
OTHER_VALUE = "(other)"  # past the cap of distinct values, or folded into the rest of a breakdown

DimensionPath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_DIMENSION_PATH_LENGTH,
        pattern=r"^[^.\s]+(\.[^.\s]+)*$",
        description="A dotted attribute path, e.g. country or device.type",
    ),
]


def _unique(paths: list[str]) -> list[str]:
    if len(set(paths)) != len(paths):
        raise ValueError("dimensions must be unique")
    return paths


Dimensions = Annotated[
    list[DimensionPath],
    Field(
        max_length=MAX_DIMENSIONS,
        description=f"Attribute paths (at most {MAX_DIMENSIONS}) captured at enrollment for breakdowns",
    ),
    AfterValidator(_unique),
]


class HashAssignment(StrictInput):
    """New users get the variant of the published bucketing contract."""

    type: Literal["hash"] = "hash"


class StratifiedAssignment(StrictInput):
    """New users get the next slot of their stratum's permuted block."""

    type: Literal["stratified"]
    stratum: DimensionPath


AssignmentDesign = Annotated[
    HashAssignment | StratifiedAssignment,
    Field(
        discriminator="type",
        description='How new users get a variant: {"type": "hash"} (default) or '
        '{"type": "stratified", "stratum": PATH} (permuted blocks per stratum value)',
    ),
]


def check_design(
    dimensions: list[str],
    assignment: HashAssignment | StratifiedAssignment,
    weights: Sequence[float],
    allocation: Any = None,
) -> list[str]:
    """Validate the breakdown and assignment design; returns the dimensions to store (the stratum path
    added when it is not listed). 422 naming the field for a block over MAX_BLOCK_SIZE, too many
    dimensions, or a stratified bandit (`allocation`: the experiment's allocation, if it has one)."""
    if not isinstance(assignment, StratifiedAssignment):
        return list(dimensions)
    refuse_stratified_bandit(allocation)
    if block_size(weights, MAX_BLOCK_SIZE) is None:
        raise InvalidInput(
            f"stratified assignment needs weights that are multiples of 1/B for a block size B of at "
            f"most {MAX_BLOCK_SIZE} (for example 0.5/0.5, 0.25/0.75, 1/3 each)",
            code=ErrorCode.BLOCK_TOO_LARGE,
            field="assignment",
        )
    stored = list(dimensions)
    if assignment.stratum not in stored:
        stored.append(assignment.stratum)
    if len(stored) > MAX_DIMENSIONS:
        raise InvalidInput(f"at most {MAX_DIMENSIONS} dimensions, the stratum included", field="dimensions")
    return stored


def refuse_stratified_bandit(allocation: Any) -> None:
    """A stratified experiment cannot also be a bandit (its shares are fixed per block): 422.

    `allocation` is the experiment's allocation design if the experiment has one (a bandit is an
    allocation whose type is "bandit"); None for none.
    """
    kind = allocation.get("type") if isinstance(allocation, Mapping) else getattr(allocation, "type", None)
    if kind == "bandit":
        raise InvalidInput(
            "a stratified experiment cannot also be a bandit: its shares are fixed block by block",
            code=ErrorCode.STRATIFIED_BANDIT,
            field="assignment",
        )


def normalise(value: Any) -> str:
    """A captured attribute value as a bounded string: "(none)" for absent, null or empty."""
    if value is None:
        return NONE_VALUE
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = str(int(value)) if math.isfinite(value) and value.is_integer() else repr(value)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    text = text[:MAX_DIMENSION_VALUE_LENGTH]
    if not text:
        return NONE_VALUE
    return OTHER_VALUE if text_problem(text) is not None else text


def capture(dimensions: Sequence[str], attributes: Mapping[str, Any] | None) -> dict[str, str]:
    """The values to store with a new enrollment, by dimension path."""
    return {path: normalise(attribute(attributes or {}, path)) for path in dimensions}


class _Designed(Protocol):
    @property
    def dimensions(self) -> list[str]: ...

    @property
    def assignment(self) -> HashAssignment | StratifiedAssignment: ...

    @property
    def variants(self) -> Sequence[_HasIdWeight]: ...


class _HasIdWeight(Protocol):
    @property
    def id(self) -> UUID: ...

    @property
    def weight(self) -> float: ...


@dataclass(frozen=True)
class EnrollmentDesign:
    """What the enrollment statement needs to store a new assignment of this experiment."""

    dimensions: dict[str, str] | None = None
    block_slots: tuple[UUID, ...] = ()
    stratum_dimension: str | None = None


def enrollment_design(experiment: _Designed, attributes: Mapping[str, Any] | None) -> EnrollmentDesign:
    """The captured values and, for a stratified experiment, its block's variants and stratum path."""
    dimensions = capture(experiment.dimensions, attributes) if experiment.dimensions else None
    design = experiment.assignment
    if not isinstance(design, StratifiedAssignment):
        return EnrollmentDesign(dimensions)
    weights = [v.weight for v in experiment.variants]
    size = block_size(weights, MAX_BLOCK_SIZE)
    assert size is not None, "check_design refused this experiment at creation"
    slots = tuple(experiment.variants[i].id for i in block_slots(weights, size))
    if dimensions is None or design.stratum not in dimensions:
        dimensions = {
            **(dimensions or {}),
            design.stratum: normalise(attribute(attributes or {}, design.stratum)),
        }
    return EnrollmentDesign(dimensions, slots, design.stratum)
