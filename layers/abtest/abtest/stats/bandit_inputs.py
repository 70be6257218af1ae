"""`python -m abtest.stats bandit`: the validated request and the JSON answer of one reweight.

Input (only `arms` is required):
    {"arms": [{"users": 1000, "sum": 10, "sum_squares": 2000}, {"users": 1000, "conversions": 12}, ...],
     "weights": [0.5, 0.5], "direction": "higher", "min_weight": 0.01, "min_users_per_arm": 100}
An arm gives either sum and sum_squares or conversions (read as sum = sum_squares = conversions).
Output: {"outcome": ..., "p_best": [...] or null, "weights": [...]}. Statistics that cannot come from
real data are an error naming the arm (`invalid_statistics`, exit code 2), like any other bad input.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from abtest.errors import ErrorCode
from abtest.field_path import field_path
from abtest.stats.bandit import (
    DEFAULT_MIN_USERS_PER_ARM,
    DEFAULT_MIN_WEIGHT,
    ArmStats,
    Direction,
    bandit_reweight,
)
from abtest.stats.inputs import StatsInputError

__all__ = ["MAX_ARMS", "BanditArm", "BanditRequest", "analyze_bandit_request", "parse_bandit_request"]

# The service allows at most 20 variants; the cap keeps one CLI call to well under a second.
MAX_ARMS = 20
# Whole counts up to 1e15 are exact as floats. Negative counts pass validation on purpose: they are
# impossible statistics, reported as `invalid_statistics` naming the arm like every other one.
SignedCount = Annotated[int, Field(ge=-(10**15), le=10**15)]
Weight = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
WEIGHT_SUM_TOLERANCE = 1e-6


class _Strict(BaseModel):
    # As the analysis request: no string-to-number coercion, a misspelt field is an error.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class BanditArm(_Strict):
    """One arm: users and either sum and sum_squares of the metric, or conversions."""

    users: SignedCount
    sum: float | None = None
    sum_squares: float | None = None
    conversions: SignedCount | None = None

    @model_validator(mode="after")
    def _one_form(self) -> BanditArm:
        if self.conversions is not None:
            if self.sum is not None or self.sum_squares is not None:
                raise ValueError("give either conversions or sum and sum_squares, not both")
        elif self.sum is None or self.sum_squares is None:
            raise ValueError("give sum and sum_squares (or conversions)")
        return self

    def stats(self) -> ArmStats:
        """The arm as (users, sum, sum_squares)."""
        if self.conversions is not None:
            return ArmStats.from_conversions(float(self.users), float(self.conversions))
        assert self.sum is not None
        assert self.sum_squares is not None
        return ArmStats(float(self.users), self.sum, self.sum_squares)


class BanditRequest(_Strict):
    """A reweight request; `weights` (the current ones) default to uniform."""

    arms: Annotated[list[BanditArm], Field(min_length=2, max_length=MAX_ARMS)]
    weights: list[Weight] | None = None
    direction: Direction = "higher"
    min_weight: Weight = DEFAULT_MIN_WEIGHT
    min_users_per_arm: Annotated[int, Field(ge=0, le=10**15)] = DEFAULT_MIN_USERS_PER_ARM

    @field_validator("weights")
    @classmethod
    def _one_weight_per_arm(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if value is None:
            return None
        arms = info.data.get("arms")
        if arms is not None and len(value) != len(arms):
            raise ValueError(f"expected one weight per arm ({len(arms)}), got {len(value)}")
        if abs(math.fsum(value) - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise ValueError(f"the weights must sum to 1 (they sum to {math.fsum(value)!r})")
        return value


def parse_bandit_request(data: Any) -> BanditRequest:
    """Validate a decoded JSON object; raises `StatsInputError` naming the first bad field."""
    if not isinstance(data, dict):
        raise StatsInputError("the input must be a JSON object", field=None)
    try:
        return BanditRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = field_path(tuple(first["loc"])) or None
        message = str(first["msg"]).removeprefix("Value error, ")
        raise StatsInputError(f"{field}: {message}" if field else message, field=field) from None


def analyze_bandit_request(request: BanditRequest) -> dict[str, Any]:
    """Run one reweight: {"outcome", "p_best", "weights"}; `StatsInputError` on impossible statistics."""
    result = bandit_reweight(
        [arm.stats() for arm in request.arms],
        request.weights,
        direction=request.direction,
        min_weight=request.min_weight,
        min_users_per_arm=request.min_users_per_arm,
    )
    if result.outcome == "invalid_statistics":
        index = result.arm if result.arm is not None else 0
        arm = request.arms[index]
        message = result.message
        if arm.conversions is not None and not 0 <= arm.conversions <= arm.users:
            message = (
                f"arms[{index}]: conversions ({arm.conversions}) must be between 0 and users ({arm.users})"
            )
        raise StatsInputError(message, field=f"arms[{index}]", code=ErrorCode.INVALID_STATISTICS)
    return {
        "outcome": result.outcome,
        "p_best": list(result.p_best) if result.p_best is not None else None,
        "weights": list(result.weights),
    }
