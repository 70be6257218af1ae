"""Surfaces' config schemas (immutable versions), the precomputed validity of variant configs, and the
config phases of started experiments.

Every write that stores a variant config, and every schema publish, takes the surface's advisory lock
first (`lock_surface_schema`), so a config is always checked against the schema that is current when it
commits, and each variant's `schema_version` / `config_valid` (the serve-time check, computed here once
per config version and schema version) always describe the surface's newest schema.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from abtest.domain.audit import SYSTEM_ACTOR, Actor, AuditEntry
from abtest.domain.config_schemas import ConfigSchema, check_schema, config_problems, stored_schema
from abtest.domain.config_versions import (
    SERVED_MEMBERS,
    ConfigVersion,
    ConfigVersionList,
    ConfigViolation,
    Phase,
    PhaseList,
    PhaseVariant,
    PublishMode,
    SchemaVersion,
    SchemaVersionSummary,
)
from abtest.domain.experiments import Experiment, Status, check_definition
from abtest.domain.paging import Listing
from abtest.errors import Conflict, ErrorCode, InvalidInput, NotFound
from abtest.limits import MAX_ERRORS, MAX_PHASES
from abtest.storage.audit import record
from abtest.storage.database import Connection, Database
from abtest.storage.experiments import SELECT_EXPERIMENT, fetch_experiment

# Statuses whose configs a new schema must not silently break: they are (or may be) served.
LIVE = ("draft", "running", "paused")
STARTED = frozenset({Status.RUNNING, Status.PAUSED})


def lock_surface_schema(conn: Connection, surface: str) -> None:
    """Serialise the writes of a surface's configs and schemas (held to the end of the transaction)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 15))", (f"config_schema:{surface}",))


def current_schema(conn: Connection, surface: str) -> tuple[int, ConfigSchema] | None:
    """The surface's newest schema version and schema, or None if it has none."""
    row = conn.execute(
        "SELECT version, schema FROM config_schemas WHERE surface = %s ORDER BY version DESC LIMIT 1",
        (surface,),
    ).fetchone()
    return None if row is None else (row["version"], stored_schema(row["schema"]))


def check_and_stamp(conn: Connection, experiment_id: UUID, surface: str, variants: list[Any]) -> None:
    """The write-time check of an experiment's configs (422 naming `variants[i].config...` and the
    keyword), then each variant stamped with the schema version it passed. Call after the variants are
    stored, in the write's transaction."""
    lock_surface_schema(conn, surface)
    current = current_schema(conn, surface)
    check_definition(variants, current[1] if current else None)
    conn.execute(
        "UPDATE variants SET schema_version = %s, config_valid = true WHERE experiment_id = %s",
        (current[0] if current else None, experiment_id),
    )


def _version(row: dict[str, Any]) -> SchemaVersion:
    return SchemaVersion.model_validate({**row, "schema": row["schema"]})


def _violations(experiments: list[Experiment], schema: ConfigSchema) -> list[ConfigViolation]:
    found: list[ConfigViolation] = []
    for experiment in experiments:
        problems = config_problems(schema, [v.config for v in experiment.variants])
        for problem in problems:
            index = int(problem.field.split("]")[0].split("[")[1])
            found.append(
                ConfigViolation(
                    experiment_id=str(experiment.id),
                    experiment_name=experiment.name,
                    status=experiment.status.value,
                    variant=experiment.variants[index].name,
                    field=problem.field,
                    keyword=problem.keyword,
                    message=problem.message[:300],
                )
            )
    return found


