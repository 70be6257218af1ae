"""A reproducible demo catalog for the built-in recommender (`make seed`; `make run` seeds an empty one).

Items belong to topics: each embedding is its topic's centroid plus noise, and popularity follows a
Zipf-like law, so "popular" and "similar to me" disagree and the variants' `lora_boost` visibly changes
the ranking. Users `user-1` ... `user-N` get profiles near one or two topics; other user ids have none
and are served by popularity. `make seed` also creates the draft experiment the files in events/ name.
"""

from __future__ import annotations

from uuid import UUID

import numpy as np

from abtest.domain.experiments import Experiment, ExperimentCreate
from abtest.errors import NotFound
from abtest.storage import CatalogRepository, ExperimentRepository
from abtest.storage.database import get_database

# The id events/get_experiment.json and events/start_experiment.json name.
DEMO_EXPERIMENT_ID = UUID("3f1c9d2e-7b4a-4c1e-9a65-0d2b8e6f4a10")
# Its own surface, so starting it never changes what POST /recommendations serves (the quick start
# walk, docs/quickstart.md).
DEMO_EXPERIMENT = ExperimentCreate.model_validate(
    {
        "name": "demo_checkout_button",
        "description": "Demo experiment that the sample events in events/ read and start",
        "surface": "checkout",
        "salt": "demo-checkout-2026",
        "variants": [
            {"name": "control", "weight": 0.5, "config": {"button": "blue"}},
            {"name": "green", "weight": 0.5, "config": {"button": "green"}},
        ],
    }
)

TOPICS = ("jazz", "rock", "classical", "hip-hop", "electronic", "folk", "pop", "ambient")


def demo_catalog(
    n_items: int = 2000, dimension: int = 16, n_users: int = 500, seed: int = 7
) -> tuple[list[tuple[str, str, list[float], float]], list[tuple[str, list[float]]]]:
    """(items, profiles) for the demo; the same arguments always give the same data."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(len(TOPICS), dimension))
    topics = rng.integers(0, len(TOPICS), size=n_items)
    embeddings = centroids[topics] + 0.6 * rng.normal(size=(n_items, dimension))
    popularity = 1000.0 / (1.0 + rng.permutation(n_items)) ** 0.9
    items = [
        (
            f"item-{i:05d}",
            f"{TOPICS[topics[i]].title()} pick #{i}",
            [round(float(x), 6) for x in embeddings[i]],
            round(float(popularity[i]), 6),
        )
        for i in range(n_items)
    ]
    profiles = []
    for n in range(1, n_users + 1):
        liked = rng.choice(len(TOPICS), size=rng.integers(1, 3), replace=False)
        vector = centroids[liked].mean(axis=0) + 0.3 * rng.normal(size=dimension)
        profiles.append((f"user-{n}", [round(float(x), 6) for x in vector]))
    return items, profiles


def seed(force: bool = True) -> int:
    """Load the demo catalog; with force=False only into an empty catalog. Returns items loaded."""
    repository = CatalogRepository(get_database())
    if not force and repository.count_items() > 0:
        return 0
    items, profiles = demo_catalog()
    repository.replace_catalog(items, profiles)
    return len(items)


def seed_demo_experiment() -> Experiment:
    """The draft demo experiment with the fixed id events/ names; an existing one is kept as it is."""
    repository = ExperimentRepository(get_database())
    try:
        return repository.get(DEMO_EXPERIMENT_ID)
    except NotFound:
        return repository.create(DEMO_EXPERIMENT, experiment_id=DEMO_EXPERIMENT_ID)
