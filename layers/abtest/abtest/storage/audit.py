"""The audit log's storage: `record` appends an entry inside the caller's transaction, and
`AuditRepository` reads an experiment's history and the filtered feed, newest first.

Every admin write records its entry with the connection its repository method's `db.run(work)`
gives, so the change and its entry commit together or not at all; an entry that cannot be stored
fails the change (unlike Unleash and PostHog, which log and swallow audit errors):

    from abtest.domain.audit import AuditEntry
    from abtest.storage.audit import record

    def work(conn: Connection) -> Override:
        ...  # the change
        record(conn, AuditEntry(actor=actor, action="override.set", entity_type="experiment",
                                entity_id=experiment_id, before=old, after=new))
        return ...

    return self._db.run(work)

Entries are never updated or deleted (migration 0010 revokes both from the application's role).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from abtest.domain.audit import AuditEntry, AuditEvent, AuditFilter
from abtest.domain.paging import Listing, decode_cursor, encode_cursor
from abtest.errors import experiment_not_found
from abtest.limits import MAX_PAGE_BYTES
from abtest.storage.database import Connection, Database

_COLUMNS = (
    "id, occurred_at, actor_type, actor_id, actor_scopes, request_id, entity_type, entity_id,"
    " parent_type, parent_id, action, before, after, changes, reason"
)


class AuditWriteFailed(Exception):
    """An audit entry could not be stored: the change it records is rolled back with it (a 500)."""


def record(conn: Connection, entry: AuditEntry) -> int:
    """Append `entry` in the transaction open on `conn` and return its id.

    Raises AuditWriteFailed outside a transaction (an entry committed apart from its change could
    outlive a failed change) and when the database refuses the entry; either way the caller's
    transaction rolls back, so no change is ever stored without its entry.
    """
    if conn.info.transaction_status != TransactionStatus.INTRANS:
        raise AuditWriteFailed("record() must run inside the transaction of the change (db.run(work))")
    actor = entry.actor
    try:
        row = conn.execute(
            "INSERT INTO audit_events (actor_type, actor_id, actor_scopes, request_id, entity_type,"
            " entity_id, parent_type, parent_id, action, before, after, changes, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                actor.type,
                actor.id,
                list(actor.scopes),
                actor.request_id,
                entry.entity_type,
                entry.entity_id,
                entry.parent_type,
                entry.parent_id,
                entry.action,
                None if entry.before is None else Jsonb(entry.before),
                None if entry.after is None else Jsonb(entry.after),
                Jsonb([change.model_dump(mode="json") for change in entry.changes or []]),
                actor.reason,
            ),
        ).fetchone()
    except (psycopg.errors.IntegrityError, psycopg.errors.InsufficientPrivilege) as exc:
        raise AuditWriteFailed(f"the audit entry {entry.action} was refused: {exc.sqlstate}") from exc
    assert row is not None
    entry_id: int = row["id"]
    return entry_id


def _event(row: dict[str, Any]) -> AuditEvent:
    return AuditEvent.model_validate(
        {
            **row,
            "actor": {"type": row["actor_type"], "id": row["actor_id"], "scopes": row["actor_scopes"]},
        }
    )


class AuditRepository:
    """Reads the audit log (writes go through `record`, inside the writers' own transactions)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def history(
        self, experiment_id: UUID, *, limit: int = 50, cursor: str | None = None
    ) -> Listing[AuditEvent]:
        """The experiment's entries and those whose parent it is, newest first.

        NotFound unless the experiment exists or the log knows it (a deleted draft keeps its history).
        """
        key = str(experiment_id)
        where = sql.SQL(
            "((entity_type = 'experiment' AND entity_id = %s)"
            " OR (parent_type = 'experiment' AND parent_id = %s))"
        )

        def work(conn: Connection) -> Listing[AuditEvent]:
            page = self._page(conn, [where], [key, key], limit, cursor)
            if not page.items:
                known = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM experiments WHERE id = %s)"
                    " OR EXISTS (SELECT 1 FROM audit_events"
                    "  WHERE entity_type = 'experiment' AND entity_id = %s)"
                    " AS known",
                    (experiment_id, key),
                ).fetchone()
                if known is None or not known["known"]:
                    raise experiment_not_found(experiment_id)
            return page

        return self._db.run(work, transaction=False)

    def search(
        self, filters: AuditFilter, *, limit: int = 50, cursor: str | None = None
    ) -> Listing[AuditEvent]:
        """Entries matching every given filter, newest first (`since` inclusive, `until` exclusive)."""
        conditions: list[sql.Composable] = []
        params: list[Any] = []
        for column, value in (
            ("entity_type", filters.entity_type),
            ("entity_id", filters.entity_id),
            ("actor_id", filters.actor),
            ("action", filters.action),
        ):
            if value is not None:
                conditions.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if filters.since is not None:
            conditions.append(sql.SQL("occurred_at >= %s"))
            params.append(filters.since)
        if filters.until is not None:
            conditions.append(sql.SQL("occurred_at < %s"))
            params.append(filters.until)
        return self._db.run(
            lambda conn: self._page(conn, conditions, params, limit, cursor), transaction=False
        )

    @staticmethod
    def _page(
        conn: Connection,
        conditions: list[sql.Composable],
        params: list[Any],
        limit: int,
        cursor: str | None,
    ) -> Listing[AuditEvent]:
        conditions, params = list(conditions), list(params)
        if cursor is not None:
            conditions.append(sql.SQL("(occurred_at, id) < (%s, %s)"))
            params.extend(decode_cursor(cursor, datetime, int))
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        query = sql.SQL("SELECT {} FROM audit_events{} ORDER BY occurred_at DESC, id DESC LIMIT %s").format(
            sql.SQL(_COLUMNS), where
        )
        rows = conn.execute(query, [*params, limit + 1]).fetchall()
        events = [_event(row) for row in rows[:limit]]
        more = len(rows) > limit
        # A page also stops at MAX_PAGE_BYTES of entries (at least one), as the experiments listing
        # does: an entry holds whole experiments, and a response must stay under Lambda's 6 MB.
        size = 0
        for count, event in enumerate(events):
            size += len(event.model_dump_json())
            if count > 0 and size > MAX_PAGE_BYTES:
                events, more = events[:count], True
                break
        next_cursor = encode_cursor(events[-1].occurred_at, events[-1].id) if more else None
        return Listing(events, next_cursor)
