"""The hot path: decide about a user, store the decision, record the exposure, build recommendations.

Per container, the experiments holding namespace buckets (running, paused) and every namespace's
bucket owners are cached for a short TTL (EXPERIMENT_CACHE_TTL_SECONDS, default 10 s), the catalog
for a longer one (CATALOG_CACHE_TTL_SECONDS, default 300 s). Every warm request then costs exactly
one database round trip, the enrollment statement (abtest.storage.assignments), which reads the
user's namespace membership and stored assignment, stores a new one if the pipeline proposed it,
records the exposure and reads the user's profile, all at once. A user the cache says is excluded
costs the same statement in read-only form (three primary-key probes, no write), because only the
database knows whether another container, with a fresher cache, already enrolled them: the variant
served never disagrees with the stored assignment.

What the TTL means for changes: pausing or completing takes effect at once (the statement re-checks
the status); starting an experiment, or growing its traffic or share, reaches a warm container
within one TTL (a user it already enrolled elsewhere is served their stored variant meanwhile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from abtest.domain.assignment import Enrollment, EnrollRequest, experiment_variant_tag
from abtest.domain.cache import TTLCache
from abtest.domain.decision import Decision, Subject, decide
from abtest.domain.lifecycle import ENROLLING
from abtest.domain.models import CatalogItem, Experiment, Reason, RecommenderConfig, Variant
from abtest.domain.namespaces import NamespaceAllocation, ServingView, build_view
from abtest.errors import Unavailable
from abtest.observability import logger

if TYPE_CHECKING:
    # The recommender (numpy) is imported where ranking happens, on the first catalog load or
    # recommendation: /assignments never needs it, and no handler's import pays for it (numpy is
    # ~60 ms of a cold start; tests/unit/test_cold_start.py pins it).
    from abtest.domain.recommender import Catalog, Recommendation


class AssignmentStore(Protocol):
    """What serving needs from storage (AssignmentRepository; a fake in unit tests)."""

    def serving_experiments(self) -> list[Experiment]: ...

    def namespaces(self) -> list[NamespaceAllocation]: ...

    def experiment(self, experiment_id: UUID) -> Experiment: ...

    def enroll(self, request: EnrollRequest) -> Enrollment: ...


class CatalogStore(Protocol):
    """The recommender's catalog (CatalogRepository; a fake in unit tests)."""

    def catalog(self) -> list[CatalogItem]: ...


@dataclass(frozen=True)
class Assignment:
    """The outcome of deciding about one user: the experiment it concerns (if any) and why."""

    experiment: Experiment | None
    reason: Reason
    variant: Variant | None = None
    new_assignment: bool = False
    exposure_recorded: bool = False

    @property
    def tag(self) -> str | None:
        """ "experiment_name:variant_name" when the user is enrolled."""
        if self.variant is None or self.experiment is None:
            return None
        return experiment_variant_tag(self.experiment.name, self.variant.name)


@dataclass(frozen=True)
class Recommendations:
    """Recommendations for a user, with the assignment that shaped them (if any)."""

    items: list[Recommendation]
    assignment: Assignment | None
    degraded: bool = False


def _load_catalog(store: CatalogStore) -> Catalog:
    from abtest.domain.recommender import Catalog

    return Catalog.from_items(store.catalog())


