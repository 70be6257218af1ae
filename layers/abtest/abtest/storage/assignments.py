"""Assignments and the exposures written with them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from abtest.domain.assignment import Enrollment, EnrollRequest
from abtest.domain.breakdowns import OTHER_VALUE
from abtest.domain.experiments import Experiment, Status
from abtest.domain.holdouts import HOLDING_OUT, Holdout
from abtest.domain.lifecycle import ENROLLING, EXPOSING, HOLDING_BUCKETS
from abtest.domain.namespaces import NamespaceAllocation
from abtest.errors import experiment_not_found
from abtest.limits import MAX_DIMENSION_VALUES
from abtest.storage.database import Connection, Database
from abtest.storage.experiments import SELECT_EXPERIMENT, fetch_experiment, statuses_sql
from abtest.storage.holdouts import HoldoutRepository
from abtest.storage.namespaces import NamespaceRepository
from abtest.storage.routines import Routine
from abtest.storage.saved_groups import group_values

# The hot path's one statement (see EnrollRequest): the user's live namespace membership, the target
# experiment (the one asked for or, on a surface, the membership's), the stored assignment, the new
# membership and assignment if proposed and allowed, the exposure, and the profile. The membership's
# primary key (surface, user_id) is the guard that keeps racing requests from putting a user in two
# experiments of one namespace: the loser's insert finds the winner's row and changes nothing (it may
# only take over a membership whose experiment completed).
# It runs as the routine ENROLL below (a PL/pgSQL function made from this text by the migration runner,
# so its plan is cached per session without PREPARE). Editing it needs no numbered migration; a new
# %(placeholder)s must be declared in ENROLL's params (checked at import) and passed by enroll().
_ENROLL = f"""
-- Each part is labelled with the stage of the decision pipeline (abtest.domain.decision.STAGES) it
-- implements. The targeting and traffic stages have no part here: they only ever decide about a new
-- enrollment, before this statement, and when they exit the caller proposes no variant (read only).
-- The scenario table tests/scenarios/enrollment.py runs against this statement and its in-memory
-- mirror (FakeStore.enroll), so a change here must be mirrored there.
WITH holdout_check AS (
    -- [holdout] The running holdouts covering the surface must be the ones the caller's cache
    -- decided with; otherwise nothing below is written and the caller reloads (holdouts_stale).
    SELECT COALESCE(array_agg(h.id ORDER BY h.id), '{{}}') = %(holdout_ids)s::uuid[] AS fresh
    FROM holdouts h
    WHERE h.status IN {statuses_sql(HOLDING_OUT)} AND (h.surfaces IS NULL OR %(surface)s = ANY (h.surfaces))
), holdout_seen AS (
    -- [holdout] Record the user's holdout and measurement groups (computed by the caller).
    INSERT INTO holdout_members (holdout_id, user_id, "group")
    SELECT s.holdout_id, %(user_id)s, s.member_group
    FROM unnest(%(holdout_member_ids)s::uuid[], %(holdout_member_groups)s::text[])
         AS s(holdout_id, member_group)
    WHERE (SELECT fresh FROM holdout_check)
    ON CONFLICT (holdout_id, user_id) DO NOTHING
), member AS (
    -- [experiment] [namespace] The user's live namespace membership: on a surface the experiment
    -- decided about; elsewhere it keeps the user out of siblings (in_other_experiment).
    SELECT m.experiment_id FROM namespace_members m JOIN experiments e ON e.id = m.experiment_id
    WHERE m.surface = %(surface)s AND m.user_id = %(user_id)s AND e.status <> 'completed'
), forced AS (
    -- [override] An override of the user: in the experiment asked for (/assignments; the pipeline
    -- serves it only while running), or on a surface in any running experiment of it, the oldest
    -- override first.
    SELECT o.experiment_id, o.variant_id FROM experiment_overrides o
    WHERE NOT %(follow_membership)s AND o.experiment_id = %(experiment_id)s::uuid
      AND o.user_id = %(user_id)s
    UNION ALL
    (SELECT o.experiment_id, o.variant_id
     FROM experiment_overrides o JOIN experiments e ON e.id = o.experiment_id
     WHERE %(follow_membership)s AND o.user_id = %(user_id)s
       AND e.surface = %(surface)s AND e.status IN {statuses_sql(ENROLLING)}
     ORDER BY o.created_at, o.experiment_id LIMIT 1)
), target AS (
    -- [experiment] The experiment decided about: the override's, else (surface) the membership's,
    -- else the one asked for or proposed. [running] Its status, the database's word over the cache's.
    SELECT e.id, e.status, e.phase FROM experiments e
    WHERE e.id = COALESCE((SELECT experiment_id FROM forced),
                          CASE WHEN %(follow_membership)s
                               THEN COALESCE((SELECT experiment_id FROM member), %(experiment_id)s::uuid)
                               ELSE %(experiment_id)s::uuid END)
), existing AS (
    -- [stored_assignment] The stored assignment, which wins over everything after it (sticky).
    SELECT a.variant_id FROM assignments a
    WHERE a.experiment_id = (SELECT id FROM target) AND a.user_id = %(user_id)s
), joined AS (
    -- [variant] Store the proposal with the membership, only if every earlier stage lets it through:
    -- [running] running, [override] not forced, [holdout] fresh holdouts, [stored_assignment] none
    -- stored, [namespace] no live membership (a completed one is taken over).
    INSERT INTO namespace_members AS m (surface, user_id, experiment_id)
    SELECT %(surface)s, %(user_id)s, t.id FROM target t
    WHERE %(variant_id)s::uuid IS NOT NULL AND t.id = %(experiment_id)s::uuid
      AND t.status IN {statuses_sql(ENROLLING)}
      AND NOT EXISTS (SELECT 1 FROM existing)
      AND NOT EXISTS (SELECT 1 FROM member WHERE member.experiment_id <> t.id)
      AND NOT EXISTS (SELECT 1 FROM forced)  -- forced users are never stored nor members
      AND (SELECT fresh FROM holdout_check)
    ON CONFLICT (surface, user_id) DO UPDATE
        SET experiment_id = excluded.experiment_id, joined_at = now()
        WHERE (SELECT status FROM experiments WHERE id = m.experiment_id) = 'completed'
    RETURNING m.experiment_id
), dimension_seen AS (
    -- [variant] Breakdowns: the values captured with a new assignment, each checked against the
    -- dimension's distinct values so far (a new value past MAX_DIMENSION_VALUES becomes "(other)").
    SELECT j.experiment_id, d.key AS dimension, d.value,
           EXISTS (SELECT 1 FROM dimension_values v WHERE v.experiment_id = j.experiment_id
                   AND v.dimension = d.key AND v.value = d.value) AS known
    FROM joined j, jsonb_each_text(COALESCE(%(dimensions)s::jsonb, '{{}}'::jsonb)) d
), dimension_final AS (
    -- [variant] The values stored: a known value, or a new one while the dimension has room.
    SELECT s.experiment_id, s.dimension,
           CASE WHEN s.known OR (SELECT count(*) FROM (
                    SELECT 1 FROM dimension_values v WHERE v.experiment_id = s.experiment_id
                    AND v.dimension = s.dimension LIMIT {MAX_DIMENSION_VALUES}) c) < {MAX_DIMENSION_VALUES}
                THEN s.value ELSE '{OTHER_VALUE}' END AS value
    FROM dimension_seen s
), dimension_kept AS (
    -- [variant] Remember the new values (the cap's memory).
    INSERT INTO dimension_values (experiment_id, dimension, value)
    SELECT experiment_id, dimension, value FROM dimension_final
    ON CONFLICT DO NOTHING
), block AS (
    -- [variant] Stratified: the stratum's next block position, bumped here, in this transaction
    -- (the row lock serialises the stratum's new users; a rollback leaves no gap).
    INSERT INTO stratum_counters AS c (experiment_id, stratum, next)
    SELECT j.experiment_id,
           COALESCE((SELECT value FROM dimension_final WHERE dimension = %(stratum_dimension)s), '(none)'), 1
    FROM joined j WHERE cardinality(%(block_slots)s::uuid[]) > 0
    ON CONFLICT (experiment_id, stratum) DO UPDATE SET next = c.next + 1
    RETURNING c.experiment_id, c.stratum, c.next - 1 AS position
), inserted AS (
    -- [variant] The assignment itself, with the membership just joined: the proposal, or for a
    -- stratified experiment the slot of the stratum's block (abtest.contract.blocks).
    -- A bandit's assignment records the period whose weights chose the variant (the caller's cache's).
    INSERT INTO assignments (experiment_id, user_id, variant_id, context, dimensions, bandit_period)
    SELECT j.experiment_id, %(user_id)s,
           COALESCE((SELECT (%(block_slots)s::uuid[])[1 + abtest_block_slot(
                         e.salt, b.stratum, b.position / cardinality(%(block_slots)s::uuid[]),
                         (b.position %% cardinality(%(block_slots)s::uuid[]))::integer,
                         cardinality(%(block_slots)s::uuid[]))]
                     FROM block b JOIN experiments e ON e.id = b.experiment_id),
                    %(variant_id)s),
           %(context)s,
           (SELECT jsonb_object_agg(dimension, value) FROM dimension_final),
           %(bandit_period)s
    FROM joined j
    ON CONFLICT (experiment_id, user_id) DO NOTHING
    RETURNING variant_id
), chosen AS (
    -- [stored_assignment] What the second decision reads: the stored or the just stored variant.
    SELECT variant_id, false AS created FROM existing
    UNION ALL
    SELECT variant_id, true AS created FROM inserted
), exposed AS (
    -- The exposure of what is served: [running] exposing statuses only, [override] never a forced
    -- user's here, [holdout] fresh holdouts and never a held-out user.
    -- It records the config phase and whether the variant's config fails its schema (control's served).
    INSERT INTO exposures (experiment_id, variant_id, user_id, context, phase, config_fallback)
    SELECT t.id, c.variant_id, %(user_id)s, %(context)s, t.phase,
           NOT (SELECT v.config_valid FROM variants v WHERE v.id = c.variant_id)
    FROM chosen c, target t
    WHERE %(record_exposure)s AND t.status IN {statuses_sql(EXPOSING)}
      AND NOT EXISTS (SELECT 1 FROM forced) AND (SELECT fresh FROM holdout_check)
      -- A held-out user is never exposed, even with an assignment from before the holdout (a forced
      -- one still is: the override comes first, and its exposure is kept out of the analysis).
      AND NOT ('holdout' = ANY (%(holdout_member_groups)s::text[]))
    RETURNING id
), forced_exposed AS (
    -- [override] A forced user's exposure: recorded where the analysis never reads it.
    INSERT INTO override_exposures (experiment_id, variant_id, user_id, context)
    SELECT f.experiment_id, f.variant_id, %(user_id)s, %(context)s FROM forced f, target t
    WHERE %(record_exposure)s AND t.id = f.experiment_id AND t.status IN {statuses_sql(EXPOSING)}
      AND (SELECT fresh FROM holdout_check)
    RETURNING id
)
-- The facts the pipeline's second decision reads (an Enrollment): [experiment] [running] target,
-- [stored_assignment] variant, [namespace] membership, [override] forced variant, [holdout] staleness.
SELECT (SELECT id FROM target) AS experiment_id,
       (SELECT status FROM target) AS status,
       (SELECT variant_id FROM chosen) AS variant_id,
       COALESCE((SELECT created FROM chosen), false) AS created,
       (SELECT count(*) FROM exposed) + (SELECT count(*) FROM forced_exposed) > 0 AS exposed,
       COALESCE((SELECT experiment_id FROM joined), (SELECT experiment_id FROM member)) AS member_of,
       (SELECT embedding FROM user_profiles
        WHERE %(with_profile)s AND user_id = %(user_id)s
          AND (EXISTS (SELECT 1 FROM chosen) OR EXISTS (SELECT 1 FROM forced))) AS profile,
       (SELECT variant_id FROM forced) AS forced_variant_id,
       NOT (SELECT fresh FROM holdout_check) AS holdouts_stale,
       -- What the served config depends on, so a cache older than a config phase or a schema publish
       -- is noticed on the very next request: the experiment's phase, the served variant's schema stamp.
       (SELECT phase FROM target) AS phase,
       (SELECT v.schema_version FROM variants v
        WHERE v.id = COALESCE((SELECT variant_id FROM forced), (SELECT variant_id FROM chosen)))
           AS schema_version
"""

ENROLL = Routine(
    "abtest_enroll",
    _ENROLL,
    params=(
        ("surface", "text"),
        ("user_id", "text"),
        ("experiment_id", "uuid"),
        ("variant_id", "uuid"),
        ("follow_membership", "boolean"),
        ("context", "jsonb"),
        ("record_exposure", "boolean"),
        ("with_profile", "boolean"),
        ("holdout_ids", "uuid[]"),
        ("holdout_member_ids", "uuid[]"),
        ("holdout_member_groups", "text[]"),
        ("bandit_period", "integer"),
        ("dimensions", "jsonb"),
        ("block_slots", "uuid[]"),
        ("stratum_dimension", "text"),
    ),
    settings={"plan_cache_mode": "force_generic_plan"},
)


# ENROLL for one user on many surfaces in one statement: one row per request, in request order. The
# routine's arguments, positionally and with its exact types (see ENROLL.params): follow the membership,
# no context, no exposure, no profile.
_ENROLL_SURFACES = f"""
SELECT r.* FROM unnest(%(surfaces)s::text[], %(experiment_ids)s::uuid[], %(variant_ids)s::uuid[],
                       %(holdout_ids)s::text[], %(member_ids)s::text[], %(member_groups)s::text[],
                       %(bandit_periods)s::integer[], %(dimensions)s::jsonb[], %(block_slots)s::text[],
                       %(stratum_dimensions)s::text[])
     WITH ORDINALITY AS q(surface, experiment_id, variant_id, holdout_ids, member_ids, member_groups,
                          bandit_period, dimensions, block_slots, stratum_dimension, n)
CROSS JOIN LATERAL {ENROLL.name}(
    q.surface, %(user_id)s::text, q.experiment_id, q.variant_id, true, NULL::jsonb, false, false,
    string_to_array(q.holdout_ids, ',')::uuid[], string_to_array(q.member_ids, ',')::uuid[],
    string_to_array(q.member_groups, ',')::text[], q.bandit_period, q.dimensions,
    string_to_array(q.block_slots, ',')::uuid[], q.stratum_dimension) AS r
ORDER BY q.n
"""


def _enrollment(row: Mapping[str, Any]) -> Enrollment:
    return Enrollment(
        experiment_id=row["experiment_id"],
        status=Status(row["status"]) if row["status"] is not None else None,
        variant_id=row["variant_id"],
        member_of=row["member_of"],
        created=row["created"],
        exposed=row["exposed"],
        profile=list(row["profile"]) if row["profile"] is not None else None,
        forced_variant_id=row["forced_variant_id"],
        holdouts_stale=row["holdouts_stale"],
        phase=row.get("phase"),
        schema_version=row.get("schema_version"),
    )


@dataclass(frozen=True)
class StoredAssignment:
    experiment_name: str
    variant_id: UUID | None
    variant_name: str | None
    variant_config: dict[str, Any] | None
    variant_config_version: int | None = None
    variant_schema_version: int | None = None


class AssignmentRepository:
    """Assignments and exposures (the recommender's catalog is CatalogRepository's)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def serving_experiments(self) -> list[Experiment]:
        """Every experiment holding namespace buckets (running or paused), with its variants."""
        query = SELECT_EXPERIMENT + f" WHERE e.status IN {statuses_sql(HOLDING_BUCKETS)} ORDER BY e.id"
        return self._db.run(
            lambda conn: [Experiment.model_validate(row) for row in conn.execute(query.encode())],
            transaction=False,
        )

    def namespaces(self) -> list[NamespaceAllocation]:
        """Every namespace's salt and bucket owners."""
        return NamespaceRepository(self._db).allocations()

    def serving_holdouts(self) -> list[Holdout]:
        """Every running holdout (the ones that hold users out)."""
        return HoldoutRepository(self._db).running()

    def experiment(self, experiment_id: UUID) -> Experiment:
        """One experiment with its variants; NotFound if there is none."""
        return self._db.run(lambda conn: fetch_experiment(conn, experiment_id), transaction=False)

    def saved_groups(self, keys: Sequence[str]) -> dict[str, list[Any]]:
        """The values of these saved groups by key (for the serving cache; missing ones are absent)."""
        return self._db.run(lambda conn: group_values(conn, keys), transaction=False)

    def enroll(self, request: EnrollRequest) -> Enrollment:
        """Run the enrollment statement (see EnrollRequest): one statement, one round trip.

        Two requests racing for a new user: the loser's inserts are skipped by ON CONFLICT but its
        snapshot cannot see the winner's rows yet, so it finds nothing; the service then runs it again
        (a second round trip) and reads the winner's assignment.
        """
        params = {
            "surface": request.surface,
            "user_id": request.user_id,
            "experiment_id": request.experiment_id,
            "variant_id": request.variant_id,
            "follow_membership": request.follow_membership,
            "context": Jsonb(request.context) if request.context is not None else None,
            "record_exposure": request.record_exposure,
            "with_profile": request.with_profile,
            "holdout_ids": sorted(request.holdout_ids),
            "holdout_member_ids": [holdout_id for holdout_id, _ in request.holdout_members],
            "holdout_member_groups": [group for _, group in request.holdout_members],
            "bandit_period": request.bandit_period,
            "dimensions": Jsonb(request.dimensions) if request.dimensions is not None else None,
            "block_slots": list(request.block_slots),
            "stratum_dimension": request.stratum_dimension,
        }

        def work(conn: Connection) -> Enrollment:
            row = conn.execute(ENROLL.call, params).fetchone()
            assert row is not None  # the statement is a SELECT without FROM: always one row
            return _enrollment(row)

        # Not retried on a dropped connection: the exposure might have been written already.
        return self._db.run(work, transaction=False, retry=False)

    def enroll_surfaces(self, user_id: str, requests: Sequence[EnrollRequest]) -> list[Enrollment]:
        """The enrollment statement for one user on many surfaces, in ONE statement (one round trip):
        the ENROLL routine called per surface (`unnest ... CROSS JOIN LATERAL`), in request order.

        For a prefetch (OFREP bulk evaluation): every request follows the user's membership, stores what
        it proposes, records no exposure and reads no profile; each call decides exactly as `enroll`
        does, so a surface whose answer is stale or lost a race is re-run by the caller through `enroll`.
        """
        if not requests:
            return []
        assert all(r.user_id == user_id and r.follow_membership for r in requests)
        assert not any(r.record_exposure or r.with_profile or r.context for r in requests)
        # Arrays of arrays do not unnest row by row: each request's holdout lists travel as text.
        params = {
            "user_id": user_id,
            "surfaces": [r.surface for r in requests],
            "experiment_ids": [r.experiment_id for r in requests],
            "variant_ids": [r.variant_id for r in requests],
            "holdout_ids": [",".join(str(h) for h in sorted(r.holdout_ids)) for r in requests],
            "member_ids": [",".join(str(h) for h, _ in r.holdout_members) for r in requests],
            "member_groups": [",".join(g for _, g in r.holdout_members) for r in requests],
            "bandit_periods": [r.bandit_period for r in requests],
            "dimensions": [Jsonb(r.dimensions) if r.dimensions is not None else None for r in requests],
            "block_slots": [",".join(str(v) for v in r.block_slots) for r in requests],
            "stratum_dimensions": [r.stratum_dimension for r in requests],
        }

        def work(conn: Connection) -> list[Enrollment]:
            return [_enrollment(row) for row in conn.execute(_ENROLL_SURFACES, params).fetchall()]

        # A prefetch records no exposure: a dropped connection may be retried (every write is idempotent).
        return self._db.run(work, transaction=False)

    def stored_assignment(self, experiment_id: UUID, user_id: str) -> StoredAssignment:
        """The user's stored variant, without enrolling anyone; NotFound for an unknown experiment."""

        def work(conn: Connection) -> StoredAssignment:
            row = conn.execute(
                "SELECT e.name AS experiment_name, v.id AS variant_id, v.name AS variant_name,"
                " v.config AS variant_config, v.config_version AS variant_config_version,"
                " v.schema_version AS variant_schema_version"
                " FROM experiments e"
                " LEFT JOIN assignments a ON a.experiment_id = e.id AND a.user_id = %(user_id)s"
                " LEFT JOIN variants v ON v.id = a.variant_id"
                " WHERE e.id = %(experiment_id)s",
                {"experiment_id": experiment_id, "user_id": user_id},
            ).fetchone()
            if row is None:
                raise experiment_not_found(experiment_id)
            return StoredAssignment(**row)

        return self._db.run(work, transaction=False)
