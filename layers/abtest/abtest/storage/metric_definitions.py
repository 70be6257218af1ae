"""Metric definitions (versioned), the checks and pins of experiments' metric roles, and the per-variant
statistics of a defined metric (migration 0013).

Every write is one transaction with its audit entry (`metric_definition.create|update|delete`, entity
`metric_definition` and the name). A PUT appends a version and moves the name to it; versions are never
rewritten, so an experiment that pinned one (when it started) keeps it. A definition that an experiment
not completed names in its roles cannot be deleted (409 metric_definition_in_use).

The statistics of a defined metric come from each user's exact state, in three ways
(docs/metrics-and-decisions.md, "Where the numbers come from"): a plain proportion or mean from the
per-variant sums the caller already has; a definition the rollup keeps (an absolute cap, a window, a
ratio: abtest.storage.defined_rollups) from the kept sums the caller's read filled; the others (a
percentile cap pooled over variants, a quantile) when results are read, in the caller's snapshot, from
the rollup's stored per-user rows (rollup_users, rollup_user_metrics) for users not touched since the
last rollup and the recomputed state of those that were (abtest.storage.rollups.tail_users): one pass
over the experiment's users, or with a window over its exposures and the metric's conversions.
Quantile metrics read the per-user totals themselves (MAX_QUANTILE_USERS at most, about 8 bytes a
user). Statistics that lack the kept sums (a bandit's period-weighted ones) fall back to the read-time way.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from abtest.analysis.defined_rollup import kept_data
from abtest.domain.audit import SYSTEM_ACTOR, Actor
from abtest.domain.metric_definitions import (
    TOO_MANY_USERS_ERROR,
    DefinedMetricData,
    Direction,
    MetricDefinition,
    MetricDefinitionBody,
    MetricDefinitionIn,
    MetricDefinitionWrite,
    MetricRoles,
    PinnedBy,
    RoleInputs,
    definition_created,
    definition_deleted,
    definition_updated,
)
from abtest.domain.paging import Listing, decode_cursor, encode_cursor
from abtest.errors import Conflict, ErrorCode, InvalidInput, NotFound
from abtest.limits import MAX_QUANTILE_USERS
from abtest.storage.audit import record
from abtest.storage.database import Connection, Database

if TYPE_CHECKING:
    from abtest.analysis.rollup import VariantMetrics
    from abtest.domain.experiments import Experiment

__all__ = [
    "MetricDefinitionRepository",
    "check_roles",
    "definition_direction",
    "pin_definitions",
    "roles_json",
]

_SELECT = (
    "SELECT d.name, d.version, v.definition, d.created_at, d.updated_at FROM metric_definitions d"
    " JOIN metric_definition_versions v ON v.name = d.name AND v.version = d.version"
)


def _not_found(name: str) -> NotFound:
    return NotFound(
        f"no metric definition named {name!r}", code=ErrorCode.METRIC_DEFINITION_NOT_FOUND, field="name"
    )


def _model(row: dict[str, Any]) -> MetricDefinition:
    return MetricDefinition.stored(row)


def roles_json(value: BaseModel | None) -> Jsonb | None:
    """A roles or decision-settings model as the experiments table stores it (None: none)."""
    return None if value is None else Jsonb(value.model_dump(mode="json"))


def check_roles(conn: Connection, roles: MetricRoles) -> None:
    """422 unknown_metric_definition naming the first role whose definition does not exist; the named
    definitions stay share-locked until the transaction ends, so none is deleted before it commits."""
    names = sorted(set(roles.names()))
    if not names:
        return
    found = {
        row["name"]
        for row in conn.execute(
            "SELECT name FROM metric_definitions WHERE name = ANY(%s) ORDER BY name FOR SHARE", (names,)
        )
    }
    for path, name in roles.paths():
        if name not in found:
            raise InvalidInput(
                f"{path}: no metric definition named {name!r} "
                "(create it with POST /api/v1/metric-definitions)",
                code=ErrorCode.UNKNOWN_METRIC_DEFINITION,
                field=path,
            )


def pin_definitions(conn: Connection, experiment_id: UUID, names: Collection[str]) -> None:
    """Pin the current version of each named definition that the experiment has not pinned yet."""
    if not names:
        return
    conn.execute(
        "UPDATE experiments e SET pinned_metrics = COALESCE((SELECT jsonb_object_agg(d.name, d.version)"
        " FROM metric_definitions d WHERE d.name = ANY(%(names)s) AND NOT e.pinned_metrics ? d.name), '{}')"
        " || e.pinned_metrics WHERE e.id = %(id)s",
        {"names": sorted(set(names)), "id": experiment_id},
    )


def definition_direction(conn: Connection, metric_name: str) -> Direction | None:
    """The direction a definition gives the event metric `metric_name`: the definition of that name, else
    the first (by name) that reads it (not ratios); None when no definition covers it."""
    row = conn.execute(
        "SELECT v.definition->>'direction' AS direction FROM metric_definitions d"
        " JOIN metric_definition_versions v ON v.name = d.name AND v.version = d.version"
        " WHERE d.name = %(m)s OR (v.definition->>'type' <> 'ratio' AND v.definition->>'metric' = %(m)s)"
        " ORDER BY d.name <> %(m)s, d.name LIMIT 1",
        {"m": metric_name},
    ).fetchone()
    if row is None:
        return None
    direction: Direction = "lower" if row["direction"] == "lower" else "higher"
    return direction


def _users_of(conn: Connection, name: str) -> list[dict[str, Any]]:
    """Experiments not completed whose roles name the definition."""
    return conn.execute(
        "SELECT id, name, status, pinned_metrics FROM experiments WHERE status <> 'completed'"
        " AND metric_roles IS NOT NULL"
        " AND (metric_roles->'goals' ? %(n)s OR metric_roles->'secondary' ? %(n)s"
        " OR metric_roles->'guardrails' @> jsonb_build_array(jsonb_build_object('name', %(n)s::text)))"
        " ORDER BY created_at, id",
        {"n": name},
    ).fetchall()


class MetricDefinitionRepository:
    """Metric definitions and the inputs of the analysis by role."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, new: MetricDefinitionIn, *, actor: Actor = SYSTEM_ACTOR) -> MetricDefinition:
        """Store version 1 (or, for a name deleted before, the next version) with its audit entry; 409
        duplicate_name if the name is taken."""
        body = MetricDefinitionBody.model_validate(new.model_dump(exclude={"name"}))

        def work(conn: Connection) -> MetricDefinition:
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 22))", (new.name,))
            if conn.execute("SELECT 1 FROM metric_definitions WHERE name = %s", (new.name,)).fetchone():
                raise Conflict(
                    f"a metric definition named {new.name!r} already exists (PUT edits it)",
                    code=ErrorCode.DUPLICATE_NAME,
                    field="name",
                )
            row = conn.execute(
                "SELECT COALESCE(max(version), 0) + 1 AS version FROM metric_definition_versions"
                " WHERE name = %s",
                (new.name,),
            ).fetchone()
            assert row is not None
            version = int(row["version"])
            conn.execute(
                "INSERT INTO metric_definition_versions (name, version, definition) VALUES (%s, %s, %s)",
                (new.name, version, Jsonb(body.model_dump(mode="json"))),
            )
            conn.execute(
                "INSERT INTO metric_definitions (name, version) VALUES (%s, %s)", (new.name, version)
            )
            created = self._fetch(conn, new.name)
            record(conn, definition_created(actor, created))
            return created

        return self._db.run(work)

    def get(self, name: str, version: int | None = None) -> MetricDefinition:
        """The current definition, or one version of it (also of a deleted name); 404 if none."""

        def work(conn: Connection) -> MetricDefinition:
            if version is None:
                return self._fetch(conn, name)
            row = conn.execute(
                "SELECT name, version, definition, created_at, created_at AS updated_at"
                " FROM metric_definition_versions WHERE name = %s AND version = %s",
                (name, version),
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"metric definition {name!r} has no version {version}",
                    code=ErrorCode.METRIC_DEFINITION_NOT_FOUND,
                    field="version",
                )
            return _model(row)

        return self._db.run(work, transaction=False)

    def list(self, *, limit: int = 50, cursor: str | None = None) -> Listing[MetricDefinition]:
        """Definitions by name, `limit` a page."""
        after = decode_cursor(cursor, str)[0] if cursor is not None else ""

        def work(conn: Connection) -> list[MetricDefinition]:
            rows = conn.execute(
                _SELECT + " WHERE d.name > %s ORDER BY d.name LIMIT %s", (after, limit + 1)
            ).fetchall()
            return [_model(row) for row in rows]

        items = self._db.run(work, transaction=False)
        page, more = items[:limit], len(items) > limit
        return Listing(page, encode_cursor(page[-1].name) if more and page else None)

    def replace(
        self, name: str, body: MetricDefinitionBody, *, actor: Actor = SYSTEM_ACTOR
    ) -> MetricDefinitionWrite:
        """Append a version (unless nothing changed) with its audit entry; the answer names the experiments
        that keep the version they pinned."""

        def work(conn: Connection) -> MetricDefinitionWrite:
            current = self._fetch(conn, name, lock=True)
            changed = body.model_dump(mode="json") != current.definition.model_dump(mode="json")
            if changed:
                conn.execute(
                    "INSERT INTO metric_definition_versions (name, version, definition) VALUES (%s, %s, %s)",
                    (name, current.version + 1, Jsonb(body.model_dump(mode="json"))),
                )
                conn.execute(
                    "UPDATE metric_definitions SET version = %s, updated_at = now() WHERE name = %s",
                    (current.version + 1, name),
                )
            updated = self._fetch(conn, name)
            if changed:
                record(conn, definition_updated(actor, current, updated))
            rows = conn.execute(
                "SELECT id, name, status, (pinned_metrics->>%(n)s)::int AS version FROM experiments"
                " WHERE pinned_metrics ? %(n)s AND (pinned_metrics->>%(n)s)::int <> %(v)s"
                " ORDER BY created_at, id",
                {"n": name, "v": updated.version},
            ).fetchall()
            pinned = [
                PinnedBy(
                    experiment_id=str(r["id"]),
                    experiment_name=r["name"],
                    status=r["status"],
                    version=r["version"],
                )
                for r in rows
            ]
            return MetricDefinitionWrite(**updated.model_dump(), pinned_by=pinned)

        return self._db.run(work)

    def delete(self, name: str, *, actor: Actor = SYSTEM_ACTOR) -> None:
        """Delete the name (its versions stay for the experiments that pinned them), with its audit entry;
        409 metric_definition_in_use while an experiment not completed names it."""

        def work(conn: Connection) -> None:
            current = self._fetch(conn, name, lock=True)
            users = _users_of(conn, name)
            if users:
                error = Conflict(
                    f"metric definition {name!r} cannot be deleted: {len(users)} experiment(s) not completed "
                    "name it in their metric roles",
                    code=ErrorCode.METRIC_DEFINITION_IN_USE,
                    field="name",
                )
                error.details = {"experiments": [str(u["id"]) for u in users]}
                raise error
            conn.execute("DELETE FROM metric_definitions WHERE name = %s", (name,))
            record(conn, definition_deleted(actor, current))

        self._db.run(work)

    def direction(self, metric_name: str) -> Direction | None:
        """`definition_direction` in its own read (for the bandits: a bandit's metric must agree)."""
        return self._db.run(lambda conn: definition_direction(conn, metric_name), transaction=False)

    def role_inputs(self, experiment_id: UUID, rolled: VariantMetrics | None = None) -> RoleInputs | None:
        """What the analysis by role reads, in one snapshot; None when the experiment has no roles.
        `rolled`: the experiment's exact per-variant statistics (RollupRepository.variant_metrics), which
        plain proportions and means (no cap, no window) are read from at no further cost."""
        from abtest.storage.experiments import fetch_experiment

        def work(conn: Connection) -> RoleInputs | None:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            experiment = fetch_experiment(conn, experiment_id)
            return role_inputs(conn, experiment, rolled)

        return self._db.run(work)

    @staticmethod
    def _fetch(conn: Connection, name: str, *, lock: bool = False) -> MetricDefinition:
        row = conn.execute(
            _SELECT + " WHERE d.name = %s" + (" FOR UPDATE OF d" if lock else ""), (name,)
        ).fetchone()
        if row is None:
            raise _not_found(name)
        return _model(row)


