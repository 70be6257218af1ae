"""The audit entries of the service's admin writes, one builder per change (recorded by the repositories
inside the write's transaction): experiments (`experiment.create|update|start|pause|resume|complete|
delete`), their namespace shares (`namespace.allocate|release`, parent the experiment), overrides
(`override.set|delete`: entity `override` with the user id, parent the experiment), saved groups
(`saved_group.create|update|delete`) and holdouts (`holdout.create|start|pause|resume|complete`).

Pure: the entry model and the diff are abtest.domain.audit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from abtest.contract.namespaces import NAMESPACE_BUCKETS
from abtest.domain.audit import UNDIFFED_FIELDS, Actor, AuditEntry, snapshot
from abtest.domain.experiments import Experiment, Status
from abtest.domain.holdouts import Holdout
from abtest.domain.overrides import Override
from abtest.domain.saved_groups import SavedGroup

# --- Entries of the experiments' own writes -------------------------------------------------------

_TRANSITION_VERBS: dict[tuple[Status, Status], str] = {
    (Status.DRAFT, Status.RUNNING): "start",
    (Status.RUNNING, Status.PAUSED): "pause",
    (Status.PAUSED, Status.RUNNING): "resume",
    (Status.RUNNING, Status.COMPLETED): "complete",
    (Status.PAUSED, Status.COMPLETED): "complete",
}
# What a status change moves besides the status itself.
_STATUS_FIELDS = ("status", "started_at", "completed_at")


def transition_action(current: Status, target: Status, entity: str = "experiment") -> str:
    """The action of a lifecycle transition, e.g. experiment.start for draft -> running (holdouts
    share the lifecycle: holdout.start, ...)."""
    return f"{entity}.{_TRANSITION_VERBS.get((current, target), 'status')}"


def experiment_created(actor: Actor, experiment: Experiment) -> AuditEntry:
    """experiment.create, with the new experiment as after."""
    return AuditEntry(
        actor=actor,
        action="experiment.create",
        entity_type="experiment",
        entity_id=experiment.id,
        after=snapshot(experiment),
    )


def override_snapshot(override: Override) -> dict[str, Any]:
    """An override as entries store it: the user and the forced variant's name."""
    return {"user_id": override.user_id, "variant": override.variant}


def _removed(overrides: Iterable[Override]) -> list[dict[str, Any]]:
    """Overrides a write deleted with what they named, as its entry lists them: by user id."""
    return [override_snapshot(override) for override in sorted(overrides, key=lambda o: o.user_id)]


def experiment_updated(
    actor: Actor,
    before: Experiment,
    after: Experiment,
    fields: Iterable[str],
    *,
    removed_overrides: Iterable[Override] = (),
) -> AuditEntry | None:
    """experiment.update with before and after of the edited `fields`; None if no value changed.

    `removed_overrides`: the overrides a draft's variant replacement deleted (they named the old
    variants); the entry lists them as the field `overrides`, before them and after `[]`.
    """
    old, new = snapshot(before), snapshot(after)
    edited = sorted(set(fields) - UNDIFFED_FIELDS)
    old_fields: dict[str, Any] = {field: old.get(field) for field in edited}
    new_fields: dict[str, Any] = {field: new.get(field) for field in edited}
    removed = _removed(removed_overrides)
    if removed:
        old_fields["overrides"], new_fields["overrides"] = removed, []
    entry = AuditEntry(
        actor=actor,
        action="experiment.update",
        entity_type="experiment",
        entity_id=after.id,
        before=old_fields,
        after=new_fields,
    )
    return entry if entry.changes else None


def status_changed(actor: Actor, before: Experiment, after: Experiment) -> AuditEntry | None:
    """experiment.start|pause|resume|complete with the old and new status; None for a no-op."""
    if before.status == after.status:
        return None
    old, new = snapshot(before), snapshot(after)
    return AuditEntry(
        actor=actor,
        action=transition_action(before.status, after.status),
        entity_type="experiment",
        entity_id=after.id,
        before={field: old[field] for field in _STATUS_FIELDS},
        after={field: new[field] for field in _STATUS_FIELDS},
    )


