"""The built-in recommender's settings and the items it ranks (numpy-free: the experiments function
checks variant configs against RecommenderConfig without loading numpy, which only the assignments
function ships; the ranking itself is abtest.domain.recommender)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class CatalogItem(BaseModel):
    """An item the built-in recommender ranks (see abtest.domain.recommender)."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    embedding: list[float]
    popularity: float = Field(description="Raw popularity; the recommender scales log1p of it to [0, 1]")


class RecommenderConfig(BaseModel):
    """Variant config keys of the built-in recommender (see abtest.domain.recommender); all optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lora_boost: float = Field(
        default=0.0,
        strict=True,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Weight of profile similarity against popularity (0 = popularity only)",
    )
    diversity: float = Field(
        default=0.0,
        strict=True,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="MMR trade-off (0 = pure relevance)",
    )
    candidate_cap: int = Field(
        default=200, strict=True, ge=1, le=10_000, description="How many top-scored items diversity re-ranks"
    )

    @classmethod
    def applying(cls, config: dict[str, Any]) -> RecommenderConfig:
        """The settings the recommender takes from any variant config: the keys it knows, each valid
        one as given, anything else at its default. Never raises: configs of other surfaces (such as
        `{"algo": "bm25"}`) are served with the defaults, after the user was already enrolled."""
        known: dict[str, Any] = {}
        for key in cls.model_fields:
            if key in config:
                try:
                    cls.model_validate({key: config[key]})
                except ValidationError:
                    continue
                known[key] = config[key]
        return cls.model_validate(known)
