"""The decision pipeline: one pure function decides, for /recommendations and /assignments alike,
whether a user is in an experiment, which variant they are served, and why.

`decide(subject)` walks STAGES in order; each stage either exits with a Decision (every exit has a
`reason`) or passes the walk on. The stages, in order:

    experiment         which experiment this is about: the one asked for (/assignments); else the
                       user's stored namespace membership; else the owner of the user's bucket
                       (no owner: no_experiment / not_in_experiment_share)
    running            only running experiments serve a variant (experiment_not_running)
    override           a user the database says is forced is served the override's variant
                       (override); never stored, never a namespace member
    holdout            a user held out by a running holdout covering the surface gets the defaults
                       and is never enrolled, even with a stored assignment (holdout)
    stored_assignment  a stored assignment wins over everything after it (assigned, sticky)
    namespace          the bucket must be the experiment's (not_in_experiment_share), and the user
                       must not belong to a sibling (in_other_experiment)
    targeting          the request's attributes must match the experiment's targeting condition
                       (targeting_not_met); evaluated at enrollment only, since a stored assignment
                       has already decided; an evaluation error fails closed
    traffic            the experiment's traffic allocation (excluded_by_traffic)
    variant            the contract's variant: proposed, to be stored (assigned)


The service calls it twice around the one database round trip: first with what the container's
cache knows (`stored` None), which yields a proposal or an exit; then with what the enrollment
statement found and did (`stored` set). The served decision is always the second one, so the variant
served is always the stored one, even when the cache is stale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from abtest.contract.bucketing import unit_interval
from abtest.domain.assignment import Enrollment, LiveExperiment, Reason
from abtest.domain.experiments import Variant
from abtest.domain.holdouts import RunningHoldout, held_out
from abtest.domain.lifecycle import ENROLLING
from abtest.domain.namespaces import Namespace
from abtest.domain.targeting import evaluate


@dataclass(frozen=True)
class Subject:
    """Everything a decision depends on; nothing here does I/O."""

    user_id: str
    namespace: Namespace  # the surface's namespace, as the cache knows it
    requested: LiveExperiment | None = None  # /assignments: the experiment asked for
    stored: Enrollment | None = None  # what the database holds; None before it was asked
    attributes: Mapping[str, Any] = field(default_factory=dict)  # the request's, for targeting
    saved_groups: Mapping[str, Sequence[Any]] = field(default_factory=dict)  # values by key (the cache's)
    # The running holdouts covering the surface, as the cache knows them (the enrollment statement
    # checks them against the database's and writes nothing when they differ).
    holdouts: tuple[RunningHoldout, ...] = ()

    @property
    def facts_about(self) -> UUID | None:
        """The experiment the stored facts describe (None before the database was asked)."""
        return None if self.stored is None else self.stored.experiment_id


@dataclass(frozen=True)
class Decision:
    """The outcome: why, about which experiment, and the variant to serve (assigned only)."""

    reason: Reason
    experiment: LiveExperiment | None = None
    variant: Variant | None = None
    bucket: int | None = None
    stored: bool = False  # the variant is the stored assignment (False for a mere proposal)
    stage: str = ""  # the stage that decided

    @property
    def proposal(self) -> bool:
        """An assignment the database has yet to store."""
        return self.reason == Reason.ASSIGNED and not self.stored


@dataclass(frozen=True)
class Walk:
    """What the stages have established so far."""

    bucket: int | None
    experiment: LiveExperiment | None = None
    variant: Variant | None = None


Stage = Callable[[Subject, Walk], "Decision | Walk"]


def _experiment(subject: Subject, walk: Walk) -> Decision | Walk:
    if subject.requested is not None:
        return replace(walk, experiment=subject.requested)
    stored = subject.stored
    if stored is not None and stored.forced_variant_id is not None and stored.experiment_id is not None:
        # An override of a running experiment of the surface makes it the one decided about.
        forced = subject.namespace.experiments.get(stored.experiment_id)
        if forced is not None:
            return replace(walk, experiment=forced)
    if subject.stored is not None and subject.stored.member_of is not None:
        member = subject.namespace.experiments.get(subject.stored.member_of)
        if member is not None:  # sticky: a member is decided about in their experiment only
            return replace(walk, experiment=member)
    owner = subject.namespace.owner(walk.bucket)
    if owner is None:
        has_experiments = bool(subject.namespace.experiments)
        return Decision(Reason.NOT_IN_SHARE if has_experiments else Reason.NO_EXPERIMENT, bucket=walk.bucket)
    return replace(walk, experiment=owner)


def _running(subject: Subject, walk: Walk) -> Decision | Walk:
    assert walk.experiment is not None
    status = walk.experiment.experiment.status
    if subject.stored is not None and subject.facts_about == walk.experiment.id:
        status = subject.stored.status or status  # the database's word beats the cache's
    if status not in ENROLLING:
        return Decision(Reason.NOT_RUNNING, walk.experiment, bucket=walk.bucket)
    return walk


def _override(subject: Subject, walk: Walk) -> Decision | Walk:
    assert walk.experiment is not None
    stored = subject.stored
    if stored is None or stored.forced_variant_id is None or stored.experiment_id != walk.experiment.id:
        return walk
    # Before the stored assignment: a user enrolled earlier is served the forced variant while the
    # override exists; their assignment is kept and serves again once it is deleted.
    variant = walk.experiment.variant(stored.forced_variant_id)
    return Decision(Reason.OVERRIDE, walk.experiment, variant, walk.bucket, stored=False)


def _holdout(subject: Subject, walk: Walk) -> Decision | Walk:
    # Before the stored assignment: a user enrolled before the holdout started is held out too.
    if held_out(subject.holdouts, subject.user_id) is not None:
        return Decision(Reason.HOLDOUT, walk.experiment, bucket=walk.bucket)
    return walk


def _stored_assignment(subject: Subject, walk: Walk) -> Decision | Walk:
    assert walk.experiment is not None
    stored = subject.stored
    if stored is not None and stored.variant_id is not None and stored.experiment_id == walk.experiment.id:
        variant = walk.experiment.variant(stored.variant_id)
        return Decision(Reason.ASSIGNED, walk.experiment, variant, walk.bucket, stored=True)
    return walk


def _namespace(subject: Subject, walk: Walk) -> Decision | Walk:
    assert walk.experiment is not None
    owner = subject.namespace.owner(walk.bucket)
    if owner is None or owner.id != walk.experiment.id:
        return Decision(Reason.NOT_IN_SHARE, walk.experiment, bucket=walk.bucket)
    stored = subject.stored
    if stored is not None and stored.member_of not in (None, walk.experiment.id):
        return Decision(Reason.IN_OTHER_EXPERIMENT, walk.experiment, bucket=walk.bucket)
    return walk


def _targeting(subject: Subject, walk: Walk) -> Decision | Walk:
    assert walk.experiment is not None
    condition = walk.experiment.experiment.targeting
    if condition and not evaluate(condition, subject.attributes, subject.saved_groups):
        return Decision(Reason.TARGETING_NOT_MET, walk.experiment, bucket=walk.bucket)
    return walk


def _traffic(subject: Subject, walk: Walk) -> Decision | Walk:
    assert walk.experiment is not None
    running = walk.experiment
    index = running.allocation.variant_index(unit_interval(running.experiment.salt, subject.user_id))
    if index is None:
        return Decision(Reason.EXCLUDED_BY_TRAFFIC, running, bucket=walk.bucket)
    return replace(walk, variant=running.experiment.variants[index])


def _variant(subject: Subject, walk: Walk) -> Decision | Walk:
    return Decision(Reason.ASSIGNED, walk.experiment, walk.variant, walk.bucket, stored=False)


STAGES: tuple[tuple[str, Stage], ...] = (
    ("experiment", _experiment),
    ("running", _running),
    ("override", _override),
    ("holdout", _holdout),
    ("stored_assignment", _stored_assignment),
    ("namespace", _namespace),
    ("targeting", _targeting),
    ("traffic", _traffic),
    ("variant", _variant),
)


def decide(subject: Subject, stages: tuple[tuple[str, Stage], ...] = STAGES) -> Decision:
    """Walk the stages in order; the first that exits decides (the last always does)."""
    walk = Walk(bucket=subject.namespace.bucket(subject.user_id))
    for name, stage in stages:
        outcome = stage(subject, walk)
        if isinstance(outcome, Decision):
            return replace(outcome, stage=name)
        walk = outcome
    raise AssertionError("the variant stage always decides")
