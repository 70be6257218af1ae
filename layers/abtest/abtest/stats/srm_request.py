"""`python -m abtest.stats srm`: the sequential and the chi-squared SRM p-values of a series of checks.

Input: `{"counts": [[a1, b1, ...], [a2, b2, ...], ...], "expected": [0.5, 0.5, ...], "concentration": 10000}`,
where row t holds the users per variant that check t ADDED (not running totals), `expected` the shares
(default: equal) and `concentration` the Dirichlet prior's (default 10,000). Output: `{"sequential_p":
[p after check 1, p after check 2, ...], "chi2_p": p on the totals}`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from abtest.field_path import field_path
from abtest.stats.inputs import Count, StatsInputError
from abtest.stats.sequential_srm import DEFAULT_CONCENTRATION, sequential_srm_p_values
from abtest.stats.srm import srm_p_value

__all__ = ["MAX_CHECKS", "MAX_VARIANTS", "SrmRequest", "parse_srm_request", "srm_report"]

# Bounds that keep one call well under a second (each check costs a few lgamma calls per variant).
MAX_CHECKS = 100_000
MAX_VARIANTS = 100
_SHARE_SUM_TOLERANCE = 1e-9

Share = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class SrmRequest(BaseModel):
    """A validated `srm` request: per-check new users per variant, the expected shares, the concentration."""

    # strict: JSON 10.0 is not a count; extra="forbid": a misspelt field is an error, not ignored.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    counts: Annotated[
        list[Annotated[list[Count], Field(min_length=2, max_length=MAX_VARIANTS)]],
        Field(min_length=1, max_length=MAX_CHECKS),
    ]
    expected: Annotated[list[Share], Field(min_length=2, max_length=MAX_VARIANTS)] | None = None
    concentration: Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False)] = DEFAULT_CONCENTRATION

    @model_validator(mode="after")
    def _consistent(self) -> SrmRequest:
        variants = len(self.expected) if self.expected is not None else len(self.counts[0])
        for index, row in enumerate(self.counts):
            if len(row) != variants:
                raise _FieldError(
                    f"counts[{index}]: expected {variants} counts, one per variant, got {len(row)}",
                    f"counts[{index}]",
                )
        if self.expected is not None and abs(math.fsum(self.expected) - 1.0) > _SHARE_SUM_TOLERANCE:
            raise _FieldError(
                f"expected: the shares must add up to 1, not {math.fsum(self.expected)!r}", "expected"
            )
        return self

    @property
    def shares(self) -> list[float]:
        """The expected shares, equal ones when none were given."""
        if self.expected is not None:
            return list(self.expected)
        variants = len(self.counts[0])
        return [1.0 / variants] * variants


class _FieldError(ValueError):
    # Raised in the model validator, whose errors pydantic locates at the model itself: this carries the
    # field (pydantic keeps the exception in the error's ctx).
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def parse_srm_request(data: Any) -> SrmRequest:
    """Validate a decoded JSON object; raises `StatsInputError` naming the first bad field."""
    if not isinstance(data, dict):
        raise StatsInputError("the input must be a JSON object", field=None)
    try:
        return SrmRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, _FieldError):
            raise StatsInputError(cause.message, field=cause.field) from None
        field = field_path(tuple(first["loc"])) or None
        message = str(first["msg"]).removeprefix("Value error, ")
        raise StatsInputError(f"{field}: {message}" if field else message, field=field) from None


def srm_report(request: SrmRequest) -> dict[str, Any]:
    """`{"sequential_p": [...], "chi2_p": ...}` for a validated request (JSON-ready)."""
    shares = request.shares
    totals = [sum(column) for column in zip(*request.counts, strict=True)]
    return {
        "sequential_p": sequential_srm_p_values(request.counts, shares, concentration=request.concentration),
        "chi2_p": srm_p_value(totals, shares),
    }
