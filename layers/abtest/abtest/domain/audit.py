"""The audit log's domain: who changed what (the actor), the entry appended for each admin change, the
field-level diff between its before and after, and the read models of /history and /audit.

Pure: no SQL, no HTTP. `abtest.storage.audit.record(conn, entry)` appends an entry inside the
caller's transaction; `abtest.http.actor.request_actor(event)` reads the actor from the request.

Writing an entry for a new kind of admin change (inside the repository method's `db.run(work)`):

    from abtest.domain.audit import SYSTEM_ACTOR, Actor, AuditEntry
    from abtest.storage.audit import record

    def set_override(self, experiment_id, user_id, variant, *, actor: Actor = SYSTEM_ACTOR):
        def work(conn):
            before = ...  # the override as it was (None if there was none), JSON-like
            ...           # the change itself
            record(conn, AuditEntry(
                actor=actor,
                action="override.set",          # "<entity>.<verb>", lower case
                entity_type="experiment",       # the history it belongs to
                entity_id=experiment_id,        # UUIDs and other ids are stored as text
                before=before,                  # None for a creation
                after={"user_id": user_id, "variant": variant},  # None for a deletion
            ))
        return self._db.run(work)

`changes` (the field-level diff) is computed from before and after unless given; datetimes, UUIDs and
enums in before/after are stored as their JSON text. Entries that belong under another entity's
history name it as their parent (`parent_type="experiment", parent_id=...`): an experiment's history
shows its own entries and those whose parent it is.

The service's writers and their entries (built by the helpers below, recorded by the repositories):
experiments (`experiment.create|update|start|pause|resume|complete|delete`), their namespace shares
(`namespace.allocate|release`, parent the experiment), overrides (`override.set|delete`: entity
`override` with the user id, parent the experiment, so they are in the experiment's history), saved
groups (`saved_group.create|update|delete`) and holdouts (`holdout.create|start|pause|resume|complete`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import to_jsonable_python

from abtest.contract.namespaces import NAMESPACE_BUCKETS
from abtest.domain.holdouts import Holdout
from abtest.domain.models import Experiment, Status
from abtest.domain.overrides import Override
from abtest.domain.saved_groups import SavedGroup
from abtest.errors import InvalidInput

ActorType = Literal["user", "client", "system", "local"]
ACTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
ENTITY_TYPE_PATTERN = r"^[a-z][a-z0-9_]*$"
MAX_ID_LENGTH = 256
MAX_REASON_LENGTH = 1000
# Bookkeeping timestamps every write moves: never "a change" in the diff.
UNDIFFED_FIELDS = frozenset({"updated_at", "created_at"})


def _as_text(value: Any) -> Any:
    return str(value) if isinstance(value, UUID) else value


Text = Annotated[str, BeforeValidator(_as_text), Field(min_length=1, max_length=MAX_ID_LENGTH)]


class Actor(BaseModel):
    """Who makes a change, through which request, and why.

    `type`: `user` (a token's subject), `client` (a machine token: client credentials), `local`
    (`make run` without tokens), `system` (the service itself, scripts and seeds). `reason` is the
    request's `X-Change-Reason` header, `request_id` API Gateway's.
    """

    model_config = ConfigDict(frozen=True)

    type: ActorType
    id: Text
    scopes: tuple[str, ...] = ()
    request_id: str | None = None
    reason: Annotated[str | None, Field(max_length=MAX_REASON_LENGTH)] = None


LOCAL_ACTOR = Actor(type="local", id="local")
# Writes that no request makes (seeds, demos, scripts, tests calling repositories directly).
SYSTEM_ACTOR = Actor(type="system", id="system")


class FieldChange(BaseModel):
    """One field that differs between an entry's before and after."""

    field: str
    before: Any = None
    after: Any = None


def _json(value: Any) -> Any:
    return to_jsonable_python(value)


def changes(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    *,
    exclude: Iterable[str] = UNDIFFED_FIELDS,
) -> list[FieldChange]:
    """The top-level fields whose JSON values differ between `before` and `after`, in key order.

    A field missing on one side counts as null there. Timestamps every write moves (`updated_at`,
    `created_at`) are not changes. A creation or deletion (either side None) has no field-level
    diff: the whole entity is the entry's after or before.
    """
    if before is None or after is None:
        return []
    skipped = set(exclude)
    old, new = _json(dict(before)), _json(dict(after))
    fields = sorted((set(old) | set(new)) - skipped)
    return [
        FieldChange(field=field, before=old.get(field), after=new.get(field))
        for field in fields
        if old.get(field) != new.get(field) or (field in old) != (field in new)
    ]


class AuditEntry(BaseModel):
    """An entry to append: see the module docstring. `changes` defaults to changes(before, after)."""

    actor: Actor
    action: Annotated[str, Field(max_length=128, pattern=ACTION_PATTERN)]
    entity_type: Annotated[str, Field(max_length=64, pattern=ENTITY_TYPE_PATTERN)]
    entity_id: Text
    parent_type: Annotated[str | None, Field(max_length=64, pattern=ENTITY_TYPE_PATTERN)] = None
    parent_id: Annotated[str | None, BeforeValidator(_as_text), Field(max_length=MAX_ID_LENGTH)] = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    changes: list[FieldChange] | None = None

    @model_validator(mode="after")
    def _complete(self) -> AuditEntry:
        if (self.parent_type is None) != (self.parent_id is None):
            raise ValueError("parent_type and parent_id go together")
        # Stored as JSON: datetimes, UUIDs and enums become their text now, so the diff compares
        # what is stored.
        self.before = None if self.before is None else _json(self.before)
        self.after = None if self.after is None else _json(self.after)
        if self.changes is None:
            self.changes = changes(self.before, self.after)
        return self


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


def snapshot(entity: BaseModel) -> dict[str, Any]:
    """An entity (experiment, saved group, holdout) as its entries store it: what the API answers, as
    JSON."""
    dumped: dict[str, Any] = entity.model_dump(mode="json")
    return dumped


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


# --- Reading ---------------------------------------------------------------------------------------


class AuditActor(BaseModel):
    """Who made a recorded change."""

    type: ActorType
    id: str
    scopes: list[str]


class AuditEvent(BaseModel):
    """A recorded change. Entries are never updated or deleted."""

    id: int = Field(description="Increasing within a transaction; with occurred_at, the order of entries")
    occurred_at: datetime = Field(description="When the change's transaction ran (entries of one share it)")
    actor: AuditActor
    request_id: str | None
    action: str = Field(description="<entity>.<verb>, e.g. experiment.start")
    entity_type: str
    entity_id: str
    parent_type: str | None
    parent_id: str | None
    before: dict[str, Any] | None = Field(
        description="The entity (or the edited fields) before; null on create"
    )
    after: dict[str, Any] | None = Field(
        description="The entity (or the edited fields) after; null on delete"
    )
    changes: list[FieldChange] = Field(description="Fields that differ between before and after")
    reason: str | None = Field(description="The X-Change-Reason header of the request, if any")


class AuditPage(BaseModel):
    """Entries newest first; pass `next_cursor` back as `cursor` for the next (older) page."""

    events: list[AuditEvent]
    next_cursor: str | None


class AuditFilter(BaseModel):
    """Filters of GET /audit; every one optional, all of them must hold."""

    since: datetime | None = None
    until: datetime | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    actor: str | None = None
    action: str | None = None


# "2026-05-01T10:00:00 02:00": a "+" sent unencoded in a query string arrives as a space.
_SPACED_OFFSET = re.compile(r" (\d{2}(:?\d{2})?)$")


def parse_instant(text: str, field: str) -> datetime:
    """An ISO 8601 date-time with a UTC offset (`Z` or `+02:00`); InvalidInput naming `field` else.

    A date-time without offset is refused rather than guessed: the audit log's times are instants.
    """
    candidate = _SPACED_OFFSET.sub(r"+\1", text.strip())
    try:
        instant = datetime.fromisoformat(candidate)
    except ValueError:
        raise InvalidInput(
            f"{field} must be an ISO 8601 date-time with a UTC offset, such as 2026-05-01T10:00:00Z",
            field=field,
        ) from None
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidInput(
            f"{field} needs a UTC offset (Z or +HH:MM): {text!r} names no single instant", field=field
        )
    return instant
