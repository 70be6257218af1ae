"""Saved groups (named lists of values that targeting conditions use through `$inGroup` and
`$notInGroup`) and the targeting QA route's request and answer."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from abtest.domain.experiments import EXPERIMENT_NAME_PATTERN
from abtest.domain.fields import Attributes
from abtest.limits import (
    MAX_GROUP_BYTES,
    MAX_GROUP_VALUE_LENGTH,
    MAX_GROUP_VALUES,
    MAX_JSON_INTEGER,
    text_problem,
)

# What a group may hold (docs/limits.md): it is loaded whole into every serving container that
# needs it, and a member test walks it, so it stays small.

SavedGroupKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=EXPERIMENT_NAME_PATTERN,
        description='The name conditions use: {"user_id": {"$inGroup": "<key>"}}',
    ),
]


def value_problem(value: Any) -> str | None:
    """Why a value cannot be a group member, or None if it can (strings and numbers only)."""
    if isinstance(value, str):
        if not 1 <= len(value) <= MAX_GROUP_VALUE_LENGTH:
            return f"strings must have 1 to {MAX_GROUP_VALUE_LENGTH} characters"
        return text_problem(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "a value must be a string or a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "numbers must be finite"
    if isinstance(value, int) and abs(value) > MAX_JSON_INTEGER:
        return f"integers must be within +-2^53 ({MAX_JSON_INTEGER})"
    return None


def _check_values(values: list[Any]) -> list[Any]:
    if len(values) > MAX_GROUP_VALUES:
        raise ValueError(f"a saved group holds at most {MAX_GROUP_VALUES} values; this one has {len(values)}")
    for index, value in enumerate(values):
        problem = value_problem(value)
        if problem is not None:
            raise ValueError(f"values[{index}]: {problem}")
    size = len(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_GROUP_BYTES:
        raise ValueError(f"the values are {size} bytes as JSON; the limit is {MAX_GROUP_BYTES}")
    return values


GroupValues = Annotated[
    list[Any],
    AfterValidator(_check_values),
    Field(
        description=f"Strings (1 to {MAX_GROUP_VALUE_LENGTH} characters) and numbers; "
        f"{MAX_GROUP_VALUES} at most"
    ),
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SavedGroupIn(_Input):
    """Body of POST /api/v1/saved-groups."""

    key: SavedGroupKey
    values: GroupValues


class SavedGroupPut(_Input):
    """Body of PUT /api/v1/saved-groups/{id}: the new values (and optionally a new key)."""

    values: GroupValues
    key: SavedGroupKey | None = Field(
        default=None,
        description="A new key; refused (409 saved_group_in_use) while an experiment that is not "
        "completed names the old one",
    )


class SavedGroup(BaseModel):
    """A stored saved group."""

    id: UUID
    key: str
    values: list[Any]
    created_at: datetime
    updated_at: datetime


class SavedGroupSummary(BaseModel):
    """A saved group in a listing (GET /saved-groups/{id} gives its values)."""

    id: UUID
    key: str
    value_count: int
    created_at: datetime
    updated_at: datetime


class SavedGroupList(BaseModel):
    saved_groups: list[SavedGroupSummary]


class TargetingEvaluation(_Input):
    """Body of POST /api/v1/targeting/evaluate."""

    condition: Any = Field(
        description="A GrowthBook condition (any JSON: an invalid one is reported, not refused)"
    )
    attributes: Attributes = Field(default_factory=dict)
    saved_groups: dict[SavedGroupKey, GroupValues] | None = Field(
        default=None, description="Groups by key for $inGroup; absent: the stored saved groups"
    )


class TargetingResult(BaseModel):
    """Whether the attributes match, and the condition's first validation problem (if any)."""

    matches: bool
    error: str | None = Field(
        description="The first problem that would make the condition a 422 on an experiment"
    )
