"""The numpy recommender: blend, ties, diversity, degenerate inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from abtest.domain.config_schemas import check_schema, require_valid_configs
from abtest.domain.recommender import Catalog, recommend, similarity
from abtest.domain.recommender_config import RECOMMENDER_CONFIG_SCHEMA, CatalogItem, RecommenderConfig
from abtest.errors import InvalidInput

ITEMS = [
    ("popular", "Popular", [1.0, 0.0], 1000.0),
    ("similar", "Similar", [0.0, 1.0], 1.0),
    ("middle", "Middle", [0.7, 0.7], 30.0),
]


def catalog_of(rows: list[tuple[str, str, list[float], float]]) -> Catalog:
    """A catalog from (id, title, embedding, popularity) rows, as CatalogRepository returns them."""
    return Catalog.from_items(
        CatalogItem(id=item_id, title=title, embedding=embedding, popularity=popularity)
        for item_id, title, embedding, popularity in rows
    )


def ids(items: list) -> list[str]:  # type: ignore[type-arg]
    return [item.item_id for item in items]


def test_popularity_only_without_boost() -> None:
    catalog = catalog_of(ITEMS)
    assert ids(recommend(catalog, [0.0, 1.0], RecommenderConfig(lora_boost=0.0), 3)) == [
        "popular",
        "middle",
        "similar",
    ]


def test_full_boost_ranks_by_similarity_to_the_profile() -> None:
    catalog = catalog_of(ITEMS)
    ranked = recommend(catalog, [0.0, 1.0], RecommenderConfig(lora_boost=1.0), 3)
    assert ids(ranked) == ["similar", "middle", "popular"]
    assert ranked[0].score == pytest.approx(1.0)


def test_blend_matches_the_documented_formula() -> None:
    catalog = catalog_of(ITEMS)
    boost = 0.3
    (top,) = recommend(catalog, [0.0, 1.0], RecommenderConfig(lora_boost=boost), 1)
    popularity = np.log1p([1000.0, 1.0, 30.0]) / np.log1p(1000.0)
    cosine = np.array([0.0, 1.0, np.sqrt(0.5)])
    expected = (1 - boost) * popularity + boost * (cosine + 1) / 2
    assert top.item_id == ITEMS[int(np.argmax(expected))][0]
    assert top.score == pytest.approx(float(expected.max()), abs=1e-6)


@pytest.mark.parametrize("profile", [None, [0.0, 0.0], [1.0, 2.0, 3.0], [float("nan"), 1.0]])
def test_unusable_profiles_fall_back_to_neutral_similarity(profile: list[float] | None) -> None:
    catalog = catalog_of(ITEMS)
    assert np.all(similarity(catalog, profile) == 0.5)
    assert ids(recommend(catalog, profile, RecommenderConfig(lora_boost=0.9), 3))[0] == "popular"


def test_ties_break_by_catalog_order() -> None:
    items = [(f"i{n}", "", [1.0, 0.0], 5.0) for n in range(10)]
    assert ids(recommend(catalog_of(items), None, RecommenderConfig(), 4)) == ["i0", "i1", "i2", "i3"]


def test_diversity_skips_near_duplicates() -> None:
    items = [
        ("a", "", [1.0, 0.0], 100.0),
        ("a-copy", "", [1.0, 0.01], 99.0),
        ("b", "", [0.0, 1.0], 50.0),
    ]
    catalog = catalog_of(items)
    assert ids(recommend(catalog, None, RecommenderConfig(), 2)) == ["a", "a-copy"]
    assert ids(recommend(catalog, None, RecommenderConfig(diversity=0.5), 2)) == ["a", "b"]


def test_empty_catalog_and_zero_popularity() -> None:
    assert recommend(Catalog.empty(), None, RecommenderConfig(), 5) == []
    flat = catalog_of([("x", "", [1.0], 0.0), ("y", "", [1.0], 0.0)])
    assert ids(recommend(flat, None, RecommenderConfig(), 5)) == ["x", "y"]


def test_ragged_embeddings_are_rejected() -> None:
    with pytest.raises(ValueError, match="same length"):
        catalog_of([("x", "", [1.0], 1.0), ("y", "", [1.0, 2.0], 1.0)])


@given(
    st.integers(min_value=1, max_value=40),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=1),
    st.integers(min_value=0, max_value=2**31),
)
def test_results_are_unique_sorted_when_not_diverse_and_bounded(
    limit: int, boost: float, diversity: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    items = [(f"i{n}", "", list(rng.normal(size=4)), float(rng.exponential(10))) for n in range(30)]
    catalog = catalog_of(items)
    profile = list(rng.normal(size=4))
    plain = recommend(catalog, profile, RecommenderConfig(lora_boost=boost), limit)
    assert len(plain) == min(limit, 30)
    assert [r.score for r in plain] == sorted((r.score for r in plain), reverse=True)
    diverse = recommend(catalog, profile, RecommenderConfig(lora_boost=boost, diversity=diversity), limit)
    assert len({r.item_id for r in diverse}) == len(diverse) == min(limit, 30)
    assert all(0.0 <= r.score <= 1.0 for r in diverse)


RECOMMENDER_SCHEMA = check_schema(RECOMMENDER_CONFIG_SCHEMA)


@pytest.mark.parametrize(
    ("config", "field", "keyword"),
    [
        ({"lora_boost": 1.5}, "variants[1].config.lora_boost", "maximum"),
        ({"lora_boost": "high"}, "variants[1].config.lora_boost", "type"),
        ({"lora_boost": True}, "variants[1].config.lora_boost", "type"),
        ({"boost": 0.3}, "variants[1].config.boost", "additionalProperties"),
        ({"candidate_cap": 0}, "variants[1].config.candidate_cap", "minimum"),
        ({"candidate_cap": 2.5}, "variants[1].config.candidate_cap", "type"),
        ({"diversity": -0.1}, "variants[1].config.diversity", "minimum"),
    ],
)
def test_recommendation_surface_configs_are_validated(
    config: dict[str, object], field: str, keyword: str
) -> None:
    # The recommendations surface's schema (migration 0015) is the one home of these checks.
    with pytest.raises(InvalidInput) as raised:
        require_valid_configs(RECOMMENDER_SCHEMA, [{"lora_boost": 0.3}, config])
    assert raised.value.field == field
    assert raised.value.details["errors"][0]["keyword"] == keyword


def test_every_config_the_schema_accepts_is_one_the_recommender_reads_as_given() -> None:
    configs = (
        {},
        {"lora_boost": 0, "diversity": 1},
        {"candidate_cap": 10_000, "lora_boost": 0.25},
        {"candidate_cap": 5.0},  # an integer to JSON Schema: the recommender reads it as 5
    )
    for config in configs:
        require_valid_configs(RECOMMENDER_SCHEMA, [config])
        applied = RecommenderConfig.applying(config)
        assert all(getattr(applied, key) == value for key, value in config.items())
    assert set(RECOMMENDER_CONFIG_SCHEMA["properties"]) == set(RecommenderConfig.model_fields)


def test_the_migration_installs_the_recommender_schema() -> None:
    from importlib import resources

    text = (resources.files("abtest.storage.migrations") / "0015_config_schemas.sql").read_text()
    body = text.split("$schema$")[1]
    assert json.loads(body) == RECOMMENDER_CONFIG_SCHEMA


def test_surfaces_without_a_schema_accept_any_config() -> None:
    require_valid_configs(None, [{"button": "green"}, {"anything": [1, 2]}])