class AssignmentService:
    """Assignment and recommendation over a store, with the per-container caches."""

    def __init__(
        self, store: AssignmentStore, catalog: CatalogStore, *, experiment_ttl: float, catalog_ttl: float
    ) -> None:
        self._store = store
        self._view: TTLCache[ServingView] = TTLCache(
            lambda: build_view(store.serving_experiments(), store.namespaces()), experiment_ttl
        )
        self._catalog: TTLCache[Catalog] = TTLCache(lambda: _load_catalog(catalog), catalog_ttl)

    def assign(
        self,
        experiment_id: UUID,
        user_id: str,
        *,
        context: dict[str, Any] | None = None,
        record_exposure: bool = True,
    ) -> Assignment:
        """Enroll the user in this experiment if the pipeline says so (or find their stored variant),
        recording an exposure if asked; NotFound for an unknown experiment."""
        view = self._view.get()
        if experiment_id not in view.experiments:
            # Not running or paused as far as the cache knows: ask the database.
            experiment = self._store.experiment(experiment_id)
            if experiment.status not in ENROLLING:
                return Assignment(experiment, Reason.NOT_RUNNING)
            self._view.invalidate()  # started since the cache was loaded: its buckets are news
            view = self._view.get()
            if experiment_id not in view.experiments:
                return Assignment(experiment, Reason.NOT_RUNNING)
        requested = view.experiments[experiment_id]
        assignment, _ = self._serve(
            requested.experiment.surface, user_id, experiment_id, context, record_exposure, with_profile=False
        )
        return assignment

    def recommendations(
        self, user_id: str, limit: int, *, surface: str, context: dict[str, Any] | None = None
    ) -> Recommendations:
        """Recommendations for the user, shaped by their variant if they are in an experiment of the surface.

        Fails open: if the database is unavailable, the user gets untagged popularity-ranked items
        from the container's last catalog (an empty list if it never loaded one).
        """
        from abtest.domain.recommender import Catalog, recommend

        try:
            assignment, profile = self._serve(surface, user_id, None, context, True, with_profile=True)
            catalog = self._catalog.get()
        except Unavailable:
            logger.warning("serving untagged recommendations: database unavailable")
            catalog = self._catalog.stale() or Catalog.empty()
            unavailable = Assignment(None, Reason.DATABASE_UNAVAILABLE)
            items = recommend(catalog, None, RecommenderConfig(), limit)
            return Recommendations(items, unavailable, degraded=True)
        config = RecommenderConfig()
        if assignment.variant is not None:
            # Never fails (the user is enrolled and exposed by now): known keys apply, others are
            # ignored, so an experiment of another surface cannot break recommendations.
            config = RecommenderConfig.applying(assignment.variant.config)
        return Recommendations(recommend(catalog, profile, config, limit), assignment)

    def _serve(
        self,
        surface: str,
        user_id: str,
        experiment_id: UUID | None,
        context: dict[str, Any] | None,
        record_exposure: bool,
        *,
        with_profile: bool,
    ) -> tuple[Assignment, list[float] | None]:
        """Decide with the cache, run the one statement, decide again with what it found."""
        view = self._view.get()
        subject = Subject(
            user_id,
            view.namespace(surface),
            None if experiment_id is None else view.experiments.get(experiment_id),
        )
        first = decide(subject)
        for attempt in range(2):
            proposal = first if first.proposal else None
            target = first.experiment.id if first.experiment is not None else experiment_id
            enrollment = self._store.enroll(
                EnrollRequest(
                    surface=surface,
                    user_id=user_id,
                    experiment_id=target,
                    variant_id=proposal.variant.id if proposal is not None and proposal.variant else None,
                    follow_membership=experiment_id is None,
                    context=context,
                    record_exposure=record_exposure,
                    with_profile=with_profile,
                )
            )
            if self._unknown(view, enrollment):
                # The database names an experiment the cache does not hold: it started (or grew)
                # after the cache was loaded. Reload, so the stored variant can be served.
                self._view.invalidate()
                view = self._view.get()
                requested = view.experiments.get(experiment_id) if experiment_id is not None else None
                subject = Subject(user_id, view.namespace(surface), requested)
            final = decide(Subject(subject.user_id, subject.namespace, subject.requested, enrollment))
            if final.proposal and attempt == 0:
                continue  # lost a race for a new user: the next run reads the winner's rows
            return self._outcome(final, enrollment), enrollment.profile
        logger.warning("assignment not stored after a retry", extra={"user_surface": surface})
        return Assignment(None, Reason.NOT_IN_SHARE), None

    @staticmethod
    def _unknown(view: ServingView, enrollment: Enrollment) -> bool:
        ids = (enrollment.member_of, enrollment.experiment_id if enrollment.variant_id else None)
        return any(i is not None and i not in view.experiments for i in ids)

    def _outcome(self, decision: Decision, enrollment: Enrollment) -> Assignment:
        experiment = decision.experiment.experiment if decision.experiment is not None else None
        if decision.reason != Reason.ASSIGNED:
            cached = decision.experiment.experiment.status if decision.experiment is not None else None
            if decision.reason == Reason.NOT_RUNNING and cached in ENROLLING:
                self._view.invalidate()  # the cache believed it was running
            return Assignment(experiment, decision.reason)
        return Assignment(
            experiment,
            Reason.ASSIGNED,
            decision.variant,
            new_assignment=enrollment.created,
            exposure_recorded=enrollment.exposed,
        )
