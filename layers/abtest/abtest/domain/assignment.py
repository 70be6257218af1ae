"""Assignment: which running experiment applies, and which variant a user gets in it.

Pure decisions here; the caller stores them (AssignmentRepository.enroll), and the stored assignment
is the truth from then on (sticky), whatever the hash would say later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from abtest.contract.bucketing import Allocation, unit_interval
from abtest.domain.lifecycle import ENROLLING
from abtest.domain.models import Experiment, Status, Variant


@dataclass(frozen=True)
class Enrollment:
    """What one enrollment statement found or did."""

    status: Status | None  # None: the experiment does not exist (any more)
    variant_id: UUID | None  # None: not enrolled (experiment not running)
    created: bool  # this request made the assignment
    exposed: bool  # an exposure row was written
    profile: list[float] | None  # the user's profile vector, when asked for


def experiment_variant_tag(experiment_name: str, variant_name: str) -> str:
    """The tag recommendations carry: "experiment_name:variant_name"."""
    return f"{experiment_name}:{variant_name}"


@dataclass(frozen=True)
class RunningExperiment:
    """An experiment with its bucketing ranges computed once per cache load."""

    experiment: Experiment
    allocation: Allocation

    @classmethod
    def of(cls, experiment: Experiment) -> RunningExperiment:
        weights = [variant.weight for variant in experiment.variants]
        return cls(experiment, Allocation(weights, experiment.traffic_allocation))

    @property
    def id(self) -> UUID:
        return self.experiment.id

    def bucket(self, user_id: str) -> Variant | None:
        """The variant the contract gives this user, or None if traffic allocation excludes them."""
        index = self.allocation.variant_index(unit_interval(self.experiment.salt, user_id))
        return None if index is None else self.experiment.variants[index]

    def variant(self, variant_id: UUID) -> Variant:
        """A variant of this experiment by id (a stored assignment's variant)."""
        for variant in self.experiment.variants:
            if variant.id == variant_id:
                return variant
        raise LookupError(f"variant {variant_id} is not part of experiment {self.experiment.id}")


def index_running(experiments: Sequence[Experiment]) -> list[RunningExperiment]:
    """Running experiments in the order surfaces choose among them (the order given)."""
    return [RunningExperiment.of(e) for e in experiments if e.status in ENROLLING]


def for_surface(running: Sequence[RunningExperiment], surface: str) -> RunningExperiment | None:
    """The experiment a surface serves: the first running one of that surface, in the order
    started_at, created_at, id (the earliest started wins, as in the original service)."""
    for candidate in running:
        if candidate.experiment.surface == surface:
            return candidate
    return None


def by_id(running: Sequence[RunningExperiment], experiment_id: UUID) -> RunningExperiment | None:
    """The running experiment with this id, if it is among `running`."""
    for candidate in running:
        if candidate.id == experiment_id:
            return candidate
    return None