def experiment_deleted(
    actor: Actor, experiment: Experiment, *, removed_overrides: Iterable[Override] = ()
) -> AuditEntry:
    """experiment.delete, with the deleted draft as before (and, as `overrides`, the overrides that
    went with it, if it had any)."""
    before = snapshot(experiment)
    removed = _removed(removed_overrides)
    if removed:
        before["overrides"] = removed
    return AuditEntry(
        actor=actor,
        action="experiment.delete",
        entity_type="experiment",
        entity_id=experiment.id,
        before=before,
    )


def namespace_share_changed(
    actor: Actor, experiment: Experiment, held_before: int, held_after: int
) -> AuditEntry | None:
    """namespace.allocate (buckets taken) or namespace.release (buckets freed) of the experiment's
    surface, under the experiment's history; None when no bucket moved."""
    if held_before == held_after:
        return None

    def holding(buckets: int) -> dict[str, Any]:
        return {"buckets": buckets, "share": buckets / NAMESPACE_BUCKETS}

    return AuditEntry(
        actor=actor,
        action="namespace.allocate" if held_after > held_before else "namespace.release",
        entity_type="namespace",
        entity_id=experiment.surface,
        parent_type="experiment",
        parent_id=experiment.id,
        before=holding(held_before),
        after=holding(held_after),
    )


# --- Entries of the other admin writes -------------------------------------------------------------


def override_set(actor: Actor, before: Override | None, after: Override) -> AuditEntry | None:
    """override.set: the user's override (`before`, None if there was none) now forces `after`'s
    variant; entity `override` and the user id, under the experiment's history. None if the variant
    is the one already forced."""
    old = None if before is None else override_snapshot(before)
    new = override_snapshot(after)
    if old == new:
        return None
    return AuditEntry(
        actor=actor,
        action="override.set",
        entity_type="override",
        entity_id=after.user_id,
        parent_type="experiment",
        parent_id=after.experiment_id,
        before=old,
        after=new,
    )


def override_deleted(actor: Actor, override: Override) -> AuditEntry:
    """override.delete, with the removed override as before, under the experiment's history."""
    return AuditEntry(
        actor=actor,
        action="override.delete",
        entity_type="override",
        entity_id=override.user_id,
        parent_type="experiment",
        parent_id=override.experiment_id,
        before=override_snapshot(override),
    )


def saved_group_created(actor: Actor, group: SavedGroup) -> AuditEntry:
    """saved_group.create, with the new group as after."""
    return AuditEntry(
        actor=actor,
        action="saved_group.create",
        entity_type="saved_group",
        entity_id=group.id,
        after=snapshot(group),
    )


def saved_group_updated(actor: Actor, before: SavedGroup, after: SavedGroup) -> AuditEntry | None:
    """saved_group.update with the whole group before and after; None if neither key nor values
    changed."""
    entry = AuditEntry(
        actor=actor,
        action="saved_group.update",
        entity_type="saved_group",
        entity_id=after.id,
        before=snapshot(before),
        after=snapshot(after),
    )
    return entry if entry.changes else None


def saved_group_deleted(actor: Actor, group: SavedGroup) -> AuditEntry:
    """saved_group.delete, with the deleted group as before."""
    return AuditEntry(
        actor=actor,
        action="saved_group.delete",
        entity_type="saved_group",
        entity_id=group.id,
        before=snapshot(group),
    )


def holdout_created(actor: Actor, holdout: Holdout) -> AuditEntry:
    """holdout.create, with the new (draft) holdout as after."""
    return AuditEntry(
        actor=actor,
        action="holdout.create",
        entity_type="holdout",
        entity_id=holdout.id,
        after=snapshot(holdout),
    )


def holdout_status_changed(actor: Actor, before: Holdout, after: Holdout) -> AuditEntry | None:
    """holdout.start|pause|resume|complete with the old and new status; None for a no-op."""
    if before.status == after.status:
        return None
    old, new = snapshot(before), snapshot(after)
    return AuditEntry(
        actor=actor,
        action=transition_action(before.status, after.status, "holdout"),
        entity_type="holdout",
        entity_id=after.id,
        before={field: old[field] for field in _STATUS_FIELDS},
        after={field: new[field] for field in _STATUS_FIELDS},
    )
