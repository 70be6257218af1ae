"""Holdouts, their recorded members, and the statistics their results are computed from.

Each admin write (create, status) is one transaction with its audit entry (`holdout.create`,
`holdout.start|pause|resume|complete`; entity `holdout` and the holdout's id).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID, uuid4

import psycopg

from abtest.domain.audit import SYSTEM_ACTOR, Actor
from abtest.domain.audit_entries import holdout_created, holdout_status_changed
from abtest.domain.experiments import Status
from abtest.domain.holdouts import HOLDING_OUT, Holdout, HoldoutCreate, holdout_row
from abtest.domain.lifecycle import check_transition
from abtest.domain.paging import Listing, decode_cursor, encode_cursor
from abtest.errors import Conflict, ErrorCode, InvalidInput, NotFound
from abtest.storage.audit import record
from abtest.storage.database import Connection, Database
from abtest.storage.experiments import statuses_sql

if TYPE_CHECKING:  # the results' types: only the metrics function loads the analysis package
    from abtest.analysis.holdouts import HoldoutStats

T = TypeVar("T")

_SELECT_HOLDOUT = """
SELECT id, name, salt, percent, surfaces, status, created_at, updated_at, started_at, completed_at
FROM holdouts
"""

_CONFLICTS = {
    "holdouts_name_key": (ErrorCode.DUPLICATE_NAME, "name", "a holdout with this name already exists"),
}

# Per group and metric, the per-user totals of a holdout's members: every conversion of an experiment
# on a covered surface (stored against a variant, or as a holdout conversion) from the member's
# first_seen_at on, and not after the holdout completed. A conversion sent to several covered
# experiments under the same event_id counts once. Sums in numeric, as the rollup does.
_GROUP_METRICS = """
WITH members AS (
    SELECT user_id, "group", first_seen_at FROM holdout_members WHERE holdout_id = %(holdout_id)s
), covered AS (
    SELECT id FROM experiments
    WHERE %(surfaces)s::text[] IS NULL OR surface = ANY (%(surfaces)s::text[])
), events AS (
    SELECT c.user_id, c.metric_name, c.value, c.event_id, c.occurred_at
    FROM conversions c JOIN members m ON m.user_id = c.user_id
    WHERE c.experiment_id IN (SELECT id FROM covered)
    UNION ALL
    SELECT c.user_id, c.metric_name, c.value, c.event_id, c.occurred_at
    FROM holdout_conversions c JOIN members m ON m.user_id = c.user_id
    WHERE c.experiment_id IN (SELECT id FROM covered)
), numbered AS (
    SELECT e.*, row_number() OVER (PARTITION BY e.user_id, e.metric_name, e.event_id ORDER BY e.occurred_at)
           AS copy
    FROM events e
), per_user AS (
    SELECT m."group", n.user_id, n.metric_name, sum(n.value::numeric) AS total
    FROM numbered n JOIN members m ON m.user_id = n.user_id
    WHERE (n.event_id IS NULL OR n.copy = 1)
      AND n.occurred_at >= m.first_seen_at
      AND n.occurred_at <= COALESCE(%(completed_at)s::timestamptz, 'infinity')
    GROUP BY m."group", n.user_id, n.metric_name
)
SELECT "group", metric_name, count(*) AS users, sum(total)::float8 AS sum,
       sum(total * total)::float8 AS sum_squares