# --- The inputs of the analysis by role --------------------------------------------------------------


def role_inputs(
    conn: Connection, experiment: Experiment, rolled: VariantMetrics | None = None
) -> RoleInputs | None:
    """The inputs of the analysis by role (None without roles), in the caller's snapshot (see
    MetricDefinitionRepository.role_inputs for `rolled`)."""
    roles = experiment.metrics
    if roles is None or not roles.names():
        return None
    definitions = _definitions(conn, roles.names(), experiment.pinned_metrics)
    variant_ids = [v.id for v in experiment.variants]
    data: dict[str, DefinedMetricData] = {}
    tail: _Tail | None = None
    for name, definition in definitions.items():
        body = definition.definition
        if rolled is not None and _plain(body):
            data[name] = _from_rolled(rolled, variant_ids, body.event_metrics(name)[0], body.type)
            continue
        if rolled is not None and all(name in rolled.defined.get(v, {}) for v in variant_ids):
            data[name] = kept_data(rolled, name, body)  # kept by the rollup
            continue
        tail = tail or _tail(conn, experiment.id)
        data[name] = defined_metric_data(conn, experiment.id, variant_ids, name, body, tail)
    return RoleInputs(experiment, roles, definitions, data)


def _plain(body: MetricDefinitionBody) -> bool:
    """A proportion or a mean with neither cap nor window: the rollup's per-variant sums are its own."""
    return body.type in ("proportion", "mean") and body.capping is None and body.window_hours is None


