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
Targeting edits and the values of the saved groups it names are cached with the experiments, so they
too reach a warm container within one TTL (they only ever decide about new enrollments).
Holdouts take effect on the very next request: the statement compares the running holdouts covering
the surface with the cache's and, when they differ, writes nothing; the service then reloads the
view and runs it again (a second round trip, only on a request that meets the change).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from abtest.domain.assignment import (
    Enrollment,
    EnrollRequest,
    LiveExperiment,
    Reason,
)
from abtest.domain.breakdowns import EnrollmentDesign, enrollment_design
from abtest.domain.cache import TTLCache
from abtest.domain.config_serving import stale_config
from abtest.domain.decision import Decision, Subject, decide
from abtest.domain.experiments import Experiment
from abtest.domain.holdouts import Holdout, memberships, running_holdouts
from abtest.domain.lifecycle import ENROLLING
from abtest.domain.namespaces import NamespaceAllocation, ServingView, build_view
from abtest.domain.recommender_config import CatalogItem, RecommenderConfig
from abtest.domain.served import Assignment, checked_config
from abtest.domain.targeting_checks import referenced_groups
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

    def saved_groups(self, keys: Sequence[str]) -> Mapping[str, Sequence[Any]]: ...

    def enroll(self, request: EnrollRequest) -> Enrollment: ...

    def enroll_surfaces(self, user_id: str, requests: Sequence[EnrollRequest]) -> list[Enrollment]: ...

    def serving_holdouts(self) -> list[Holdout]: ...


