"""An in-memory AssignmentStore that mirrors the enrollment statement and the bucket allocation, so
the pipeline and the service can be tested (and property-tested) without a database."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from abtest.contract.blocks import stratified_variant
from abtest.contract.namespaces import NAMESPACE_BUCKETS, bucket_ranges
from abtest.domain.assignment import Enrollment, EnrollRequest
from abtest.domain.experiments import Experiment, Status, Variant
from abtest.domain.holdouts import HOLDING_OUT, Holdout
from abtest.domain.lifecycle import ENROLLING, EXPOSING, HOLDING_BUCKETS
from abtest.domain.namespaces import NamespaceAllocation, NamespaceFull, buckets_for_share, choose_buckets
from abtest.domain.recommender_config import CatalogItem
from abtest.errors import NotFound, Unavailable

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def make_experiment(
    name: str = "exp",
    *,
    status: Status = Status.RUNNING,
    traffic: float = 1.0,
    surface: str = "recommendations",
    share: float = 1.0,
    weights: tuple[float, ...] = (0.5, 0.5),
    targeting: dict[str, Any] | None = None,
) -> Experiment:
    experiment_id = uuid.uuid4()
    variants = [
        Variant(
            id=uuid.uuid4(),
            name="control" if i == 0 else f"treatment{i}" if len(weights) > 2 else "treatment",
            description="",
            weight=w,
            config={"lora_boost": 0.0 if i == 0 else 1.0},
            position=i,
        )
        for i, w in enumerate(weights)
    ]
    return Experiment(
        id=experiment_id,
        name=name,
        description="",
        status=status,
        traffic_allocation=traffic,
        salt=str(experiment_id),
        surface=surface,
        namespace_share=share,
        variants=variants,
        targeting=targeting or {},
        created_at=NOW,
        updated_at=NOW,
        started_at=NOW if status != Status.DRAFT else None,
        completed_at=None,
    )


@dataclass
class FakeStore:
    experiments: list[Experiment] = field(default_factory=list)
    items: list[tuple[str, str, list[float], float]] = field(
        default_factory=lambda: [("pop", "", [1.0, 0.0], 100.0), ("niche", "", [0.0, 1.0], 1.0)]
    )
    profiles: dict[str, list[float]] = field(default_factory=dict)
    assignments: dict[tuple[UUID, str], UUID] = field(default_factory=dict)
    # Breakdowns and strata (the statement's dimension_final, block and inserted parts).
    captured: dict[tuple[UUID, str], dict[str, str] | None] = field(default_factory=dict)
    stratum_counters: dict[tuple[UUID, str], int] = field(default_factory=dict)
    members: dict[tuple[str, str], UUID] = field(default_factory=dict)
    salts: dict[str, str] = field(default_factory=dict)
    owners: dict[str, list[UUID | None]] = field(default_factory=dict)
    released: dict[str, set[int]] = field(default_factory=dict)
    exposures: int = 0
    # (experiment_id, user_id) -> forced variant id, in the order written (the oldest wins on a surface)
    overrides: dict[tuple[UUID, str], UUID] = field(default_factory=dict)
    forced_exposures: int = 0
    groups: dict[str, list[Any]] = field(default_factory=dict)
    holdouts: list[Holdout] = field(default_factory=list)
    holdout_members: dict[tuple[UUID, str], str] = field(default_factory=dict)
    # (experiment_id, user_id) -> the bandit period an assignment recorded (a fixed one records None)
    periods: dict[tuple[UUID, str], int | None] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    down: bool = False

    # -- what the experiments repository does (lifecycle with allocation)

    def add(self, experiment: Experiment) -> Experiment:
        """Store an experiment; one that holds buckets takes its share as if it had just started."""
        self.experiments.append(experiment)
        if experiment.status in HOLDING_BUCKETS:
            self.take(experiment.id, experiment.namespace_share)
        return experiment

    def get(self, experiment_id: UUID) -> Experiment:
        for e in self.experiments:
            if e.id == experiment_id:
                return e
        raise NotFound("no such experiment")

    def _replace(self, experiment_id: UUID, **update: Any) -> None:
        for i, e in enumerate(self.experiments):
            if e.id == experiment_id:
                self.experiments[i] = e.model_copy(update=update)

    def take(self, experiment_id: UUID, share: float) -> None:
        experiment = self.get(experiment_id)
        surface = experiment.surface
        self.salts.setdefault(surface, f"ns-{uuid.uuid4()}")
        owners = self.owners.setdefault(surface, [None] * NAMESPACE_BUCKETS)
        released = self.released.setdefault(surface, set())
        held = sum(1 for o in owners if o == experiment_id)
        wanted = buckets_for_share(share) - held
        if wanted <= 0:
            return
        free = [b for b, o in enumerate(owners) if o is None]
        if wanted > len(free):
            raise NamespaceFull(surface, share, held, len(free))
        never = [b for b in free if b not in released]
        for bucket in choose_buckets(experiment_id, wanted, never, [b for b in free if b in released]):
            owners[bucket] = experiment_id
        self._replace(experiment_id, namespace_share=share)

    def set_status(self, experiment_id: UUID, status: Status) -> None:
        current = self.get(experiment_id).status
        if current == Status.DRAFT and status in HOLDING_BUCKETS:
            self._replace(experiment_id, status=status)
            self.take(experiment_id, self.get(experiment_id).namespace_share)
            return
        if status not in HOLDING_BUCKETS and current in HOLDING_BUCKETS:
            owners = self.owners[self.get(experiment_id).surface]
            for bucket, owner in enumerate(owners):
                if owner == experiment_id:
                    owners[bucket] = None
                    self.released[self.get(experiment_id).surface].add(bucket)
        self._replace(experiment_id, status=status)

    def buckets_of(self, experiment_id: UUID) -> set[int]:
        owners = self.owners.get(self.get(experiment_id).surface, [])
        return {b for b, o in enumerate(owners) if o == experiment_id}

    # -- the AssignmentStore protocol

    def _call(self, name: str) -> None:
        if self.down:
            raise Unavailable("down")
        self.calls.append(name)

    def serving_experiments(self) -> list[Experiment]:
        self._call("serving_experiments")
        return [e for e in self.experiments if e.status in HOLDING_BUCKETS]

    def namespaces(self) -> list[NamespaceAllocation]:
        self._call("namespaces")
        out = []
        for surface, salt in self.salts.items():
            by_owner: dict[UUID, list[int]] = {}
            for bucket, owner in enumerate(self.owners.get(surface, [])):
                if owner is not None:
                    by_owner.setdefault(owner, []).append(bucket)
            out.append(NamespaceAllocation(surface, salt, {o: bucket_ranges(b) for o, b in by_owner.items()}))
        return out

    def serving_holdouts(self) -> list[Holdout]:
        self._call("serving_holdouts")
        return [h for h in self.holdouts if h.status in HOLDING_OUT]

    def experiment(self, experiment_id: UUID) -> Experiment:
        self._call("experiment")
        return self.get(experiment_id)

    def saved_groups(self, keys: Sequence[str]) -> dict[str, list[Any]]:
        self._call("saved_groups")
        return {key: list(self.groups[key]) for key in keys if key in self.groups}

    def enroll_surfaces(self, user_id: str, requests: Sequence[EnrollRequest]) -> list[Enrollment]:
        """What _ENROLL_SURFACES does: `enroll` per request, in one statement (one call)."""
        self._call("enroll_surfaces")
        answers = []
        for request in requests:
            answers.append(self.enroll(request))
            self.calls.pop()  # part of this one statement
        return answers

    def enroll(self, request: EnrollRequest) -> Enrollment:
        """What _ENROLL does, in Python."""
        self._call("enroll")
        key = (request.surface, request.user_id)
        member = self.members.get(key)
        running = sorted(
            h.id for h in self.serving_holdouts() if h.surfaces is None or request.surface in h.surfaces
        )
        self.calls.pop()  # serving_holdouts above is part of this statement, not a round trip
        fresh = running == sorted(request.holdout_ids)
        if fresh:
            for holdout_id, group in request.holdout_members:
                self.holdout_members.setdefault((holdout_id, request.user_id), group)
        if member is not None and self.get(member).status == Status.COMPLETED:
            member = None
        target_id = (member or request.experiment_id) if request.follow_membership else request.experiment_id
        forced = self._forced(request)
        if forced is not None:
            target_id = forced[0]
        if target_id is None:
            return Enrollment(None, None, None, member, holdouts_stale=not fresh)
        try:
            target = self.get(target_id)
        except NotFound:
            return Enrollment(None, None, None, member, holdouts_stale=not fresh)
        stored = self.assignments.get((target.id, request.user_id))
        created = False
        if (
            forced is None
            and request.variant_id is not None
            and target.id == request.experiment_id
            and target.status in ENROLLING
            and stored is None
            # No live membership at all: one in the target itself (without an assignment there) makes
            # the statement's membership insert meet it and change nothing, so nothing is stored.
            and member is None
            and fresh
        ):
            self.members[key] = target.id
            variant_id = request.variant_id
            if request.block_slots:  # stratified: the stratum's next block slot
                stratum = (request.dimensions or {}).get(request.stratum_dimension or "", "(none)")
                position = self.stratum_counters.get((target.id, stratum), 0)
                self.stratum_counters[(target.id, stratum)] = position + 1
                index = stratified_variant(target.salt, stratum, position, range(len(request.block_slots)))
                variant_id = request.block_slots[index]
            self.assignments[(target.id, request.user_id)] = variant_id
            self.periods[(target.id, request.user_id)] = request.bandit_period
            self.captured[(target.id, request.user_id)] = request.dimensions
            stored, created, member = variant_id, True, target.id
        if forced is not None:  # never stored; the exposure is a forced one
            exposed = request.record_exposure and target.status in EXPOSING and fresh
            self.forced_exposures += exposed
            profile = self.profiles.get(request.user_id) if request.with_profile else None
            return Enrollment(
                target.id,
                target.status,
                stored,
                member,
                False,
                exposed,
                profile,
                forced_variant_id=forced[1],
                holdouts_stale=not fresh,
            )
        held_out = any(group == "holdout" for _, group in request.holdout_members)
        exposed = (
            stored is not None
            and request.record_exposure
            and target.status in EXPOSING
            and fresh
            and not held_out
        )
        self.exposures += exposed
        profile = self.profiles.get(request.user_id) if request.with_profile and stored is not None else None
        return Enrollment(
            target.id, target.status, stored, member, created, exposed, profile, holdouts_stale=not fresh
        )

    def _forced(self, request: EnrollRequest) -> tuple[UUID, UUID] | None:
        """The override the statement's `forced` CTE finds: (experiment id, variant id)."""
        if not request.follow_membership:
            key = (request.experiment_id, request.user_id)
            if request.experiment_id is None or key not in self.overrides:
                return None
            return request.experiment_id, self.overrides[(request.experiment_id, request.user_id)]
        for (experiment_id, user_id), variant_id in self.overrides.items():
            experiment = self.get(experiment_id)
            if (
                user_id == request.user_id
                and experiment.surface == request.surface
                and experiment.status in ENROLLING
            ):
                return experiment_id, variant_id
        return None

    def catalog(self) -> list[CatalogItem]:
        self._call("catalog")
        return [CatalogItem(id=i, title=t, embedding=e, popularity=p) for i, t, e, p in self.items]