class ConfigSchemaRepository:
    """Config schema versions of surfaces, and config phases of experiments."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def publish(
        self, surface: str, document: dict[str, Any], mode: PublishMode, *, actor: Actor = SYSTEM_ACTOR
    ) -> SchemaVersion:
        """Store `document` as the surface's next schema version (422 if it is not an acceptable schema).

        Every draft, running or paused experiment of the surface is checked against it: any violation is
        a 409 listing them (nothing stored) unless `mode` is warn, which stores it with the violations;
        either way each live variant is stamped with the new version and whether it passes it.
        """
        document = {k: v for k, v in document.items() if k not in SERVED_MEMBERS}
        schema = check_schema(document)

        def work(conn: Connection) -> SchemaVersion:
            lock_surface_schema(conn, surface)
            rows = conn.execute(
                (
                    SELECT_EXPERIMENT
                    + " WHERE e.surface = %s AND e.status = ANY(%s) ORDER BY e.created_at, e.id"
                ).encode(),
                (surface, list(LIVE)),
            ).fetchall()
            experiments = [Experiment.model_validate(row) for row in rows]
            violations = _violations(experiments, schema)
            if violations and mode == "strict":
                names = sorted({v.experiment_name for v in violations})
                error = Conflict(
                    f"the schema is violated by {len(names)} live experiment(s) of surface {surface!r}: "
                    f"{', '.join(names[:10])}; fix their configs (a new phase) or publish with mode warn",
                    code=ErrorCode.CONFIG_SCHEMA_VIOLATED,
                    field="schema",
                )
                error.details = {
                    "violations": [v.model_dump() for v in violations[:MAX_ERRORS]],
                    "violation_count": len(violations),
                }
                raise error
            row = conn.execute(
                "INSERT INTO config_schemas (surface, version, schema, mode, violations, created_by)"
                " SELECT %(surface)s, COALESCE(max(version), 0) + 1, %(schema)s, %(mode)s, %(violations)s,"
                "        %(actor)s"
                " FROM config_schemas WHERE surface = %(surface)s"
                " RETURNING surface, version, schema, mode, violations, created_by, created_at",
                {
                    "surface": surface,
                    "schema": Jsonb(schema.document),
                    "mode": mode,
                    "violations": Jsonb([v.model_dump() for v in violations[:MAX_ERRORS]]),
                    "actor": f"{actor.type}:{actor.id}",
                },
            ).fetchone()
            assert row is not None
            published = _version(row)
            invalid = [(UUID(v.experiment_id), v.variant) for v in violations]
            conn.execute(
                "UPDATE variants v SET schema_version = %(version)s,"
                " config_valid = NOT ((v.experiment_id, v.name) IN"
                "   (SELECT * FROM unnest(%(ids)s::uuid[], %(names)s::text[])))"
                " FROM experiments e WHERE e.id = v.experiment_id AND e.surface = %(surface)s"
                "   AND e.status = ANY(%(live)s)",
                {
                    "version": published.version,
                    "ids": [i for i, _ in invalid],
                    "names": [n for _, n in invalid],
                    "surface": surface,
                    "live": list(LIVE),
                },
            )
            record(
                conn,
                AuditEntry(
                    actor=actor,
                    action="config_schema.publish",
                    entity_type="config_schema",
                    entity_id=surface,
                    before=None,
                    after={
                        "surface": surface,
                        "version": published.version,
                        "mode": mode,
                        "violation_count": len(violations),
                    },
                ),
            )
            return published

        return self._db.run(work)

    def get(self, surface: str, version: int | None = None) -> SchemaVersion:
        """The surface's newest schema version, or the one asked for; 404 config_schema_not_found."""

        def work(conn: Connection) -> SchemaVersion:
            row = conn.execute(
                "SELECT surface, version, schema, mode, violations, created_by, created_at"
                " FROM config_schemas WHERE surface = %(surface)s"
                " AND (%(version)s::int IS NULL OR version = %(version)s::int)"
                " ORDER BY version DESC LIMIT 1",
                {"surface": surface, "version": version},
            ).fetchone()
            if row is None:
                which = "a config schema" if version is None else f"config schema version {version}"
                raise NotFound(
                    f"surface {surface!r} has no {which}",
                    code=ErrorCode.CONFIG_SCHEMA_NOT_FOUND,
                    field="version" if version is not None else "surface",
                )
            return _version(row)

        return self._db.run(work, transaction=False)

    def versions(
        self, surface: str, *, limit: int = 50, cursor: str | None = None
    ) -> Listing[SchemaVersionSummary]:
        """The surface's schema versions, newest first, a page at a time (cursor: the last version seen)."""
        before: int | None = None
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 9:
                raise InvalidInput("cursor is not one this API returned", field="cursor")
            before = int(cursor)

        def work(conn: Connection) -> list[SchemaVersionSummary]:
            rows = conn.execute(
                "SELECT surface, version, mode, jsonb_array_length(violations) AS violation_count,"
                " created_by, created_at FROM config_schemas WHERE surface = %(surface)s"
                " AND (%(before)s::int IS NULL OR version < %(before)s::int)"
                " ORDER BY version DESC LIMIT %(limit)s",
                {"surface": surface, "before": before, "limit": limit + 1},
            ).fetchall()
            return [SchemaVersionSummary.model_validate(row) for row in rows]

        rows = self._db.run(work, transaction=False)
        if not rows and cursor is None:
            raise NotFound(
                f"surface {surface!r} has no config schema",
                code=ErrorCode.CONFIG_SCHEMA_NOT_FOUND,
                field="surface",
            )
        page, more = rows[:limit], len(rows) > limit
        return Listing(page, str(page[-1].version) if more else None)

    # -- phases ----------------------------------------------------------------------------------

    def open_phase(
        self,
        experiment_id: UUID,
        changes: dict[str, dict[str, Any] | int],
        *,
        actor: Actor = SYSTEM_ACTOR,
        reason: str | None = None,
    ) -> Experiment:
        """Change a started experiment's configs (variant name -> new config, or an earlier config
        version): a new phase. 422 when nothing changes, for an unknown variant or version, or a config
        the surface's schema refuses."""

        def work(conn: Connection) -> Experiment:
            current = fetch_experiment(conn, experiment_id, lock=True)
            changed = change_configs(conn, current, changes, actor=actor, reason=reason)
            if changed is None:
                raise InvalidInput(
                    "variants: every config given is the variant's current one; nothing changes",
                    field="variants",
                )
            return changed

        return self._db.run(work)

    def phases(self, experiment_id: UUID) -> PhaseList:
        """The experiment's phases, oldest first, with each variant's config version in each."""

        def work(conn: Connection) -> PhaseList:
            experiment = fetch_experiment(conn, experiment_id)
            rows = conn.execute(
                "SELECT phase, started_at, actor, reason, config_versions FROM experiment_phases"
                " WHERE experiment_id = %s ORDER BY phase",
                (experiment_id,),
            ).fetchall()
            return phase_list(experiment, rows)

        return self._db.run(work, transaction=False)

    def config_versions(self, experiment_id: UUID, variant: str) -> ConfigVersionList:
        """Every config version of one variant, oldest first (at most MAX_PHASES + 1)."""

        def work(conn: Connection) -> ConfigVersionList:
            experiment = fetch_experiment(conn, experiment_id)
            found = next((v for v in experiment.variants if v.name == variant), None)
            if found is None:
                raise NotFound(
                    f"the experiment has no variant {variant!r}",
                    code=ErrorCode.UNKNOWN_VARIANT,
                    field="variant",
                )
            rows = conn.execute(
                "SELECT version, config, created_at FROM variant_config_versions WHERE variant_id = %s"
                " ORDER BY version",
                (found.id,),
            ).fetchall()
            return ConfigVersionList(
                experiment_id=str(experiment_id),
                variant=variant,
                current_version=found.config_version,
                versions=[ConfigVersion.model_validate(row) for row in rows],
            )

        return self._db.run(work, transaction=False)


