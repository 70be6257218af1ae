"""Assignments and the exposures written with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from abtest.domain.assignment import Enrollment
from abtest.domain.lifecycle import ENROLLING, EXPOSING
from abtest.domain.models import Experiment, Status
from abtest.storage.database import Connection, Database
from abtest.storage.experiments import fetch_experiment, fetch_running, not_found, statuses_sql

_ENROLL = f"""
WITH experiment AS (
    SELECT status FROM experiments WHERE id = %(experiment_id)s
), existing AS (
    SELECT variant_id FROM assignments
    WHERE experiment_id = %(experiment_id)s AND user_id = %(user_id)s
), inserted AS (
    INSERT INTO assignments (experiment_id, user_id, variant_id, context)
    SELECT %(experiment_id)s, %(user_id)s, %(variant_id)s, %(context)s
    WHERE NOT EXISTS (SELECT 1 FROM existing) AND (SELECT status FROM experiment) IN {statuses_sql(ENROLLING)}
    ON CONFLICT (experiment_id, user_id) DO NOTHING
    RETURNING variant_id
), chosen AS (
    SELECT variant_id, false AS created FROM existing
    UNION ALL
    SELECT variant_id, true AS created FROM inserted
), exposed AS (
    INSERT INTO exposures (experiment_id, variant_id, user_id, context)
    SELECT %(experiment_id)s, variant_id, %(user_id)s, %(context)s FROM chosen
    WHERE %(record_exposure)s AND (SELECT status FROM experiment) IN {statuses_sql(EXPOSING)}
    RETURNING id
)
SELECT (SELECT status FROM experiment) AS status,
       (SELECT variant_id FROM chosen) AS variant_id,
       COALESCE((SELECT created FROM chosen), false) AS created,
       (SELECT count(*) FROM exposed) > 0 AS exposed,
       (SELECT embedding FROM user_profiles
        WHERE %(with_profile)s AND user_id = %(user_id)s) AS profile
"""


@dataclass(frozen=True)
class StoredAssignment:
    experiment_name: str
    variant_id: UUID | None
    variant_name: str | None
    variant_config: dict[str, Any] | None


class AssignmentRepository:
    """Assignments and exposures (the recommender's catalog is CatalogRepository's)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def running_experiments(self) -> list[Experiment]:
        """Every running experiment, in the order surfaces choose them: started first, then created."""
        return self._db.run(fetch_running, transaction=False)

    def experiment(self, experiment_id: UUID) -> Experiment:
        """One experiment with its variants; NotFound if there is none."""
        return self._db.run(lambda conn: fetch_experiment(conn, experiment_id), transaction=False)

    def enroll(
        self,
        experiment_id: UUID,
        user_id: str,
        variant_id: UUID,
        *,
        context: dict[str, Any] | None,
        record_exposure: bool,
        with_profile: bool = False,
    ) -> Enrollment:
        """Store the user's assignment unless one exists (the stored one wins) and record an exposure,
        in one statement and one round trip, only while the experiment is running.

        Two requests racing for a new user: the loser's insert is skipped by ON CONFLICT but its
        snapshot cannot see the winner's row yet, so it finds nothing; it then runs again (a second
        round trip) and reads the winner's assignment.
        """
        params = {
            "experiment_id": experiment_id,
            "user_id": user_id,
            "variant_id": variant_id,
            "context": Jsonb(context) if context is not None else None,
            "record_exposure": record_exposure,
            "with_profile": with_profile,
        }

        def attempt(conn: Connection) -> Enrollment:
            row = conn.execute(_ENROLL, params).fetchone()
            assert row is not None  # a SELECT without FROM always yields one row
            status = Status(row["status"]) if row["status"] is not None else None
            return Enrollment(status, row["variant_id"], row["created"], row["exposed"], row["profile"])

        def work(conn: Connection) -> Enrollment:
            enrollment = attempt(conn)
            if enrollment.status in ENROLLING and enrollment.variant_id is None:
                enrollment = attempt(conn)  # lost a race for a new user: read the winner's row
            return enrollment

        # Not retried on a dropped connection: the exposure might have been written already.
        return self._db.run(work, transaction=False, retry=False)

    def stored_assignment(self, experiment_id: UUID, user_id: str) -> StoredAssignment:
        """The user's stored variant, without enrolling anyone; NotFound for an unknown experiment."""

        def work(conn: Connection) -> StoredAssignment:
            row = conn.execute(
                "SELECT e.name AS experiment_name, v.id AS variant_id, v.name AS variant_name,"
                " v.config AS variant_config"
                " FROM experiments e"
                " LEFT JOIN assignments a ON a.experiment_id = e.id AND a.user_id = %(user_id)s"
                " LEFT JOIN variants v ON v.id = a.variant_id"
                " WHERE e.id = %(experiment_id)s",
                {"experiment_id": experiment_id, "user_id": user_id},
            ).fetchone()
            if row is None:
                raise not_found(experiment_id)
            return StoredAssignment(**row)

        return self._db.run(work, transaction=False)
