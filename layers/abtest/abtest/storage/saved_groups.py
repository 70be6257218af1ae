"""Saved groups: named lists of values for `$inGroup` / `$notInGroup` targeting.

Every write is one transaction in one method, with its audit entry (`saved_group.create|update|delete`,
entity `saved_group` and the group's id). The rule that keeps
targeting sound: a group that the targeting of an experiment not yet completed names can be neither
deleted nor renamed (409 saved_group_in_use). Experiment writes take a share lock on the groups they
name (`lock_group_keys`) and group writes an exclusive one, so the two cannot race.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb

from abtest.domain.audit import SYSTEM_ACTOR, Actor
from abtest.domain.audit_entries import saved_group_created, saved_group_deleted, saved_group_updated
from abtest.domain.saved_groups import SavedGroup, SavedGroupIn, SavedGroupPut, SavedGroupSummary
from abtest.domain.targeting_checks import referenced_groups
from abtest.errors import Conflict, ErrorCode, NotFound
from abtest.storage.audit import record
from abtest.storage.database import Connection, Database

_COLUMNS = 'id, key, "values", created_at, updated_at'


def _duplicate(key: str) -> Conflict:
    return Conflict(
        f"a saved group with key '{key}' already exists", code=ErrorCode.DUPLICATE_KEY, field="key"
    )


def _not_found(group_id: UUID) -> NotFound:
    return NotFound(f"no saved group with id {group_id}", code=ErrorCode.SAVED_GROUP_NOT_FOUND, field="id")


def lock_group_keys(conn: Connection, keys: Collection[str]) -> set[str]:
    """Which of `keys` exist, share-locked until the transaction ends (so none is deleted meanwhile)."""
    if not keys:
        return set()
    rows = conn.execute(
        "SELECT key FROM saved_groups WHERE key = ANY(%s) ORDER BY key FOR SHARE", (sorted(keys),)
    ).fetchall()
    return {row["key"] for row in rows}


def group_values(conn: Connection, keys: Collection[str] | None = None) -> dict[str, list[Any]]:
    """Values by key: of `keys` (those that exist), or of every group when None."""
    if keys is not None and not keys:
        return {}
    if keys is None:
        rows = conn.execute('SELECT key, "values" FROM saved_groups').fetchall()
    else:
        rows = conn.execute(
            'SELECT key, "values" FROM saved_groups WHERE key = ANY(%s)', (sorted(keys),)
        ).fetchall()
    return {row["key"]: list(row["values"]) for row in rows}


def experiments_using(conn: Connection, key: str) -> list[UUID]:
    """Experiments not completed whose targeting names the group (by `$inGroup` / `$notInGroup`)."""
    rows = conn.execute(
        "SELECT id, targeting FROM experiments"
        " WHERE status <> 'completed' AND targeting::text LIKE '%%Group%%' ORDER BY created_at, id"
    ).fetchall()
    return [row["id"] for row in rows if key in referenced_groups(row["targeting"])]


class SavedGroupRepository:
    """Saved groups."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, new: SavedGroupIn, *, actor: Actor = SYSTEM_ACTOR) -> SavedGroup:
        """Store a new group with its audit entry (saved_group.create by `actor`); 409 duplicate_key if
        the key is taken."""

        def work(conn: Connection) -> SavedGroup:
            row = conn.execute(
                f'INSERT INTO saved_groups (id, key, "values") VALUES (%s, %s, %s) RETURNING {_COLUMNS}',
                (uuid4(), new.key, Jsonb(new.values)),
            ).fetchone()
            group = SavedGroup.model_validate(row)
            record(conn, saved_group_created(actor, group))
            return group

        try:
            return self._db.run(work)
        except psycopg.errors.UniqueViolation as exc:
            raise _duplicate(new.key) from exc

    def summaries(self) -> Sequence[SavedGroupSummary]:
        """Every group by key, with its size (not its values: a listing stays small)."""

        def work(conn: Connection) -> list[SavedGroupSummary]:
            rows = conn.execute(
                'SELECT id, key, jsonb_array_length("values") AS value_count, created_at, updated_at'
                " FROM saved_groups ORDER BY key"
            ).fetchall()
            return [SavedGroupSummary.model_validate(row) for row in rows]

        return self._db.run(work, transaction=False)

    def get(self, group_id: UUID) -> SavedGroup:
        """One group with its values; 404 saved_group_not_found."""

        def work(conn: Connection) -> SavedGroup:
            row = conn.execute(f"SELECT {_COLUMNS} FROM saved_groups WHERE id = %s", (group_id,)).fetchone()
            if row is None:
                raise _not_found(group_id)
            return SavedGroup.model_validate(row)

        return self._db.run(work, transaction=False)

    def replace(self, group_id: UUID, change: SavedGroupPut, *, actor: Actor = SYSTEM_ACTOR) -> SavedGroup:
        """New values (and key), with the audit entry (saved_group.update by `actor`, the group before
        and after; none when nothing changed); a rename is refused while an experiment not completed
        uses the group."""

        def work(conn: Connection) -> SavedGroup:
            current = self._lock(conn, group_id)
            key = change.key or current.key
            if key != current.key:
                _refuse_if_used(conn, current.key, "renamed")
            row = conn.execute(
                f'UPDATE saved_groups SET key = %s, "values" = %s, updated_at = now() WHERE id = %s'
                f" RETURNING {_COLUMNS}",
                (key, Jsonb(change.values), group_id),
            ).fetchone()
            group = SavedGroup.model_validate(row)
            entry = saved_group_updated(actor, current, group)
            if entry is not None:
                record(conn, entry)
            return group

        try:
            return self._db.run(work)
        except psycopg.errors.UniqueViolation as exc:
            raise _duplicate(change.key or "") from exc

    def delete(self, group_id: UUID, *, actor: Actor = SYSTEM_ACTOR) -> None:
        """Delete a group unless an experiment not completed uses it (409 saved_group_in_use), with its
        audit entry (saved_group.delete by `actor`, the deleted group as before)."""

        def work(conn: Connection) -> None:
            group = self._lock(conn, group_id)
            _refuse_if_used(conn, group.key, "deleted")
            conn.execute("DELETE FROM saved_groups WHERE id = %s", (group_id,))
            record(conn, saved_group_deleted(actor, group))

        self._db.run(work)

    def values(self, keys: Collection[str] | None = None) -> dict[str, list[Any]]:
        """Values by key, of `keys` or of every group (None)."""
        return self._db.run(lambda conn: group_values(conn, keys), transaction=False)

    @staticmethod
    def _lock(conn: Connection, group_id: UUID) -> SavedGroup:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM saved_groups WHERE id = %s FOR UPDATE", (group_id,)
        ).fetchone()
        if row is None:
            raise _not_found(group_id)
        return SavedGroup.model_validate(row)


def _refuse_if_used(conn: Connection, key: str, what: str) -> None:
    users = experiments_using(conn, key)
    if users:
        error = Conflict(
            f"saved group '{key}' cannot be {what}: the targeting of {len(users)} experiment(s) not "
            "completed names it; change their targeting (or complete them) first",
            code=ErrorCode.SAVED_GROUP_IN_USE,
            field="id",
        )
        error.details = {"experiments": [str(u) for u in users]}
        raise error
