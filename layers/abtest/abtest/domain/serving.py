"""The hot path: assign a user, record the exposure, and build recommendations.

Per container, the running experiments are cached for a short TTL (EXPERIMENT_CACHE_TTL_SECONDS,
default 10 s) and the catalog for a longer one (CATALOG_CACHE_TTL_SECONDS, default 300 s), so a warm
request costs at most one database round trip: the enrollment statement, which also records the
exposure and reads the user's profile (a user the traffic allocation excludes costs none).
What the TTL means for status changes:
- pausing or completing takes effect at once for enrollment and exposures, because the enrollment
  statement re-checks the status in the database; a surface may still pick the paused experiment for
  up to one TTL, and then serves its users untagged defaults;
- starting an experiment, or raising its traffic, reaches a warm container within one TTL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from abtest.domain.assignment import (
    Enrollment,
    RunningExperiment,
    by_id,
    experiment_variant_tag,
    for_surface,
    index_running,
)
from abtest.domain.cache import TTLCache
from abtest.domain.lifecycle import ENROLLING
from abtest.domain.models import CatalogItem, Experiment, Reason, RecommenderConfig, Variant
from abtest.domain.recommender import Catalog, Recommendation, recommend
from abtest.errors import Unavailable
from abtest.observability import logger


class AssignmentStore(Protocol):
    """What serving needs from storage (AssignmentRepository; a fake in unit tests)."""

    def running_experiments(self) -> list[Experiment]: ...

    def experiment(self, experiment_id: UUID) -> Experiment: ...

    def enroll(
        self,
        experiment_id: UUID,
        user_id: str,
        variant_id: UUID,
        *,
        context: dict[str, Any] | None,
        record_exposure: bool,
        with_profile: bool = False,
    ) -> Enrollment: ...


class CatalogStore(Protocol):
    """The recommender's catalog (CatalogRepository; a fake in unit tests)."""

    def catalog(self) -> list[CatalogItem]: ...


@dataclass(frozen=True)
class Assignment:
    """The outcome of assigning one user to one experiment."""

    experiment: Experiment
    reason: Reason
    variant: Variant | None = None
    new_assignment: bool = False
    exposure_recorded: bool = False

    @property
    def tag(self) -> str | None:
        """ "experiment_name:variant_name" when the user is enrolled."""
        if self.variant is None:
            return None
        return experiment_variant_tag(self.experiment.name, self.variant.name)


@dataclass(frozen=True)
class Recommendations:
    """Recommendations for a user, with the assignment that shaped them (if any)."""

    items: list[Recommendation]
    assignment: Assignment | None
    degraded: bool = False


class AssignmentService:
    """Assignment and recommendation over a store, with the per-container caches."""

    def __init__(
        self, store: AssignmentStore, catalog: CatalogStore, *, experiment_ttl: float, catalog_ttl: float
    ) -> None:
        self._store = store
        self._running: TTLCache[list[RunningExperiment]] = TTLCache(
            lambda: index_running(store.running_experiments()), experiment_ttl
        )
        self._catalog: TTLCache[Catalog] = TTLCache(
            lambda: Catalog.from_items(catalog.catalog()), catalog_ttl
        )

    def assign(
        self,
        experiment_id: UUID,
        user_id: str,
        *,
        context: dict[str, Any] | None = None,
        record_exposure: bool = True,
    ) -> Assignment:
        """Enroll the user (or find their stored variant) and record an exposure if asked."""
        running = by_id(self._running.get(), experiment_id)
        if running is None:
            # Not running as far as the cache knows: ask the database (NotFound for an unknown id).
            experiment = self._store.experiment(experiment_id)
            if experiment.status not in ENROLLING:
                return Assignment(experiment, Reason.NOT_RUNNING)
            running = RunningExperiment.of(experiment)
        assignment, _ = self._enroll(running, user_id, context, record_exposure, with_profile=False)
        return assignment

    def recommendations(
        self, user_id: str, limit: int, *, surface: str, context: dict[str, Any] | None = None
    ) -> Recommendations:
        """Recommendations for the user, shaped by the surface's running experiment if they are in it.

        Fails open: if the database is unavailable, the user gets untagged popularity-ranked items
        from the container's last catalog (an empty list if it never loaded one).
        """
        try:
            candidate = for_surface(self._running.get(), surface)
            assignment: Assignment | None = None
            # Users in no variant get the default config (popularity only): no profile needed.
            profile: list[float] | None = None
            if candidate is not None:
                assignment, profile = self._enroll(candidate, user_id, context, True, with_profile=True)
            catalog = self._catalog.get()
        except Unavailable:
            logger.warning("serving untagged recommendations: database unavailable")
            catalog = self._catalog.stale() or Catalog.empty()
            return Recommendations(recommend(catalog, None, RecommenderConfig(), limit), None, degraded=True)
        config = RecommenderConfig()
        if assignment is not None and assignment.variant is not None:
            # Never fails (the user is enrolled and exposed by now): known keys apply, others are
            # ignored, so an experiment of another surface cannot break recommendations.
            config = RecommenderConfig.applying(assignment.variant.config)
        return Recommendations(recommend(catalog, profile, config, limit), assignment)

    def _enroll(
        self,
        running: RunningExperiment,
        user_id: str,
        context: dict[str, Any] | None,
        record_exposure: bool,
        *,
        with_profile: bool,
    ) -> tuple[Assignment, list[float] | None]:
        experiment = running.experiment
        bucketed = running.bucket(user_id)
        if bucketed is None:
            # Traffic only ever grows and weights are frozen once running, so a user outside every
            # range now was never enrolled: no need to ask the database.
            return Assignment(experiment, Reason.EXCLUDED_BY_TRAFFIC), None
        enrollment = self._store.enroll(
            experiment.id,
            user_id,
            bucketed.id,
            context=context,
            record_exposure=record_exposure,
            with_profile=with_profile,
        )
        profile = list(enrollment.profile) if enrollment.profile is not None else None
        if enrollment.status not in ENROLLING or enrollment.variant_id is None:
            self._running.invalidate()  # the cache believed it was running
            return Assignment(experiment, Reason.NOT_RUNNING), profile
        variant = running.variant(enrollment.variant_id)
        assignment = Assignment(
            experiment,
            Reason.ASSIGNED,
            variant,
            new_assignment=enrollment.created,
            exposure_recorded=enrollment.exposed,
        )
        return assignment, profile