FROM per_user
GROUP BY "group", metric_name
"""


def holdout_not_found(holdout_id: UUID) -> NotFound:
    return NotFound(f"no holdout with id {holdout_id}", code=ErrorCode.HOLDOUT_NOT_FOUND, field="holdout_id")


class HoldoutRepository:
    """Holdouts: each admin write is one transaction here."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, new: HoldoutCreate, *, actor: Actor = SYSTEM_ACTOR) -> Holdout:
        """Store a draft holdout with a fresh random salt, and its audit entry (holdout.create by
        `actor`)."""
        holdout_id = uuid4()

        def work(conn: Connection) -> Holdout:
            conn.execute(
                "INSERT INTO holdouts (id, name, salt, percent, surfaces) VALUES (%s, %s, %s, %s, %s)",
                (holdout_id, new.name, str(uuid4()), str(new.percent), new.surfaces),
            )
            created = _fetch(conn, holdout_id)
            record(conn, holdout_created(actor, created))
            return created

        return self._write(work)

    def get(self, holdout_id: UUID) -> Holdout:
        """One holdout; NotFound if there is none."""
        return self._db.run(lambda conn: _fetch(conn, holdout_id), transaction=False)

    def list(self, *, limit: int = 100, cursor: str | None = None) -> Listing[Holdout]:
        """Holdouts oldest first, a page at a time."""
        after = decode_cursor(cursor, datetime, UUID) if cursor is not None else None

        def work(conn: Connection) -> builtins.list[Holdout]:
            where = " WHERE (created_at, id) > (%s, %s)" if after is not None else ""
            query = f"{_SELECT_HOLDOUT}{where} ORDER BY created_at, id LIMIT %s"
            params: list[Any] = [*after, limit + 1] if after is not None else [limit + 1]
            return [holdout_row(row) for row in conn.execute(query.encode(), params)]

        rows = self._db.run(work, transaction=False)
        page, more = rows[:limit], len(rows) > limit
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
        return Listing(page, next_cursor)

    def running(self) -> builtins.list[Holdout]:
        """Every holdout that holds users out (running)."""
        query = f"{_SELECT_HOLDOUT} WHERE status IN {statuses_sql(HOLDING_OUT)} ORDER BY id"
        return self._db.run(
            lambda conn: [holdout_row(row) for row in conn.execute(query.encode())], transaction=False
        )

    def change_status(self, holdout_id: UUID, target: Status, *, actor: Actor = SYSTEM_ACTOR) -> Holdout:
        """Apply a lifecycle transition (the experiments' rules), recording start and completion, with
        its audit entry (holdout.start|pause|resume|complete by `actor`; none for a no-op)."""

        def work(conn: Connection) -> Holdout:
            current = _fetch(conn, holdout_id, lock=True)
            check_transition(current.status, target)
            if current.status != target:
                conn.execute(
                    "UPDATE holdouts SET status = %(target)s, updated_at = now(),"
                    " started_at = CASE WHEN %(target)s = 'running'"
                    "   THEN COALESCE(started_at, now()) ELSE started_at END,"
                    " completed_at = CASE WHEN %(target)s = 'completed' THEN now() ELSE completed_at END"
                    " WHERE id = %(id)s",
                    {"target": target.value, "id": holdout_id},
                )
            changed = _fetch(conn, holdout_id)
            entry = holdout_status_changed(actor, current, changed)
            if entry is not None:
                record(conn, entry)
            return changed

        return self._write(work)

    def stats(self, holdout_id: UUID) -> HoldoutStats:
        """The members per group and the per-metric statistics of a holdout, in one snapshot."""
        # Imported here: only the metrics function pays for the analysis package (cold start).
        from abtest.analysis.holdouts import GroupMetric, HoldoutStats

        def work(conn: Connection) -> HoldoutStats:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            holdout = _fetch(conn, holdout_id)
            members = {
                row["group"]: row["members"]
                for row in conn.execute(
                    'SELECT "group", count(*) AS members FROM holdout_members'
                    " WHERE holdout_id = %s GROUP BY 1",
                    (holdout_id,),
                )
            }
            stats = HoldoutStats(holdout, members)
            params = {
                "holdout_id": holdout_id,
                "surfaces": holdout.surfaces,
                "completed_at": holdout.completed_at,
            }
            for row in conn.execute(_GROUP_METRICS.encode(), params):
                stats.metrics.setdefault(row["metric_name"], {})[row["group"]] = GroupMetric(
                    row["users"], row["sum"], row["sum_squares"]
                )
            return stats

        return self._db.run(work)

    def _write(self, work: Callable[[Connection], T]) -> T:
        try:
            return self._db.run(work)
        except psycopg.errors.IntegrityError as exc:
            constraint = exc.diag.constraint_name or ""
            if constraint in _CONFLICTS:
                code, field_name, message = _CONFLICTS[constraint]
                raise Conflict(message, code=code, field=field_name) from exc
            raise InvalidInput(f"rejected by the database constraint {constraint or 'unknown'}") from exc


def _fetch(conn: Connection, holdout_id: UUID, *, lock: bool = False) -> Holdout:
    query = _SELECT_HOLDOUT + " WHERE id = %s" + (" FOR UPDATE" if lock else "")
    row = conn.execute(query.encode(), (holdout_id,)).fetchone()
    if row is None:
        raise holdout_not_found(holdout_id)
    return holdout_row(row)
