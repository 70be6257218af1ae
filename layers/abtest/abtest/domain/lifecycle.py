"""The experiment lifecycle: draft -> running <-> paused -> completed, and what may be edited when.

Pure rules, no I/O: the repository calls these while it holds the experiment's row lock.
"""

from __future__ import annotations

from typing import Any

from abtest.domain.bandits import check_allocation
from abtest.domain.breakdowns import check_design
from abtest.domain.experiments import Experiment, ExperimentCreate, Status, VariantIn
from abtest.domain.metric_definitions import check_roles_change
from abtest.domain.targeting_checks import require_valid_condition
from abtest.errors import Conflict, ErrorCode, InvalidTransition

TRANSITIONS: dict[Status, tuple[Status, ...]] = {
    Status.DRAFT: (Status.RUNNING,),
    Status.RUNNING: (Status.PAUSED, Status.COMPLETED),
    Status.PAUSED: (Status.RUNNING, Status.COMPLETED),
    Status.COMPLETED: (),
}

# The one definition of what each status allows (storage turns these into its SQL; tests pin them).
# Statuses in which users are enrolled (and served their variant).
ENROLLING = frozenset({Status.RUNNING})
# Statuses in which exposures are accepted.
EXPOSING = frozenset({Status.RUNNING})
# Statuses in which conversions of already-assigned users are accepted (late conversions while paused).
CONVERTING = frozenset({Status.RUNNING, Status.PAUSED})
ACCEPTING = {"exposure": EXPOSING, "conversion": CONVERTING}
# Statuses in which an experiment holds its namespace buckets (completing releases them).
HOLDING_BUCKETS = frozenset({Status.RUNNING, Status.PAUSED})


def check_transition(current: Status, target: Status) -> None:
    """Raise InvalidTransition unless `current -> target` is allowed (a no-op is allowed)."""
    if current == target or target in TRANSITIONS[current]:
        return
    raise InvalidTransition(current.value, target.value, [s.value for s in TRANSITIONS[current]])


def check_create(new: ExperimentCreate) -> ExperimentCreate:
    """Validate a new experiment beyond its schema (the repository checks the variants' configs against the
    surface's config schema in its transaction: experiments.check_definition)."""
    new.allocation = check_allocation(new.allocation, len(new.variants))
    new.dimensions = check_design(
        new.dimensions, new.assignment, [v.weight for v in new.variants], new.allocation
    )
    require_valid_condition(new.targeting)  # saved groups are checked by the repository, in its transaction
    return new


def check_patch(current: Experiment, changes: dict[str, Any]) -> dict[str, Any]:
    """Validate an edit against the experiment's state and return the changes to store.

    Drafts may change anything. Running and paused experiments may change their description and
    raise (never lower) traffic and namespace_share: the bucketing ranges and the buckets held only
    grow, so no enrolled user moves. Variants,
    weights and the name are frozen once an experiment has run. Completed experiments are final.
    Targeting may change while running or paused: it applies at enrollment only, so enrolled users
    keep their variant (docs/api/targeting.md).
    """
    if "targeting" in changes and current.status != Status.COMPLETED:
        require_valid_condition(changes["targeting"])
    if current.status == Status.DRAFT:
        if "allocation" in changes:
            variants = changes.get("variants", current.variants)
            changes["allocation"] = check_allocation(changes["allocation"], len(variants))
        if {"variants", "dimensions", "assignment", "allocation"} & set(changes):
            dimensions = check_design(
                changes.get("dimensions", current.dimensions),
                changes.get("assignment", current.assignment),
                [v.weight for v in changes.get("variants", current.variants)],
                changes.get("allocation", current.allocation),
            )
            if "dimensions" in changes or dimensions != current.dimensions:
                changes["dimensions"] = dimensions
        return changes  # configs against the surface's schema: the repository, in its transaction
    if current.status == Status.COMPLETED:
        raise Conflict(
            "a completed experiment cannot be edited", code=ErrorCode.EXPERIMENT_COMPLETED, field="status"
        )
    if "metrics" in changes:
        # Goals and guardrails stay as they were; secondary metrics may be added (issue 22).
        check_roles_change(
            current.metrics.model_dump() if current.metrics is not None else None, changes["metrics"]
        )
    editable = {"description", "traffic_allocation", "namespace_share", "targeting", "metrics", "decision"}
    if "variants" in changes and only_configs_differ(current, changes["variants"]):
        editable.add("variants")  # a config change: a new phase (the repository's change_configs)
    frozen = sorted(set(changes) - editable)
    if frozen:
        raise Conflict(
            f"{', '.join(frozen)} cannot change once an experiment has started "
            f"(status {current.status.value}); only description, targeting, decision, added secondary "
            "metrics, a higher traffic_allocation or namespace_share, and the variants' configs (same "
            "names and weights, in the same order: a new phase) can",
            code=ErrorCode.FIELD_FROZEN,
            field=frozen[0],
        )
    traffic = changes.get("traffic_allocation")
    if traffic is not None and traffic < current.traffic_allocation:
        raise Conflict(
            f"traffic_allocation can only be raised while an experiment has started "
            f"(current {current.traffic_allocation}, requested {traffic})",
            code=ErrorCode.TRAFFIC_DECREASE,
            field="traffic_allocation",
        )
    share = changes.get("namespace_share")
    if share is not None and share < current.namespace_share:
        raise Conflict(
            f"namespace_share can only grow while an experiment has started: its buckets never move "
            f"(current {current.namespace_share}, requested {share})",
            code=ErrorCode.SHARE_DECREASE,
            field="namespace_share",
        )
    return changes


def only_configs_differ(current: Experiment, variants: list[VariantIn]) -> bool:
    """Whether `variants` are the experiment's variants (names, weights, descriptions, order) with only
    their configs possibly changed: the one edit of variants a started experiment allows."""
    return (
        bool(variants)
        and len(variants) == len(current.variants)
        and all(
            new.name == old.name and new.weight == old.weight and new.description == old.description
            for new, old in zip(variants, current.variants, strict=True)
        )
    )