class CatalogStore(Protocol):
    """The recommender's catalog (CatalogRepository; a fake in unit tests)."""

    def catalog(self) -> list[CatalogItem]: ...


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
        self._view: TTLCache[ServingView] = TTLCache(lambda: _load_view(store), experiment_ttl)
        self._catalog: TTLCache[Catalog] = TTLCache(lambda: _load_catalog(catalog), catalog_ttl)

    def assign(
        self,
        experiment_id: UUID,
        user_id: str,
        *,
        context: dict[str, Any] | None = None,
        record_exposure: bool = True,
        attributes: Mapping[str, Any] | None = None,
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
            requested.experiment.surface,
            user_id,
            experiment_id,
            context,
            record_exposure,
            with_profile=False,
            attributes=attributes,
        )
        return assignment

    def evaluate(self, surface: str, user_id: str, attributes: Mapping[str, Any] | None = None) -> Assignment:
        """Decide about the user on a surface exactly as `recommendations` does (holdouts, namespaces,
        targeting, overrides, stickiness, exposure recorded), without ranking: OpenFeature evaluation.

        Unavailable propagates: an evaluation has no untagged fallback to serve (the caller answers
        429, and the OpenFeature provider uses the code default).
        """
        assignment, _ = self._serve(
            surface, user_id, None, None, True, with_profile=False, attributes=attributes
        )
        return assignment

    def evaluate_all(
        self, user_id: str, attributes: Mapping[str, Any] | None = None
    ) -> dict[str, Assignment]:
        """Decide about the user on every surface with a running experiment, as a prefetch: what is
        decided is stored (sticky), no exposure is recorded. All surfaces in one round trip
        (`enroll_surfaces`); a surface whose answer is stale (holdouts changed, an experiment the cache
        does not hold) or that lost a race for a new user is re-run alone through `_serve`."""
        view = self._view.get()
        surfaces = sorted(
            {
                live.experiment.surface
                for live in view.experiments.values()
                if live.experiment.status in ENROLLING
            }
        )
        subjects = [self._subject(view, surface, user_id, None, attributes) for surface in surfaces]
        requests = [
            self._request(subject, decide(subject), None, None, False, with_profile=False)
            for subject in subjects
        ]
        enrollments = self._store.enroll_surfaces(user_id, requests)
        answers: dict[str, Assignment] = {}
        for surface, subject, enrollment in zip(surfaces, subjects, enrollments, strict=True):
            final = decide(replace(subject, stored=enrollment))
            stale = self._unknown(view, enrollment) or stale_config(view, enrollment)
            if enrollment.holdouts_stale or stale or final.proposal:
                answers[surface], _ = self._serve(
                    surface, user_id, None, None, False, with_profile=False, attributes=attributes
                )
            else:
                answers[surface] = self._outcome(final, enrollment)
        return answers

    @staticmethod
    def _subject(
        view: ServingView,
        surface: str,
        user_id: str,
        experiment_id: UUID | None,
        attributes: Mapping[str, Any] | None,
    ) -> Subject:
        requested = None if experiment_id is None else view.experiments.get(experiment_id)
        return Subject(
            user_id,
            view.namespace(surface),
            requested,
            attributes=attributes or {},
            saved_groups=view.saved_groups,
            holdouts=view.holdouts_covering(surface),
        )

    @staticmethod
    def _request(
        subject: Subject,
        first: Decision,
        experiment_id: UUID | None,
        context: dict[str, Any] | None,
        record_exposure: bool,
        *,
        with_profile: bool,
    ) -> EnrollRequest:
        """The enrollment statement's request for what the cache's decision proposed."""
        proposal = first if first.proposal else None
        design = (
            enrollment_design(first.experiment.experiment, subject.attributes)
            if proposal is not None and first.experiment is not None
            else EnrollmentDesign()
        )
        return EnrollRequest(
            surface=subject.namespace.surface,
            user_id=subject.user_id,
            experiment_id=first.experiment.id if first.experiment is not None else experiment_id,
            variant_id=proposal.variant.id if proposal is not None and proposal.variant else None,
            follow_membership=experiment_id is None,
            context=context,
            # A held-out user's stored assignment is not exposed: the statement sees the group.
            record_exposure=record_exposure,
            with_profile=with_profile,
            holdout_ids=tuple(h.id for h in subject.holdouts),
            holdout_members=memberships(subject.holdouts, subject.user_id),
            bandit_period=_bandit_period(first.experiment) if proposal is not None else None,
            dimensions=design.dimensions,
            block_slots=design.block_slots,
            stratum_dimension=design.stratum_dimension,
        )

    def recommendations(
        self,
        user_id: str,
        limit: int,
        *,
        surface: str,
        context: dict[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Recommendations:
        """Recommendations for the user, shaped by their variant if they are in an experiment of the surface.

        Fails open: if the database is unavailable, the user gets untagged popularity-ranked items
        from the container's last catalog (an empty list if it never loaded one).
        """
        from abtest.domain.recommender import Catalog, recommend

        try:
            assignment, profile = self._serve(
                surface, user_id, None, context, True, with_profile=True, attributes=attributes
            )
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
            config = RecommenderConfig.applying(assignment.served.config if assignment.served else {})
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
        attributes: Mapping[str, Any] | None = None,
    ) -> tuple[Assignment, list[float] | None]:
        """Decide with the cache, run the one statement, decide again with what it found."""

        def subject_for(view: ServingView) -> Subject:
            return self._subject(view, surface, user_id, experiment_id, attributes)

        view = self._view.get()
        subject = subject_for(view)
        first = decide(subject)
        holdouts_reloaded = False
        attempt = 0
        while attempt < 2:
            enrollment = self._store.enroll(
                self._request(
                    subject, first, experiment_id, context, record_exposure, with_profile=with_profile
                )
            )
            if enrollment.holdouts_stale and not holdouts_reloaded:
                # A holdout started, paused or completed since the cache was loaded: the statement
                # wrote nothing. Reload and decide again (the one extra round trip of that change).
                holdouts_reloaded = True
                self._view.invalidate()
                view = self._view.get()
                subject = subject_for(view)
                first = decide(subject)
                continue
            attempt += 1
            if self._unknown(view, enrollment) or stale_config(view, enrollment):
                # The database names an experiment the cache does not hold: it started (or grew)
                # after the cache was loaded. Reload, so the stored variant can be served.
                self._view.invalidate()
                view = self._view.get()
                subject = subject_for(view)
            final = decide(replace(subject, stored=enrollment))
            if final.proposal and attempt == 1:
                continue  # lost a race for a new user: the next run reads the winner's rows
            return self._outcome(final, enrollment), enrollment.profile
        logger.warning("assignment not stored after a retry", extra={"user_surface": surface})
        return Assignment(None, Reason.NOT_IN_SHARE), None

    @staticmethod
    def _unknown(view: ServingView, enrollment: Enrollment) -> bool:
        forced_or_assigned = enrollment.variant_id or enrollment.forced_variant_id
        ids = (enrollment.member_of, enrollment.experiment_id if forced_or_assigned else None)
        return any(i is not None and i not in view.experiments for i in ids)

    def _outcome(self, decision: Decision, enrollment: Enrollment) -> Assignment:
        experiment = decision.experiment.experiment if decision.experiment is not None else None
        if decision.reason == Reason.OVERRIDE:  # forced: nothing was stored, any exposure was forced
            variant = decision.variant
            return Assignment(experiment, Reason.OVERRIDE, variant, exposure_recorded=enrollment.exposed)
        if decision.reason != Reason.ASSIGNED:
            cached = decision.experiment.experiment.status if decision.experiment is not None else None
            if decision.reason == Reason.NOT_RUNNING and cached in ENROLLING:
                self._view.invalidate()  # the cache believed it was running
            return Assignment(experiment, decision.reason)
        assigned = Assignment(
            experiment,
            Reason.ASSIGNED,
            decision.variant,
            new_assignment=enrollment.created,
            exposure_recorded=enrollment.exposed,
        )
        return checked_config(assigned)


def _load_view(store: AssignmentStore) -> ServingView:
    """The serving view: experiments, namespaces, and the saved groups their targeting names (all
    loaded together, once per TTL, so a warm request still costs one round trip), and the running
    holdouts."""
    experiments = store.serving_experiments()
    keys = sorted(set().union(*(referenced_groups(e.targeting) for e in experiments)))
    groups = store.saved_groups(keys) if keys else {}
    return build_view(experiments, store.namespaces(), groups, running_holdouts(store.serving_holdouts()))


def _bandit_period(live: LiveExperiment | None) -> int | None:
    """The open period of a bandit as this cache knows it: its weights chose the proposed variant."""
    if live is None or live.experiment.bandit is None:
        return None
    return live.experiment.bandit.period
