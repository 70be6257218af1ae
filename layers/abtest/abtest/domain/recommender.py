"""The built-in recommender: popularity blended with similarity to the user's profile (numpy, pure).

score_i = (1 - lora_boost) * popularity_i + lora_boost * similarity_i

popularity_i is log1p(popularity) scaled to [0, 1] over the catalog; similarity_i is the cosine between
the item's embedding and the user's profile vector, mapped from [-1, 1] to [0, 1] (0.5 for users with
no profile, so they get pure popularity order). `lora_boost` is the name the original example used for
how strongly the personalised signal is boosted. With `diversity` > 0 the top `candidate_cap` items
are re-ranked by maximal marginal relevance (Carbonell & Goldstein, 1998) so near-duplicates do not
fill the list. A variant's config sets these keys; unknown keys or out-of-range values are rejected
when the experiment is created.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from abtest.domain.recommender_config import CatalogItem, RecommenderConfig

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    title: str
    score: float


@dataclass(frozen=True)
class Catalog:
    """Items as matrices: unit-norm embeddings (n x d) and popularity scaled to [0, 1]."""

    ids: tuple[str, ...]
    titles: tuple[str, ...]
    embeddings: FloatArray
    popularity: FloatArray

    @classmethod
    def from_items(cls, items: Iterable[CatalogItem]) -> Catalog:
        """Build from the stored items; embeddings must share one length."""
        rows = list(items)
        if not rows:
            return cls.empty()
        ids = [item.id for item in rows]
        titles = [item.title for item in rows]
        vectors = [item.embedding for item in rows]
        popularity = [item.popularity for item in rows]
        if len({len(vector) for vector in vectors}) != 1:
            raise ValueError("item embeddings must all have the same length")
        embeddings = np.asarray(vectors, dtype=np.float64)
        scaled = np.log1p(np.maximum(np.asarray(popularity, dtype=np.float64), 0.0))
        top = scaled.max()
        return cls(
            ids=tuple(ids),
            titles=tuple(titles),
            embeddings=_unit_rows(embeddings),
            popularity=scaled / top if top > 0 else np.zeros_like(scaled),
        )

    @classmethod
    def empty(cls) -> Catalog:
        return cls((), (), np.zeros((0, 1)), np.zeros(0))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dimension(self) -> int:
        return int(self.embeddings.shape[1])


def _unit_rows(matrix: FloatArray) -> FloatArray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: FloatArray = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return result


def similarity(catalog: Catalog, profile: Sequence[float] | None) -> FloatArray:
    """Cosine similarity of every item to the profile, mapped to [0, 1]; 0.5 without a usable profile."""
    if profile is None or len(profile) != catalog.dimension:
        return np.full(len(catalog), 0.5)
    vector = np.asarray(profile, dtype=np.float64)
    norm = np.linalg.norm(vector)
    if norm == 0 or not np.isfinite(norm):
        return np.full(len(catalog), 0.5)
    result: FloatArray = (catalog.embeddings @ (vector / norm) + 1.0) / 2.0
    return result


def _top(scores: FloatArray, count: int) -> npt.NDArray[np.intp]:
    """Indices of the `count` highest scores, best first, ties broken by catalog order."""
    count = min(count, len(scores))
    if count == 0:
        return np.zeros(0, dtype=np.intp)
    if count < len(scores):
        # Include every item tied with the cut-off so the tie-break below is by catalog order.
        threshold = np.partition(scores, len(scores) - count)[len(scores) - count]
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((candidates, -scores[candidates]))
    chosen: npt.NDArray[np.intp] = candidates[order][:count]
    return chosen


def recommend(
    catalog: Catalog, profile: Sequence[float] | None, config: RecommenderConfig, limit: int
) -> list[Recommendation]:
    """The `limit` best items for a user with `profile` under `config`, best first."""
    if len(catalog) == 0 or limit <= 0:
        return []
    boost = config.lora_boost
    scores = (1.0 - boost) * catalog.popularity + boost * similarity(catalog, profile)
    if config.diversity == 0:
        picked = [int(i) for i in _top(scores, limit)]
    else:
        picked = _mmr(catalog, scores, config, limit)
    return [Recommendation(catalog.ids[i], catalog.titles[i], round(float(scores[i]), 6)) for i in picked]


def _mmr(catalog: Catalog, scores: FloatArray, config: RecommenderConfig, limit: int) -> list[int]:
    candidates = _top(scores, max(config.candidate_cap, limit))
    vectors = catalog.embeddings[candidates]
    relevance = scores[candidates]
    redundancy = np.full(len(candidates), -np.inf)
    available = np.ones(len(candidates), dtype=bool)
    picked: list[int] = []
    lam = config.diversity
    for _ in range(min(limit, len(candidates))):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        value = np.where(available, (1 - lam) * relevance - lam * penalty, -np.inf)
        best = int(np.argmax(value))  # argmax takes the first maximum: catalog-order tie-break
        picked.append(int(candidates[best]))
        available[best] = False
        redundancy = np.maximum(redundancy, vectors @ vectors[best])
    return picked
