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

The service's writers and their entries (built by abtest.domain.audit_entries, recorded by the repositories):
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

from abtest.errors import InvalidInput
from abtest.limits import MAX_AUDIT_ID_LENGTH, MAX_REASON_LENGTH

ActorType = Literal["user", "client", "system", "local"]
ACTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
ENTITY_TYPE_PATTERN = r"^[a-z][a-z0-9_]*$"
# Bookkeeping timestamps every write moves: never "a change" in the diff.
UNDIFFED_FIELDS = frozenset({"updated_at", "created_at"})


def _as_text(value: Any) -> Any:
    return str(value) if isinstance(value, UUID) else value


Text = Annotated[str, BeforeValidator(_as_text), Field(min_length=1, max_length=MAX_AUDIT_ID_LENGTH)]


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
    parent_id: Annotated[str | None, BeforeValidator(_as_text), Field(max_length=MAX_AUDIT_ID_LENGTH)] = None
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


def snapshot(entity: BaseModel, exclude: set[str] | None = None) -> dict[str, Any]:
    """An entity (experiment, saved group, holdout, metric definition, webhook) as its entries store it:
    what the API answers, as JSON, without the `exclude`d fields."""
    dumped: dict[str, Any] = entity.model_dump(mode="json", exclude=exclude)
    return dumped
