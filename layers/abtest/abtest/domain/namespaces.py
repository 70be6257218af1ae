"""Namespaces in the domain: how shares become buckets, which free buckets an experiment takes, and
the per-container view the decision pipeline reads (who owns which bucket of each surface).

Allocation policy (see docs/api/surfaces.md): an experiment's share is round(share * 10000) buckets.
Starting it (or growing its share) takes that many *free* buckets: never-used buckets first, then
buckets released by completed experiments, and within each group a pseudo-random sample ranked by
MurmurHash3(f"{experiment_id}:{bucket}"). A random sample keeps each experiment's users a random
sample of the surface's users whatever the bucket history (contiguous ranges would tie an experiment
to whichever part of the hash space happened to be free); preferring never-used buckets keeps users
who were in a completed experiment out of the next one for as long as there is fresh space
(Optimizely's stratified sampling; Spotify's bucket-reuse study).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID

import mmh3
from pydantic import BaseModel, Field

from abtest.contract.namespaces import NAMESPACE_BUCKETS, namespace_bucket
from abtest.domain.assignment import AssignedVariant, LiveExperiment
from abtest.domain.experiments import Experiment, Status
from abtest.domain.holdouts import RunningHoldout, covering
from abtest.domain.lifecycle import HOLDING_BUCKETS
from abtest.errors import Conflict, ErrorCode


def buckets_for_share(share: float) -> int:
    """How many of the 10,000 buckets a share means: round(share * 10000), at least one."""
    return max(1, round(share * NAMESPACE_BUCKETS))


class NamespaceFull(Conflict):
    """A share larger than what the experiment holds plus the namespace's free space (409 naming the
    free share)."""

    def __init__(self, surface: str, share: float, held: int, free: int) -> None:
        asked = f"namespace_share {share:g}"
        if held:
            more = buckets_for_share(share) - held
            asked += f" (it holds {held / NAMESPACE_BUCKETS:g} and needs {more} more buckets)"
        super().__init__(
            f"{asked} does not fit in surface '{surface}': its free share is {free / NAMESPACE_BUCKETS:g} "
            f"({free} of {NAMESPACE_BUCKETS} buckets); ask for less, or complete an experiment there",
            code=ErrorCode.NAMESPACE_FULL,
            field="namespace_share",
        )
        self.details = {"free_share": free / NAMESPACE_BUCKETS, "free_buckets": free}


def choose_buckets(
    experiment_id: UUID, count: int, never_used: Iterable[int], released: Iterable[int]
) -> list[int]:
    """`count` free buckets for an experiment: never-used ones first, then released ones, each group
    ranked by MurmurHash3(f"{experiment_id}:{bucket}") (a sample seeded by the experiment).

    Deterministic: the same free space and experiment always give the same buckets.
    """

    def rank(bucket: int) -> tuple[int, int]:
        return mmh3.hash(f"{experiment_id}:{bucket}", 0, False), bucket

    chosen = sorted(never_used, key=rank)[:count]
    if len(chosen) < count:
        chosen += sorted(released, key=rank)[: count - len(chosen)]
    return sorted(chosen)


@dataclass(frozen=True)
class Namespace:
    """One surface's namespace as a container knows it: its salt and which experiment owns each bucket.

    `experiments` are the surface's experiments that hold buckets (running or paused).
    """

    surface: str
    salt: str | None  # None: no experiment has started on this surface yet
    experiments: Mapping[UUID, LiveExperiment] = field(default_factory=dict)
    owners: Sequence[UUID | None] = ()

    def bucket(self, user_id: str) -> int | None:
        """The user's bucket, or None when the surface has no namespace yet."""
        return None if self.salt is None else namespace_bucket(self.salt, user_id)

    def owner(self, bucket: int | None) -> LiveExperiment | None:
        """The experiment owning a bucket, if any (running or paused)."""
        if bucket is None or not self.owners:
            return None
        owner = self.owners[bucket]
        return None if owner is None else self.experiments.get(owner)


@dataclass(frozen=True)
class NamespaceAllocation:
    """A namespace as stored: salt and each experiment's bucket ranges."""

    surface: str
    salt: str
    ranges: Mapping[UUID, Sequence[tuple[int, int]]]


@dataclass(frozen=True)
class ServingView:
    """Everything the pipeline needs from the cache: namespaces by surface, experiments by id."""

    namespaces: Mapping[str, Namespace]
    experiments: Mapping[UUID, LiveExperiment]
    # Values of the saved groups the experiments' targeting names, by key (stale for up to one TTL).
    saved_groups: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    holdouts: tuple[RunningHoldout, ...] = ()  # running holdouts, by id

    def namespace(self, surface: str) -> Namespace:
        """The surface's namespace (an empty one for a surface nothing has started on)."""
        return self.namespaces.get(surface) or Namespace(surface, None)

    def holdouts_covering(self, surface: str) -> tuple[RunningHoldout, ...]:
        """The running holdouts that cover a surface, by id."""
        return covering(self.holdouts, surface)


def build_view(
    experiments: Sequence[Experiment],
    allocations: Sequence[NamespaceAllocation],
    saved_groups: Mapping[str, Sequence[Any]] | None = None,
    holdouts: Sequence[RunningHoldout] = (),
) -> ServingView:
    """Index experiments holding buckets (running, paused), the bucket owners of every namespace, the
    saved groups their targeting names, and the running holdouts."""
    live = {e.id: LiveExperiment.of(e) for e in experiments if e.status in HOLDING_BUCKETS}
    namespaces: dict[str, Namespace] = {}
    for allocation in allocations:
        owners: list[UUID | None] = [None] * NAMESPACE_BUCKETS
        for experiment_id, ranges in allocation.ranges.items():
            for start, end in ranges:
                owners[start:end] = [experiment_id] * (end - start)
        members = {i: r for i, r in live.items() if r.experiment.surface == allocation.surface}
        namespaces[allocation.surface] = Namespace(allocation.surface, allocation.salt, members, owners)
    return ServingView(
        namespaces, live, dict(saved_groups or {}), tuple(sorted(holdouts, key=lambda h: h.id))
    )


# --- What GET /surfaces shows: each surface's namespace and who holds which buckets -----------------

BucketRange = Annotated[tuple[int, int], Field(description="Half-open range [start, end) of buckets")]


class NamespaceMember(BaseModel):
    """An experiment of a surface and the buckets it holds."""

    experiment_id: UUID
    name: str
    status: Status
    namespace_share: float = Field(description="The share asked for")
    share: float = Field(description="The share held: buckets held / 10000 (0 for drafts and completed)")
    buckets: list[BucketRange]


class SurfaceNamespace(BaseModel):
    """One surface: its namespace salt, its experiments (not completed) and the free share."""

    surface: str
    salt: str | None = Field(description="The namespace salt; null until an experiment starts on the surface")
    total_buckets: int
    free_share: float
    free_buckets: int
    experiments: list[NamespaceMember]


class SurfaceMembership(BaseModel):
    # What a surface lookup finds (the HTTP answer, abtest.http.schemas.SurfaceAssignmentResponse, adds
    # nothing but its name and description, so this class has no docstring of its own).

    surface: str
    user_id: str
    bucket: int | None = Field(description="The user's namespace bucket; null without a namespace")
    bucket_owner: UUID | None = Field(description="The experiment owning that bucket (running or paused)")
    enrolled: bool = Field(description="true when the user has a variant in a running experiment")
    experiment_id: UUID | None = Field(description="The experiment the user belongs to (not completed)")
    experiment_name: str | None
    status: Status | None
    variant: AssignedVariant | None
    experiment_variant: str | None