def phase_list(experiment: Experiment, rows: list[dict[str, Any]]) -> PhaseList:
    """Phase 1 (from the experiment's start, with config version 1 of each variant) and the stored ones."""
    names = [v.name for v in experiment.variants]
    phases = [
        Phase(
            phase=1,
            started_at=experiment.started_at,
            variants=[PhaseVariant(name=name, config_version=1) for name in names],
        )
    ]
    for row in rows:
        phases[-1].ended_at = row["started_at"]
        versions = row["config_versions"]
        phases.append(
            Phase(
                phase=row["phase"],
                started_at=row["started_at"],
                actor=Actor.model_validate(row["actor"]),
                reason=row["reason"],
                variants=[PhaseVariant(name=name, config_version=versions.get(name, 1)) for name in names],
            )
        )
    return PhaseList(experiment_id=str(experiment.id), current_phase=experiment.phase, phases=phases)


def change_configs(
    conn: Connection,
    current: Experiment,
    changes: dict[str, dict[str, Any] | int],
    *,
    actor: Actor,
    reason: str | None = None,
) -> Experiment | None:
    """Give the named variants of a started (running or paused) experiment a new config, or an earlier
    config version, as one new phase: checked against the surface's schema, versions stored, the
    experiment's phase advanced, the phase recorded with its actor and reason, and audited
    (experiment.phase). None when no config actually changes (nothing written). Weights, assignments and
    memberships are untouched. Call with the experiment's row locked."""
    if current.status not in STARTED:
        raise Conflict(
            f"only a running or paused experiment's configs change by phase (this one is "
            f"{current.status.value}{'; edit the draft instead' if current.status == Status.DRAFT else ''})",
            code=ErrorCode.EXPERIMENT_COMPLETED if current.status == Status.COMPLETED else ErrorCode.CONFLICT,
            field="status",
        )
    by_name = {v.name: v for v in current.variants}
    configs = {v.name: v.config for v in current.variants}
    versions = {v.name: v.config_version for v in current.variants}
    new_versions: dict[str, int] = {}
    for name, change in changes.items():
        variant = by_name.get(name)
        if variant is None:
            raise InvalidInput(
                f"variants: the experiment has no variant {name!r}; its variants are {', '.join(by_name)}",
                code=ErrorCode.UNKNOWN_VARIANT,
                field="variants",
            )
        if isinstance(change, int):
            row = conn.execute(
                "SELECT config FROM variant_config_versions WHERE variant_id = %s AND version = %s",
                (variant.id, change),
            ).fetchone()
            if row is None:
                raise InvalidInput(
                    f"variants: variant {name!r} has no config version {change}",
                    code=ErrorCode.CONFIG_VERSION_NOT_FOUND,
                    field="config_version",
                )
            if change != variant.config_version:
                configs[name], versions[name] = row["config"], change
                new_versions[name] = change
        elif json.dumps(change, sort_keys=True) != json.dumps(variant.config, sort_keys=True):
            configs[name] = change
            new_versions[name] = -1  # a new version, numbered below
    if not new_versions:
        return None
    if current.phase >= MAX_PHASES:
        raise Conflict(
            f"the experiment already has {MAX_PHASES} phases, the most it may have",
            code=ErrorCode.TOO_MANY_PHASES,
            field="variants",
        )
    lock_surface_schema(conn, current.surface)
    schema = current_schema(conn, current.surface)
    check_definition([_Configured(configs[v.name]) for v in current.variants], schema[1] if schema else None)
    for name, version in new_versions.items():
        variant = by_name[name]
        if version == -1:
            row = conn.execute(
                "INSERT INTO variant_config_versions (variant_id, version, config)"
                " SELECT %(id)s, max(version) + 1, %(config)s FROM variant_config_versions"
                " WHERE variant_id = %(id)s RETURNING version",
                {"id": variant.id, "config": Jsonb(configs[name])},
            ).fetchone()
            assert row is not None
            versions[name] = row["version"]
        conn.execute(
            "UPDATE variants SET config = %s, config_version = %s, schema_version = %s, config_valid = true"
            " WHERE id = %s",
            (Jsonb(configs[name]), versions[name], schema[0] if schema else None, variant.id),
        )
    phase = current.phase + 1
    conn.execute("UPDATE experiments SET phase = %s, updated_at = now() WHERE id = %s", (phase, current.id))
    phase_reason = reason or actor.reason
    conn.execute(
        "INSERT INTO experiment_phases (experiment_id, phase, actor, reason, config_versions)"
        " VALUES (%s, %s, %s, %s, %s)",
        (current.id, phase, Jsonb(actor.model_dump(mode="json")), phase_reason, Jsonb(versions)),
    )
    changed = fetch_experiment(conn, current.id)
    record(
        conn,
        AuditEntry(
            actor=actor,
            action="experiment.phase",
            entity_type="experiment",
            entity_id=current.id,
            before={
                "phase": current.phase,
                "configs": {
                    n: {"version": v.config_version, "config": v.config}
                    for n, v in by_name.items()
                    if n in new_versions
                },
            },
            after={
                "phase": phase,
                "reason": phase_reason,
                "configs": {n: {"version": versions[n], "config": configs[n]} for n in new_versions},
            },
        ),
    )
    return changed


class _Configured:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
