"""The built-in recommender's settings and the items it ranks (numpy-free: the experiments function
checks variant configs against RecommenderConfig without loading numpy, which only the assignments
function ships; the ranking itself is abtest.domain.recommender)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


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

    @field_validator("candidate_cap", mode="before")
    @classmethod
    def _integral_float(cls, value: Any) -> Any:
        """5.0 is an integer to JSON Schema (the surface's schema accepts it), so it is 5 here too:
        otherwise a config the schema let through would silently rank with the default."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

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


# The one home of the checks on the recommendations surface's configs: its config schema (version 1,
# installed by migration 0015_config_schemas, which holds this same JSON; tests/unit/test_config_schemas.py
# ties the two and checks RecommenderConfig accepts what it accepts). Writes validate configs against the
# surface's current schema; `applying` above only keeps a config that another schema let through from
# breaking the ranking.
RECOMMENDER_CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "RecommenderConfig",
    "description": "Variant config keys the built-in recommender reads; every key is optional.",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "lora_boost": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.0,
            "description": "Weight of profile similarity against popularity (0 = popularity only)",
        },
        "diversity": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.0,
            "description": "MMR trade-off (0 = pure relevance)",
        },
        "candidate_cap": {
            "type": "integer",
            "minimum": 1,
            "maximum": 10000,
            "default": 200,
            "description": "How many top-scored items diversity re-ranks",
        },
    },
}