def _from_rolled(
    rolled: VariantMetrics, variant_ids: Sequence[UUID], metric: str, kind: str
) -> DefinedMetricData:
    """A plain proportion or mean from the exact per-variant statistics (exposed users, converted users,
    sum and sum of squares of the per-user totals), as the event metric's own analyses read them."""
    data = DefinedMetricData()
    for variant_id in variant_ids:
        exposed = rolled.variants[variant_id].users if variant_id in rolled.variants else 0
        stats = rolled.metrics.get(variant_id, {}).get(metric)
        data.users.append(exposed)
        if kind == "proportion":
            converted = float(min(stats.users, exposed)) if stats is not None else 0.0
            data.sum_x.append(converted)
            data.sum_x2.append(converted)
        else:
            data.sum_x.append(stats.sum if stats is not None else 0.0)
            data.sum_x2.append(stats.sum_squares if stats is not None else 0.0)
        data.sum_y.append(0.0)
        data.sum_y2.append(0.0)
        data.sum_xy.append(0.0)
    return data


def _definitions(
    conn: Connection, names: Sequence[str], pinned: dict[str, int]
) -> dict[str, MetricDefinition]:
    """Each named definition at its pinned version, else the current one (a name with neither is left
    out: its role reports it missing)."""
    found: dict[str, MetricDefinition] = {}
    pinned_names = [n for n in names if n in pinned]
    if pinned_names:
        for row in conn.execute(
            "SELECT v.name, v.version, v.definition, v.created_at, v.created_at AS updated_at"
            " FROM metric_definition_versions v JOIN unnest(%s::text[], %s::int[]) AS p(name, version)"
            " ON p.name = v.name AND p.version = v.version",
            (pinned_names, [pinned[n] for n in pinned_names]),
        ):
            found[row["name"]] = _model(row)
    rest = [n for n in names if n not in found]
    if rest:
        for row in conn.execute(_SELECT + " WHERE d.name = ANY(%s)", (rest,)):
            found[row["name"]] = _model(row)
    return found


