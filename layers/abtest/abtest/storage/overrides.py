"""Per-user overrides (forced variants) and the counts of what forced users did.

Each write is one transaction in one method, with its audit entry (`override.set`, `override.delete`:
entity `override` and the user id, parent the experiment, so /experiments/{id}/history shows them).
Serving reads the overrides in the enrollment statement itself (abtest.storage.assignments), so a write
takes effect on the very next request, whatever the containers' caches hold.
"""

from __future__ import annotations

from uuid import UUID

from abtest.domain.audit import SYSTEM_ACTOR, Actor
from abtest.domain.audit_entries import override_deleted, override_set
from abtest.domain.experiments import Experiment
from abtest.domain.overrides import (
    USER_ALREADY_ASSIGNED,
    Override,
    OverrideCounts,
    OverrideList,
    OverrideWritten,
    check_overridable,
    check_room,
    forced_variant,
)
from abtest.errors import ErrorCode, NotFound, experiment_not_found
from abtest.limits import MAX_OVERRIDES_PER_EXPERIMENT
from abtest.storage.audit import record
from abtest.storage.database import Connection, Database
from abtest.storage.experiments import fetch_experiment, overrides_of

_OVERRIDE_COLUMNS = """
o.experiment_id, o.user_id, v.name AS variant, o.variant_id, o.created_at, o.updated_at
"""

_UPSERT = """
WITH written AS (
    INSERT INTO experiment_overrides AS o (experiment_id, user_id, variant_id)
    VALUES (%(experiment_id)s, %(user_id)s, %(variant_id)s)
    ON CONFLICT (experiment_id, user_id) DO UPDATE
        SET variant_id = excluded.variant_id, updated_at = now()
    RETURNING o.*
)
SELECT o.experiment_id, o.user_id, %(variant)s::text AS variant, o.variant_id, o.created_at, o.updated_at
FROM written o
"""

_COUNTS = """
SELECT (SELECT count(*) FROM experiment_overrides WHERE experiment_id = %(id)s) AS active,
       (SELECT count(*) FROM (SELECT user_id FROM override_exposures WHERE experiment_id = %(id)s
                              UNION
                              SELECT user_id FROM override_conversions WHERE experiment_id = %(id)s) u)
           AS users,
       (SELECT count(*) FROM override_exposures WHERE experiment_id = %(id)s) AS exposures,
       (SELECT count(*) FROM override_conversions WHERE experiment_id = %(id)s) AS conversions
"""


def _override_not_found(experiment_id: UUID, user_id: str) -> NotFound:
    return NotFound(
        f"experiment {experiment_id} has no override for user {user_id!r}",
        code=ErrorCode.OVERRIDE_NOT_FOUND,
        field="user_id",
    )


class OverrideRepository:
    """Overrides of experiments, and the separate counts of forced users' events."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def put(
        self, experiment_id: UUID, user_id: str, variant_name: str, *, actor: Actor = SYSTEM_ACTOR
    ) -> OverrideWritten:
        """Force `user_id` into the variant named `variant_name` (create or replace), in one transaction
        with its audit entry (override.set by `actor`; none when that variant is already forced).

        NotFound for an unknown experiment; Conflict for a completed one or one more than
        MAX_OVERRIDES_PER_EXPERIMENT; InvalidInput (field `variant`) for an unknown variant. The answer
        warns when the user already has a stored assignment, which is kept.
        """

        def work(conn: Connection) -> OverrideWritten:
            # The row lock serialises overrides of one experiment (the count cannot race past the
            # bound) and with its status changes (no override lands on an experiment being completed).
            experiment: Experiment = fetch_experiment(conn, experiment_id, lock=True)
            check_overridable(experiment)
            variant = forced_variant(experiment, variant_name)
            row = conn.execute(
                "SELECT count(*) AS n,"
                " (SELECT jsonb_build_object('variant', v.name, 'variant_id', p.variant_id,"
                "         'created_at', p.created_at, 'updated_at', p.updated_at)"
                "  FROM experiment_overrides p JOIN variants v ON v.id = p.variant_id"
                "  WHERE p.experiment_id = %(id)s AND p.user_id = %(user_id)s) AS previous,"
                " (SELECT v.name FROM assignments a JOIN variants v ON v.id = a.variant_id"
                "  WHERE a.experiment_id = %(id)s AND a.user_id = %(user_id)s) AS assigned"
                " FROM experiment_overrides WHERE experiment_id = %(id)s",
                {"id": experiment_id, "user_id": user_id},
            ).fetchone()
            assert row is not None  # an aggregate always yields one row
            previous = row["previous"]
            check_room(row["n"], previous is not None)
            written = conn.execute(
                _UPSERT,
                {
                    "experiment_id": experiment_id,
                    "user_id": user_id,
                    "variant_id": variant.id,
                    "variant": variant.name,
                },
            ).fetchone()
            assert written is not None  # an upsert always returns its row
            assigned = row["assigned"]
            override = OverrideWritten(
                **written,
                warning=USER_ALREADY_ASSIGNED if assigned is not None else None,
                assigned_variant=assigned,
            )
            before = (
                None
                if previous is None
                else Override(experiment_id=experiment_id, user_id=user_id, **previous)
            )
            entry = override_set(actor, before, override)
            if entry is not None:
                record(conn, entry)
            return override

        return self._db.run(work)

    def delete(self, experiment_id: UUID, user_id: str, *, actor: Actor = SYSTEM_ACTOR) -> Override:
        """Remove the user's override, in one transaction with its audit entry (override.delete by
        `actor`), and return what it was; NotFound for an unknown experiment (`experiment_not_found`)
        or no override (`override_not_found`)."""

        def work(conn: Connection) -> Override:
            exists = conn.execute(
                "SELECT 1 FROM experiments WHERE id = %s FOR UPDATE", (experiment_id,)
            ).fetchone()
            if exists is None:
                raise experiment_not_found(experiment_id)
            row = conn.execute(
                "WITH gone AS (DELETE FROM experiment_overrides"
                " WHERE experiment_id = %(id)s AND user_id = %(user_id)s RETURNING *)"
                f" SELECT {_OVERRIDE_COLUMNS} FROM gone o JOIN variants v ON v.id = o.variant_id",
                {"id": experiment_id, "user_id": user_id},
            ).fetchone()
            if row is None:
                raise _override_not_found(experiment_id, user_id)
            removed = Override.model_validate(row)
            record(conn, override_deleted(actor, removed))
            return removed

        return self._db.run(work)

    def list(self, experiment_id: UUID) -> OverrideList:
        """Every override of the experiment, oldest first (at most MAX_OVERRIDES_PER_EXPERIMENT)."""

        def work(conn: Connection) -> OverrideList:
            if conn.execute("SELECT 1 FROM experiments WHERE id = %s", (experiment_id,)).fetchone() is None:
                raise experiment_not_found(experiment_id)
            overrides = overrides_of(conn, experiment_id)
            return OverrideList(
                experiment_id=experiment_id,
                count=len(overrides),
                max_overrides=MAX_OVERRIDES_PER_EXPERIMENT,
                overrides=overrides,
            )

        return self._db.run(work, transaction=False)

    def counts(self, experiment_id: UUID) -> OverrideCounts:
        """What forced users of the experiment did (the analysis never counts it)."""

        def work(conn: Connection) -> OverrideCounts:
            row = conn.execute(_COUNTS, {"id": experiment_id}).fetchone()
            assert row is not None  # a SELECT without FROM yields one row
            return OverrideCounts.model_validate(row)

        return self._db.run(work, transaction=False)
