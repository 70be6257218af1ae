"""Experiments and their variants."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from abtest.domain.audit import SYSTEM_ACTOR, Actor, AuditEntry
from abtest.domain.audit_entries import (
    experiment_created,
    experiment_deleted,
    experiment_updated,
    namespace_share_changed,
    status_changed,
)
from abtest.domain.bandits import Allocation, check_metric_direction
from abtest.domain.experiments import Experiment, ExperimentCreate, ExperimentPatch, Status, VariantIn
from abtest.domain.lifecycle import ENROLLING, HOLDING_BUCKETS, check_create, check_patch, check_transition
from abtest.domain.overrides import Override
from abtest.domain.paging import Listing, decode_cursor, encode_cursor
from abtest.domain.targeting_checks import referenced_groups, require_valid_condition
from abtest.errors import Conflict, ErrorCode, InvalidInput, experiment_not_found
from abtest.limits import MAX_PAGE_BYTES
from abtest.storage.audit import record
from abtest.storage.buckets import release_buckets, take_buckets
from abtest.storage.database import Connection, Database
from abtest.storage.defined_rollups import kept_definitions, mark_built, restart_rollups
from abtest.storage.metric_definitions import check_roles, definition_direction, pin_definitions, roles_json
from abtest.storage.saved_groups import lock_group_keys

T = TypeVar("T")

SELECT_EXPERIMENT = """
SELECT e.id, e.name, e.description, e.status, e.traffic_allocation, e.salt, e.surface, e.namespace_share,
       e.targeting, e.dimensions, e.assignment, e.created_at, e.updated_at, e.started_at, e.completed_at,
       e.phase, e.allocation,
       CASE WHEN e.bandit_period IS NOT NULL THEN jsonb_build_object(
           'period', e.bandit_period, 'weights', e.bandit_weights,
           'period_started_at', COALESCE(e.bandit_period_started_at, e.started_at)) END AS bandit,
       e.metric_roles AS metrics, e.decision_settings AS decision, e.pinned_metrics,
       COALESCE((
           SELECT jsonb_agg(jsonb_build_object(
                      'id', v.id, 'name', v.name, 'description', v.description,
                      'weight', v.weight, 'config', v.config, 'position', v.position,
                      'config_version', v.config_version, 'schema_version', v.schema_version,
                      'config_valid', v.config_valid)
                  ORDER BY v.position)
           FROM variants v WHERE v.experiment_id = e.id
       ), '[]'::jsonb) AS variants