# Each exposed user's first exposure (users assigned; forced users' events live in other tables).
_EXPOSED = """
exposed AS (
    SELECT a.variant_id, x.user_id, x.first_at
    FROM (SELECT user_id, min(occurred_at) AS first_at FROM exposures WHERE experiment_id = %(e)s
          GROUP BY user_id) x
    JOIN assignments a ON a.experiment_id = %(e)s AND a.user_id = x.user_id
)"""

# With a window, from the raw events: per exposed user, the total of metric x (and y) and x's conversion
# count, counting conversions at or after the first exposure and at most `window` seconds after it.
_PER_USER_WINDOW = """
per_user AS (
    SELECT u.variant_id, u.user_id,
        COALESCE(sum(c.value::numeric) FILTER (WHERE c.metric_name = %(x)s), 0)::float8 AS x,
        count(c.id) FILTER (WHERE c.metric_name = %(x)s) AS nx,
        COALESCE(sum(c.value::numeric) FILTER (WHERE c.metric_name = %(y)s), 0)::float8 AS y
    FROM exposed u LEFT JOIN (
        SELECT id, user_id, metric_name, value, occurred_at FROM conversions
        WHERE experiment_id = %(e)s AND metric_name IN (%(x)s, %(y)s)
    ) c ON c.user_id = u.user_id AND c.occurred_at >= u.first_at
       AND c.occurred_at <= u.first_at + make_interval(secs => %(window)s::float8)
    GROUP BY u.variant_id, u.user_id
)"""

