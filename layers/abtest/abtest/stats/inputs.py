"""Validated inputs: per-variant sufficient statistics and the analysis request.

The models are strict (no silent string-to-number coercion, no unknown fields) so that a malformed
request is rejected with the name of the offending field instead of being analysed wrongly.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from abtest.errors import ErrorCode
from abtest.field_path import field_path

__all__ = [
    "AnalysisRequest",
    "BinomialRequest",
    "BinomialStats",
    "Correction",
    "GaussianPrior",
    "MeanRequest",
    "MeanStats",
    "MetricType",
    "StatsInputError",
    "VariantStats",
    "parse_request",
]

MetricType = Literal["binomial", "mean"]
Correction = Literal["holm", "bh"]

# Up to 1e15 so that every count is exact as a float (2^53 is about 9e15).
Count = Annotated[int, Field(ge=0, le=10**15)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class StatsInputError(ValueError):
    """Unusable analysis input. `code` is machine-readable, `field` a path such as `variants[1].users`."""

    def __init__(
        self, message: str, *, field: str | None = None, code: ErrorCode = ErrorCode.INVALID_INPUT
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code

    def to_dict(self) -> dict[str, str | None]:
        """The JSON error object the CLI prints: {"error", "message", "field"}."""
        return {"error": self.code, "message": self.message, "field": self.field}


class _Strict(BaseModel):
    # strict: JSON "10" or 10.5 is not a count; extra="forbid": a misspelt field is an error, not ignored.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class BinomialStats(_Strict):
    """A conversion metric for one variant: `users` exposed, `conversions` of them converted."""

    users: Count
    conversions: Count

    @field_validator("conversions")
    @classmethod
    def _at_most_users(cls, value: int, info: ValidationInfo) -> int:
        users = info.data.get("users")
        if users is not None and value > users:
            raise ValueError(f"conversions ({value}) cannot exceed users ({users})")
        return value


class MeanStats(_Strict):
    """A mean metric for one variant: sum and sum of squares of the per-user totals.

    The three pre-period fields enable CUPED (all or none of them): the sum and sum of squares of the
    same metric measured on the same users before exposure, and the sum of post x pre products.
    """

    users: Count
    sum: FiniteFloat
    sum_squares: NonNegativeFloat
    pre_sum: FiniteFloat | None = None
    pre_sum_squares: NonNegativeFloat | None = None
    post_pre_sum_products: FiniteFloat | None = None

    @model_validator(mode="after")
    def _pre_period_all_or_none(self) -> MeanStats:
        given = [
            name
            for name in ("pre_sum", "pre_sum_squares", "post_pre_sum_products")
            if getattr(self, name) is not None
        ]
        if given and len(given) != 3:
            raise ValueError(
                "pre_sum, pre_sum_squares and post_pre_sum_products must be given together "
                f"(got only {', '.join(given)})"
            )
        return self

    @property
    def has_pre_period(self) -> bool:
        """True when the pre-period statistics for CUPED are present."""
        return self.pre_sum is not None


VariantStats = BinomialStats | MeanStats


class GaussianPrior(_Strict):
    """A proper Gaussian prior on the relative lift, e.g. mean 0 and variance 0.3**2.

    Without one (`prior=None`) the posterior is the flat-prior one, i.e. gbstats' default improper prior.
    """

    mean: FiniteFloat = 0.0
    variance: PositiveFloat = 1.0


class _RequestBase(_Strict):
    alpha: Probability = 0.05
    sequential_tuning_parameter: PositiveFloat = 5000.0
    prior: GaussianPrior | None = None
    mde: PositiveFloat | None = None
    power: Probability = 0.8
    correction: Correction | None = None

    # The subclasses declare `variants` before `weights`, so `info.data` holds the validated variants.
    @field_validator("weights", check_fields=False)
    @classmethod
    def _weights_match_variants(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if value is None:
            return None
        variants = info.data.get("variants")
        if variants is not None and len(value) != len(variants):
            raise ValueError(f"expected one weight per variant ({len(variants)}), got {len(value)}")
        if not math.isfinite(sum(value)):
            raise ValueError("weights are too large")
        return value


class BinomialRequest(_RequestBase):
    """Analysis request for a conversion metric; variant 0 is the control."""

    metric_type: Literal["binomial"]
    variants: Annotated[list[BinomialStats], Field(min_length=2)]
    weights: list[PositiveFloat] | None = None


class MeanRequest(_RequestBase):
    """Analysis request for a mean metric; variant 0 is the control."""

    metric_type: Literal["mean"]
    variants: Annotated[list[MeanStats], Field(min_length=2)]
    weights: list[PositiveFloat] | None = None

    @field_validator("variants")
    @classmethod
    def _pre_period_everywhere_or_nowhere(cls, value: list[MeanStats]) -> list[MeanStats]:
        with_pre = [variant.has_pre_period for variant in value]
        if any(with_pre) and not all(with_pre):
            missing = ", ".join(str(i) for i, has in enumerate(with_pre) if not has)
            raise ValueError(
                f"pre-period statistics must be given for every variant or none (missing: {missing})"
            )
        return value


AnalysisRequest = Annotated[BinomialRequest | MeanRequest, Field(discriminator="metric_type")]
_REQUEST_ADAPTER: TypeAdapter[BinomialRequest | MeanRequest] = TypeAdapter(AnalysisRequest)


def _field_path(loc: tuple[int | str, ...]) -> str | None:
    """('binomial', 'variants', 0, 'users') -> 'variants[0].users' (the first item is the union tag)."""
    return field_path(loc[1:] if loc and loc[0] in ("binomial", "mean") else loc) or None


def parse_request(data: Any) -> BinomialRequest | MeanRequest:
    """Validate a decoded JSON object into a request; raises `StatsInputError` naming the first bad field."""
    if not isinstance(data, dict):
        raise StatsInputError("the input must be a JSON object", field=None)
    try:
        return _REQUEST_ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] in ("union_tag_not_found", "union_tag_invalid"):
            raise StatsInputError("metric_type must be 'binomial' or 'mean'", field="metric_type") from None
        field = _field_path(tuple(first["loc"]))
        message = str(first["msg"]).removeprefix("Value error, ")
        if field:
            message = f"{field}: {message}"
        raise StatsInputError(message, field=field) from None
