"""The experiment lifecycle: draft -> running <-> paused -> completed, and what may be edited when.

Pure rules, no I/O: the repository calls these while it holds the experiment's row lock.
"""

from __future__ import annotations

from typing import Any

from abtest.domain.bandits import check_allocation
from abtest.domain.experiments import Experiment, ExperimentCreate, Status, check_definition
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
    """Validate a new experiment beyond its schema (the same definition rules an edited draft meets)."""
    check_definition(new.surface, new.variants)
    new.allocation = check_allocation(new.allocation, len(new.variants))
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
        if "variants" in changes or "surface" in changes:
            check_definition(
                changes.get("surface", current.surface), changes.get("variants", current.variants)
            )
        return changes
    if current.status == Status.COMPLETED:
        raise Conflict(
            "a completed experiment cannot be edited", code=ErrorCode.EXPERIMENT_COMPLETED, field="status"
        )
    if "metrics" in changes:
        # Goals and guardrails stay as they were; secondary metrics may be added (issue 22).
        check_roles_change(
            current.metrics.model_dump() if current.metrics is not None else None, changes["metrics"]
        )
    frozen = sorted(
        set(changes)
        - {"description", "traffic_allocation", "namespace_share", "targeting", "metrics", "decision"}
    )
    if frozen:
        raise Conflict(
            f"{', '.join(frozen)} cannot change once an experiment has started "
            f"(status {current.status.value}); only description, targeting, decision, added secondary "
            "metrics and a higher "
            "traffic_allocation or namespace_share can",
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