# Without a window, from the rollup's stored per-user totals (the attribution of /metrics: conversions at
# or after the first exposure), except the users touched since the last rollup, whose recomputed totals
# come as arrays (abtest.storage.rollups.tail_users).
_PER_USER_STORED = """
per_user AS (
    SELECT u.variant_id, u.user_id, COALESCE(mx.total, 0) AS x, COALESCE(mx.count, 0) AS nx,
        CASE WHEN %(y)s = %(x)s THEN COALESCE(mx.total, 0) ELSE COALESCE(my.total, 0) END AS y
    FROM (SELECT user_id, variant_id FROM rollup_users WHERE experiment_id = %(e)s AND exposures > 0
          AND NOT (user_id = ANY(%(tail)s::text[]))) u
    LEFT JOIN (SELECT user_id, total, count FROM rollup_user_metrics
               WHERE experiment_id = %(e)s AND metric_name = %(x)s) mx ON mx.user_id = u.user_id
    LEFT JOIN (SELECT user_id, total FROM rollup_user_metrics
               WHERE experiment_id = %(e)s AND metric_name = %(y)s AND %(y)s <> %(x)s) my
           ON my.user_id = u.user_id
    UNION ALL
    SELECT * FROM unnest(%(tail_variants)s::uuid[], %(tail_users)s::text[], %(tail_x)s::float8[],
        %(tail_n)s::bigint[], %(tail_y)s::float8[])
)"""


@dataclass(frozen=True)
class _Tail:
    """The users touched since the last rollup: their recomputed state (see _PER_USER_STORED)."""

    users: dict[str, UUID]  # exposed or not: every touched user is left out of the stored rows
    exposed: dict[str, UUID]
    totals: dict[tuple[str, str], tuple[float, int]]  # (user, metric) -> (total, count)

    def params(self, x: str, y: str) -> dict[str, Any]:
        users = sorted(self.exposed)
        return {
            "tail": sorted(self.users),
            "tail_variants": [self.exposed[u] for u in users],
            "tail_users": users,
            "tail_x": [self.totals.get((u, x), (0.0, 0))[0] for u in users],
            "tail_n": [self.totals.get((u, x), (0.0, 0))[1] for u in users],
            "tail_y": [self.totals.get((u, y), (0.0, 0))[0] for u in users],
        }


def _tail(conn: Connection, experiment_id: UUID) -> _Tail:
    from abtest.storage.rollups import tail_users  # the metrics function's read only: it loads analysis

    states, metrics = tail_users(conn, experiment_id)
    return _Tail(
        users={user: state.variant_id for (_, user), state in states.items()},
        exposed={user: state.variant_id for (_, user), state in states.items() if state.exposures > 0},
        totals={(user, metric): (m.total, m.count) for (_, user, metric), m in metrics.items()},
    )