FROM experiments e
"""

# Constraint name -> (error code, field, message) for violations the models cannot see coming.
_CONFLICTS = {
    "experiments_name_key": (ErrorCode.DUPLICATE_NAME, "name", "an experiment with this name already exists"),
    "variants_name_key": (ErrorCode.DUPLICATE_VARIANT_NAME, "variants", "variant names must be unique"),
}


def _translate(exc: psycopg.errors.IntegrityError) -> Exception:
    constraint = exc.diag.constraint_name or ""
    if constraint in _CONFLICTS:
        code, field, message = _CONFLICTS[constraint]
        return Conflict(message, code=code, field=field)
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return Conflict(
            "the experiment has recorded events and cannot be removed",
            code=ErrorCode.EXPERIMENT_HAS_HISTORY,
        )
    return InvalidInput(f"rejected by the database constraint {constraint or 'unknown'}")


class ExperimentRepository:
    """Experiments and their variants."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self, new: ExperimentCreate, *, experiment_id: UUID | None = None, actor: Actor = SYSTEM_ACTOR
    ) -> Experiment:
        """Store a draft experiment with its variants in one transaction (see lifecycle.check_create),
        with its audit entry (experiment.create by `actor`).

        The id is new unless given (the local demo data uses a fixed one that events/ names).
        """
        check_create(new)
        experiment_id = experiment_id or uuid4()

        salt = new.salt or str(experiment_id)

        def work(conn: Connection) -> Experiment:
            # Two experiments sharing a salt split users identically (correlated splits): refused.
            # The lock serialises creations with the same salt so the check cannot race.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 10))", (salt,))
            taken = conn.execute("SELECT 1 FROM experiments WHERE salt = %s LIMIT 1", (salt,)).fetchone()
            if taken is not None:
                raise Conflict(
                    "another experiment already uses this salt; experiments sharing a salt assign "
                    "users identically, so each needs its own (or none: it defaults to the id)",
                    code=ErrorCode.DUPLICATE_SALT,
                    field="salt",
                )
            _check_saved_groups(conn, new.targeting)
            if new.metrics is not None:
                check_roles(conn, new.metrics)  # 422 naming a definition that does not exist
            _check_bandit_direction(conn, new.allocation)
            conn.execute(
                "INSERT INTO experiments"
                " (id, name, description, traffic_allocation, salt, surface, namespace_share, targeting,"
                " allocation, bandit_period, metric_roles, decision_settings, dimensions, assignment)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    experiment_id,
                    new.name,
                    new.description,
                    new.traffic_allocation,
                    salt,
                    new.surface,
                    new.namespace_share,
                    Jsonb(new.targeting),
                    Jsonb(new.allocation.model_dump(exclude_none=True)),
                    1 if new.allocation.is_bandit else None,  # a bandit opens its period 1
                    roles_json(new.metrics),
                    roles_json(new.decision),
                    new.dimensions,
                    Jsonb(new.assignment.model_dump()),
                ),
            )
            _insert_variants(conn, experiment_id, new.variants)
            _check_configs(conn, experiment_id, new.surface, new.variants)
            created = fetch_experiment(conn, experiment_id)
            record(conn, experiment_created(actor, created))
            return created

        return self._write(work)

    def get(self, experiment_id: UUID) -> Experiment:
        """One experiment with its variants; NotFound if there is none."""
        return self._db.run(lambda conn: fetch_experiment(conn, experiment_id), transaction=False)

    def list(
        self,
        *,
        status: Status | None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Listing[Experiment]:
        """Experiments oldest first, filtered by status (None = every status) and exact name."""
        conditions: list[sql.Composable] = []
        params: list[Any] = []
        if status is not None:
            conditions.append(sql.SQL("e.status = %s"))
            params.append(status.value)
        if name is not None:
            conditions.append(sql.SQL("e.name = %s"))
            params.append(name)
        if cursor is not None:
            conditions.append(sql.SQL("(e.created_at, e.id) > (%s, %s)"))
            params.extend(decode_cursor(cursor, datetime, UUID))
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        query = sql.SQL("{select}{where} ORDER BY e.created_at, e.id LIMIT %s").format(
            select=sql.SQL(SELECT_EXPERIMENT),
            where=where,
        )
        params.append(limit + 1)

        def work(conn: Connection) -> list[Experiment]:
            return [Experiment.model_validate(row) for row in conn.execute(query, params)]

        rows = self._db.run(work, transaction=False)
        page, more = rows[:limit], len(rows) > limit
        # A page also stops at MAX_PAGE_BYTES of experiments (at least one), so no listing can exceed
        # Lambda's 6 MB response limit however large the configs are.
        size = 0
        for count, experiment in enumerate(page):
            size += len(experiment.model_dump_json())
            if count > 0 and size > MAX_PAGE_BYTES:
                page, more = page[:count], True
                break
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
        return Listing(page, next_cursor)

    def newest(self, limit: int) -> Sequence[Experiment]:
        """The `limit` most recently created experiments, newest first (the report index)."""
        query = SELECT_EXPERIMENT + " ORDER BY e.created_at DESC, e.id DESC LIMIT %s"

        def work(conn: Connection) -> list[Experiment]:
            return [Experiment.model_validate(row) for row in conn.execute(query.encode(), (limit,))]

        return self._db.run(work, transaction=False)

    def change_status(
        self, experiment_id: UUID, target: Status, *, actor: Actor = SYSTEM_ACTOR
    ) -> Experiment:
        """Apply a lifecycle transition, recording when the experiment started and completed, with its
        audit entries (experiment.start|pause|resume|complete, namespace.allocate|release) by `actor`."""

        def work(conn: Connection) -> Experiment:
            experiment = fetch_experiment(conn, experiment_id, lock=True)
            current = experiment.status
            check_transition(current, target)
            held = (0, 0)
            if current == Status.DRAFT and target in HOLDING_BUCKETS:
                held = take_buckets(conn, experiment, experiment.namespace_share)  # 409 if it does not fit
            if target not in HOLDING_BUCKETS and current in HOLDING_BUCKETS:
                released = release_buckets(conn, experiment_id)
                held = (released, 0)
            if current == Status.DRAFT and target == Status.RUNNING and experiment.metrics is not None:
                pin_definitions(conn, experiment_id, experiment.metrics.names())  # issue 22
                mark_built(conn, experiment_id)  # no event yet: the rollup holds them from the first
            if current != target:
                conn.execute(
                    "UPDATE experiments SET status = %(target)s, updated_at = now(),"
                    " started_at = CASE WHEN %(target)s = 'running'"
                    "   THEN COALESCE(started_at, now()) ELSE started_at END,"
                    " completed_at = CASE WHEN %(target)s = 'completed'"
                    "   THEN now() ELSE completed_at END"
                    " WHERE id = %(id)s",
                    {"target": target.value, "id": experiment_id},
                )
            changed = fetch_experiment(conn, experiment_id)
            _record_all(
                conn,
                status_changed(actor, experiment, changed),
                namespace_share_changed(actor, changed, *held),
            )
            return changed

        return self._write(work)

    def update(
        self, experiment_id: UUID, patch: ExperimentPatch, *, actor: Actor = SYSTEM_ACTOR
    ) -> Experiment:
        """Edit an experiment within what its status allows (see lifecycle.check_patch), with its audit
        entries (experiment.update with the edited fields, namespace.allocate for a grown share)."""

        def work(conn: Connection) -> Experiment:
            current = fetch_experiment(conn, experiment_id, lock=True)
            changes = check_patch(current, patch.changes())
            if "variants" in changes or "surface" in changes:
                # Before any variant row is touched: a schema publish holds the lock, then updates them.
                _lock_schemas(conn, {current.surface, changes.get("surface", current.surface)})
            edited = set(changes)
            held = (0, 0)
            share = changes.get("namespace_share")
            if share is not None and current.status in HOLDING_BUCKETS:
                held = take_buckets(conn, current, share)  # grows from free buckets only; 409 if they lack
            if "targeting" in changes:
                _check_saved_groups(conn, changes["targeting"])
                changes["targeting"] = Jsonb(changes["targeting"])
            if "allocation" in changes:
                allocation = changes["allocation"]
                _check_bandit_direction(conn, allocation)
                changes["allocation"] = Jsonb(allocation.model_dump(exclude_none=True))
                changes["bandit_period"] = 1 if allocation.is_bandit else None
            if "metrics" in changes:
                check_roles(conn, changes["metrics"])  # 422 naming a definition that does not exist
                if current.status != Status.DRAFT:  # secondary metrics added while running: pin them
                    added = set(changes["metrics"].names()) - current.pinned_metrics.keys()
                    pin_definitions(conn, experiment_id, added)
                    if added & kept_definitions(conn, experiment_id, built_only=False).keys():
                        # The rollup keeps its statistics: rebuilt from the raw events by the next run.
                        restart_rollups(conn, experiment_id, "metric definitions pinned while running")
                changes["metric_roles"] = roles_json(changes.pop("metrics"))
            if "decision" in changes:
                changes["decision_settings"] = roles_json(changes.pop("decision"))
            if "assignment" in changes:
                changes["assignment"] = Jsonb(changes["assignment"].model_dump())
            variants = changes.pop("variants", None)
            removed: list[Override] = []
            if variants is not None and current.status != Status.DRAFT:
                # Only the configs differ (lifecycle.check_patch): a new phase, weights untouched.
                _change_configs(conn, current, {v.name: v.config for v in variants}, actor)
            elif variants is not None:
                # Deleting the variants deletes the overrides naming them (ON DELETE CASCADE): the
                # update's entry lists them, so the history shows where they went.
                removed = overrides_of(conn, experiment_id)
                conn.execute("DELETE FROM variants WHERE experiment_id = %s", (experiment_id,))
                _insert_variants(conn, experiment_id, variants)
            if current.status == Status.DRAFT and (variants is not None or "surface" in changes):
                _check_configs(
                    conn,
                    experiment_id,
                    changes.get("surface", current.surface),
                    variants if variants is not None else current.variants,
                )
            assignments = [
                sql.SQL("{} = {}").format(sql.Identifier(field), sql.Placeholder(field))
                for field in sorted(changes)
            ]
            conn.execute(
                sql.SQL("UPDATE experiments SET {} WHERE id = %(id)s").format(
                    sql.SQL(", ").join([*assignments, sql.SQL("updated_at = now()")])
                ),
                {**changes, "id": experiment_id},
            )
            updated = fetch_experiment(conn, experiment_id)
            _record_all(
                conn,
                experiment_updated(actor, current, updated, edited, removed_overrides=removed),
                namespace_share_changed(actor, updated, *held),
            )
            return updated

        return self._write(work)

    def delete(self, experiment_id: UUID, *, actor: Actor = SYSTEM_ACTOR) -> None:
        """Delete a draft and its variants (its audit entries stay: experiment.delete by `actor` among
        them); anything that has run keeps its history."""

        def work(conn: Connection) -> None:
            draft = fetch_experiment(conn, experiment_id, lock=True)
            current = draft.status
            if current != Status.DRAFT:
                advice = "" if current == Status.COMPLETED else "; complete it instead"
                raise Conflict(
                    f"only draft experiments can be deleted (this one is {current.value}): "
                    f"history is kept{advice}",
                    code=ErrorCode.EXPERIMENT_NOT_DRAFT,
                    field="status",
                )
            removed = overrides_of(conn, experiment_id)  # the cascade deletes them with the draft
            conn.execute("DELETE FROM experiments WHERE id = %s", (experiment_id,))
            record(conn, experiment_deleted(actor, draft, removed_overrides=removed))

        self._write(work)

    def _write(self, work: Callable[[Connection], T]) -> T:
        try:
            return self._db.run(work)
        except psycopg.errors.IntegrityError as exc:
            raise _translate(exc) from exc


def _record_all(conn: Connection, *entries: AuditEntry | None) -> None:
    """Append the entries a write produced (None: nothing changed there), in order."""
    for entry in entries:
        if entry is not None:
            record(conn, entry)


def statuses_sql(statuses: frozenset[Status]) -> str:
    """A SQL list of statuses, e.g. "('paused', 'running')", for the lifecycle's sets (never user input)."""
    return "(" + ", ".join(f"'{status.value}'" for status in sorted(statuses)) + ")"


def fetch_running(conn: Connection) -> list[Experiment]:
    """Every enrolling experiment, in the order surfaces choose them: started first, then created."""
    query = SELECT_EXPERIMENT + f" WHERE e.status IN {statuses_sql(ENROLLING)}"
    query += " ORDER BY e.started_at, e.created_at, e.id"
    return [Experiment.model_validate(row) for row in conn.execute(query.encode())]


def fetch_experiment(conn: Connection, experiment_id: UUID, *, lock: bool = False) -> Experiment:
    query = SELECT_EXPERIMENT + " WHERE e.id = %s" + (" FOR UPDATE OF e" if lock else "")
    row = conn.execute(query.encode(), (experiment_id,)).fetchone()
    if row is None:
        raise experiment_not_found(experiment_id)
    return Experiment.model_validate(row)


def _check_bandit_direction(conn: Connection, allocation: Allocation) -> None:
    """A bandit's direction must agree with its metric's definition, if one covers it: 422 naming
    `allocation.direction` (checked when the allocation is written; a later edit of the definition
    does not change a stored bandit)."""
    if allocation.is_bandit and allocation.metric is not None:
        check_metric_direction(allocation, definition_direction(conn, allocation.metric))


def _check_saved_groups(conn: Connection, targeting: dict[str, Any]) -> None:
    """422 naming the path of a `$inGroup` whose saved group does not exist; the groups it names stay
    share-locked until the transaction ends, so none can be deleted before this write commits."""
    keys = referenced_groups(targeting)
    if keys:
        require_valid_condition(targeting, lock_group_keys(conn, keys))


def overrides_of(conn: Connection, experiment_id: UUID) -> list[Override]:
    """The experiment's overrides, oldest first, with their variants' names (the overrides listing,
    and the audit entry of a write that deletes them)."""
    rows = conn.execute(
        "SELECT o.experiment_id, o.user_id, v.name AS variant, o.variant_id, o.created_at, o.updated_at"
        " FROM experiment_overrides o JOIN variants v ON v.id = o.variant_id"
        " WHERE o.experiment_id = %s ORDER BY o.created_at, o.user_id",
        (experiment_id,),
    ).fetchall()
    return [Override.model_validate(row) for row in rows]


def _lock_schemas(conn: Connection, surfaces: set[str]) -> None:
    from abtest.storage.config_schemas import lock_surface_schema

    for surface in sorted(surfaces):
        lock_surface_schema(conn, surface)


def _check_configs(conn: Connection, experiment_id: UUID, surface: str, variants: Sequence[Any]) -> None:
    from abtest.storage.config_schemas import check_and_stamp  # it reads experiments with this module

    check_and_stamp(conn, experiment_id, surface, list(variants))


def _change_configs(conn: Connection, current: Experiment, configs: dict[str, Any], actor: Actor) -> None:
    from abtest.storage.config_schemas import change_configs

    change_configs(conn, current, configs, actor=actor)


def _insert_variants(conn: Connection, experiment_id: UUID, variants: Sequence[VariantIn]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO variants (id, experiment_id, position, name, description, weight, config)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (uuid4(), experiment_id, position, v.name, v.description, v.weight, Jsonb(v.config))
                for position, v in enumerate(variants)
            ],
        )