def _cap_sql(side: str, capping: Any) -> str:
    """The cap of one side (x or y) as SQL over per_user: NULL (none), a number, or the pooled percentile."""
    if capping is None:
        return "NULL::float8"
    if capping.type == "absolute":
        return f"{float(capping.value)!r}::float8"
    zeros = f" FILTER (WHERE {side} <> 0)" if capping.ignore_zeros else ""
    fraction = float(capping.value)
    return f"(SELECT percentile_cont({fraction!r}) WITHIN GROUP (ORDER BY {side}){zeros} FROM per_user)"


def defined_metric_data(
    conn: Connection,
    experiment_id: UUID,
    variant_ids: Sequence[UUID],
    name: str,
    definition: MetricDefinitionBody,
    tail: _Tail | None = None,
) -> DefinedMetricData:
    """Per-variant statistics of a defined metric now (see the module docstring); `tail`: the users
    touched since the last rollup (read here when not given)."""
    metrics = definition.event_metrics(name)
    x_metric, y_metric = metrics[0], metrics[-1]
    window = definition.window_hours * 3600.0 if definition.window_hours is not None else None
    params: dict[str, Any] = {"e": experiment_id, "x": x_metric, "y": y_metric, "window": window}
    x_cap = _cap_sql("x", definition.capping)
    # A ratio's denominator is not capped (its definition caps the numerator, GrowthBook's default).
    if window is None:
        params |= (tail or _tail(conn, experiment_id)).params(x_metric, y_metric)
        per_user = _PER_USER_STORED
    else:
        per_user = f"{_EXPOSED}, {_PER_USER_WINDOW}"
    ctes = f"WITH {per_user}, caps AS (SELECT {x_cap} AS cx)"
    proportion = definition.type == "proportion"
    value = "CASE WHEN p.nx > 0 THEN 1.0 ELSE 0.0 END" if proportion else "LEAST(p.x, COALESCE(caps.cx, p.x))"
    result = DefinedMetricData()
    if definition.type == "quantile":
        rows = conn.execute(
            (
                ctes + f" SELECT p.variant_id, {value} AS v, caps.cx FROM per_user p, caps LIMIT %(limit)s"
            ).encode(),
            {**params, "limit": MAX_QUANTILE_USERS + 1},
        ).fetchall()
        by_variant: dict[UUID, list[float]] = {v: [] for v in variant_ids}
        for row in rows:
            by_variant.setdefault(row["variant_id"], []).append(float(row["v"]))
            result.cap = row["cx"]
        result.users = [len(by_variant[v]) for v in variant_ids]
        if len(rows) > MAX_QUANTILE_USERS:
            result.error = TOO_MANY_USERS_ERROR
        else:
            result.values = [by_variant[v] for v in variant_ids]
        return result
    rows = conn.execute(
        (
            ctes + f", capped AS (SELECT p.variant_id, {value} AS x, p.y FROM per_user p, caps)"
            " SELECT variant_id, count(*) AS users, sum(x) AS sx, sum(x * x) AS sx2, sum(y) AS sy,"
            " sum(y * y) AS sy2, sum(x * y) AS sxy, (SELECT cx FROM caps) AS cx"
            " FROM capped GROUP BY variant_id"
        ).encode(),
        params,
    ).fetchall()
    by_id = {row["variant_id"]: row for row in rows}
    for variant_id in variant_ids:
        found = by_id.get(variant_id)
        result.users.append(int(found["users"]) if found else 0)
        result.sum_x.append(float(found["sx"]) if found else 0.0)
        result.sum_x2.append(float(found["sx2"]) if found else 0.0)
        result.sum_y.append(float(found["sy"]) if found else 0.0)
        result.sum_y2.append(float(found["sy2"]) if found else 0.0)
        result.sum_xy.append(float(found["sxy"]) if found else 0.0)
        if found is not None and found["cx"] is not None:
            result.cap = float(found["cx"])
    if definition.capping is not None and definition.capping.type == "absolute":
        result.cap = definition.capping.value
    return result
