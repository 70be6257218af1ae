"""The kept metric definitions in the rollup (migration 0018; abtest.analysis.defined_rollup).

The scheduled rollup folds, inside each experiment's savepoint and day by day, the touched users'
recomputed per-user values of every kept definition the experiment has pinned (`DefinitionRollup`),
beside the event metrics' fold of abtest.storage.rollups and with the same rules: each user recomputed
from their raw events below the run's horizon and dated before the end of the day walked, stored rows
replaced, per-variant deltas added, the day's totals copied into snapshot_definitions. Reads add the
users touched above the horizon, recomputed in the read's snapshot (`defined_tail`), so they are exact
and current, and the series walks the tail's days as the event metrics' series does (`DefinedTailDays`).

Definitions are pinned (experiments.pinned_metrics) when an experiment starts, and held by its rollups
from then on (`mark_built`). A definition pinned later (a secondary metric added to a running
experiment) marks the experiment's rollups to start over (`restart_rollups`: no lock, nothing deleted);
until the next run does, reads compute that definition from the raw events (as a percentile cap),
then the run drops the experiment's rows, holds every pinned definition and rebuilds its history,
every day included, from the raw events.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from typing import Any
from uuid import UUID

from abtest.analysis.defined_rollup import (
    DefinedFold,
    DefinedStats,
    KeptDefinition,
    UserDefined,
    UserDefinedKey,
    add_deltas,
    fold_defined,
)
from abtest.domain.metric_definitions import MetricDefinitionBody
from abtest.storage.database import Connection

_NO_UPPER_BOUND = str(2**63 - 1)

_KEPT = """
SELECT p.key AS name, v.definition FROM experiments e
CROSS JOIN LATERAL jsonb_each_text(e.pinned_metrics) p
JOIN metric_definition_versions v ON v.name = p.key AND v.version = p.value::int
WHERE e.id = %(e)s AND (NOT %(built)s OR EXISTS (
    SELECT 1 FROM rollup_definitions_built b WHERE b.experiment_id = e.id AND b.name = p.key
))
ORDER BY p.key
"""

# Per user (the `users` CTE: user_id, variant_id, first_at) and kept definition, the conversions of its
# metric(s) below the horizon, dated in [since, until), at or after the first exposure and, with a
# window, at most window_s seconds after it. Index probes per user and definition (LATERAL ... OFFSET 0).
_PER_USER = """
WITH defs AS (
    SELECT * FROM unnest(%(names)s::text[], %(xs)s::text[], %(ys)s::text[], %(windows)s::float8[])
        AS d(name, xm, ym, window_s)
),
users AS ({users})
SELECT u.user_id, u.variant_id, d.name, c.n, c.x, c.y
FROM users u CROSS JOIN defs d
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE metric_name = d.xm) AS n,
           COALESCE(sum(value::numeric) FILTER (WHERE metric_name = d.xm), 0) AS x,
           COALESCE(sum(value::numeric) FILTER (WHERE metric_name = d.ym), 0) AS y
    FROM conversions c
    WHERE c.experiment_id = %(e)s AND c.user_id = u.user_id AND c.txid < %(high)s
      AND c.occurred_at >= COALESCE(%(since)s::timestamptz, '-infinity')
      AND c.occurred_at < COALESCE(%(until)s::timestamptz, 'infinity')
      AND c.metric_name IN (d.xm, d.ym) AND c.occurred_at >= u.first_at
      AND (d.window_s IS NULL OR c.occurred_at <= u.first_at + make_interval(secs => d.window_s))
    OFFSET 0
) c
WHERE c.n > 0 OR c.x <> 0 OR c.y <> 0
"""

# The given users' first exposure below the horizon, dated before `until` (the rollup and its tail).
_TOUCHED = """
    SELECT t.user_id, a.variant_id, f.first_at
    FROM unnest(%(user_ids)s::text[]) AS t(user_id)
    JOIN assignments a ON a.experiment_id = %(e)s AND a.user_id = t.user_id
    CROSS JOIN LATERAL (
        SELECT min(occurred_at) AS first_at FROM exposures x
        WHERE x.experiment_id = %(e)s AND x.user_id = t.user_id AND x.txid < %(high)s
          AND x.occurred_at < COALESCE(%(until)s::timestamptz, 'infinity')
        OFFSET 0
    ) f
    WHERE f.first_at IS NOT NULL
"""

# The users exposed in one config phase, from their first exposure in it (abtest.storage.phase_metrics).
_IN_PHASE = """
    SELECT x.user_id, a.variant_id, min(x.occurred_at) AS first_at
    FROM exposures x JOIN assignments a ON a.experiment_id = x.experiment_id AND a.user_id = x.user_id
    WHERE x.experiment_id = %(e)s AND x.phase = %(phase)s
    GROUP BY x.user_id, a.variant_id
"""

_SUMS = "count, users, sum_x, sum_x2, sum_y, sum_y2, sum_xy"


def kept_definitions(
    conn: Connection, experiment_id: UUID, *, built_only: bool = True
) -> dict[str, KeptDefinition]:
    """The experiment's pinned definitions that the rollup keeps, by name: those its rollups hold
    (migration 0018's rollup_definitions_built), or with `built_only=False` every one it pinned."""
    kept: dict[str, KeptDefinition] = {}
    for row in conn.execute(_KEPT, {"e": experiment_id, "built": built_only}):
        definition = KeptDefinition.of(row["name"], MetricDefinitionBody.model_validate(row["definition"]))
        if definition is not None:
            kept[definition.name] = definition
    return kept


def mark_built(conn: Connection, experiment_id: UUID) -> None:
    """Every kept definition the experiment pinned is held by its rollups from now on: called when it
    starts (no event yet) and when a run starts its rollups over (before it walks any day)."""
    names = sorted(kept_definitions(conn, experiment_id, built_only=False))
    if names:
        conn.execute(
            "INSERT INTO rollup_definitions_built (experiment_id, name)"
            " SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (experiment_id, names),
        )


def restart_rollups(conn: Connection, experiment_id: UUID, reason: str) -> None:
    """Start the experiment's rollups over (migration 0018's abtest_restart_rollups): a mark only, no
    lock and no delete, so a request may call it; the next run that folds the experiment drops its rows
    and rebuilds them from the raw events. Reads stay exact meanwhile."""
    conn.execute("SELECT abtest_restart_rollups(%s, %s)", (experiment_id, reason))


def recompute_defined(
    conn: Connection,
    experiment_id: UUID,
    definitions: dict[str, KeptDefinition],
    user_ids: Collection[str],
    high: int | None,
    until: datetime | None = None,
) -> dict[UserDefinedKey, UserDefined]:
    """The users' per-definition state from their events below `high` (None: all the snapshot sees)
    dated before `until` (None: any date)."""
    if not definitions or not user_ids:
        return {}
    params = {"user_ids": sorted(user_ids), "high": str(high) if high is not None else _NO_UPPER_BOUND}
    return _per_user(conn, experiment_id, definitions, _TOUCHED, params | {"since": None, "until": until})


def phase_defined(
    conn: Connection,
    experiment_id: UUID,
    definitions: dict[str, KeptDefinition],
    phase: int,
    since: datetime | None,
    until: datetime | None,
) -> DefinedFold:
    """One config phase's per-variant statistics of the kept definitions (as a fold from nothing): the
    users exposed in the phase, their conversions dated in [since, until) from their first exposure in
    the phase on, exactly as abtest.storage.phase_metrics counts the event metrics."""
    if not definitions:
        return DefinedFold()
    params = {"phase": phase, "since": since, "until": until, "high": _NO_UPPER_BOUND}
    rows = _per_user(conn, experiment_id, definitions, _IN_PHASE, params)
    return fold_defined(definitions, {user for user, _ in rows}, {}, rows, check_finite=False)


def _per_user(
    conn: Connection,
    experiment_id: UUID,
    definitions: dict[str, KeptDefinition],
    users: str,
    params: dict[str, Any],
) -> dict[UserDefinedKey, UserDefined]:
    kept = list(definitions.values())
    params = params | {
        "names": [d.name for d in kept],
        "xs": [d.x_metric for d in kept],
        "ys": [d.y_metric for d in kept],
        "windows": [d.window_seconds for d in kept],
        "e": experiment_id,
    }
    # numeric sums cannot overflow in SQL; a legacy total beyond a double becomes inf here, and the
    # fold refuses that experiment alone (as the event metrics' fold does).
    return {
        (r["user_id"], r["name"]): UserDefined(r["variant_id"], int(r["n"]), float(r["x"]), float(r["y"]))
        for r in conn.execute(_PER_USER.format(users=users).encode(), params)
    }


def stored_defined(
    conn: Connection, experiment_id: UUID, user_ids: Collection[str]
) -> dict[UserDefinedKey, UserDefined]:
    """The stored per-definition rows of these users."""
    if not user_ids:
        return {}
    return {
        (r["user_id"], r["name"]): UserDefined(r["variant_id"], r["count"], r["x"], r["y"])
        for r in conn.execute(
            "SELECT s.user_id, s.name, s.variant_id, s.count, s.x, s.y FROM unnest(%s::text[]) AS t(user_id)"
            " CROSS JOIN LATERAL (SELECT * FROM rollup_user_definitions d"
            " WHERE d.experiment_id = %s AND d.user_id = t.user_id OFFSET 0) s",
            (sorted(user_ids), experiment_id),
        )
    }


def rolled_up_defined(
    conn: Connection, experiment_id: UUID, names: Collection[str]
) -> dict[UUID, dict[str, DefinedStats]]:
    """The rolled-up per-variant statistics of these kept definitions (below the horizon)."""
    stats: dict[UUID, dict[str, DefinedStats]] = {}
    if not names:
        return stats
    for r in conn.execute(
        f"SELECT variant_id, name, {_SUMS} FROM rollup_definitions"
        " WHERE experiment_id = %s AND name = ANY(%s)".encode(),
        (experiment_id, sorted(names)),
    ):
        stats.setdefault(r["variant_id"], {})[r["name"]] = _stats(r)
    return stats


def snapshot_defined(
    conn: Connection, experiment_id: UUID, names: Collection[str]
) -> dict[date, dict[UUID, dict[str, DefinedStats]]]:
    """The daily snapshots of these kept definitions, by day."""
    days: dict[date, dict[UUID, dict[str, DefinedStats]]] = {}
    if not names:
        return days
    for r in conn.execute(
        f"SELECT day, variant_id, name, {_SUMS} FROM snapshot_definitions"
        " WHERE experiment_id = %s AND name = ANY(%s)".encode(),
        (experiment_id, sorted(names)),
    ):
        days.setdefault(r["day"], {}).setdefault(r["variant_id"], {})[r["name"]] = _stats(r)
    return days


def _stats(row: dict[str, Any]) -> DefinedStats:
    return DefinedStats(
        row["count"], row["users"], row["sum_x"], row["sum_x2"], row["sum_y"], row["sum_y2"], row["sum_xy"]
    )


def defined_tail(
    conn: Connection, experiment_id: UUID, definitions: dict[str, KeptDefinition], user_ids: Collection[str]
) -> DefinedFold:
    """The touched users' deltas now (recomputed in the read's snapshot against their stored rows)."""
    if not definitions or not user_ids:
        return DefinedFold()
    old = stored_defined(conn, experiment_id, user_ids)
    new = recompute_defined(conn, experiment_id, definitions, user_ids, None)
    return fold_defined(definitions, set(user_ids), old, new, check_finite=False)


class DefinedTailDays:
    """The tail's day walk of a series read (RollupRepository.daily_metrics): each step recomputes the
    day's users up to the end of that day and replaces what the previous step (at first, the rollup)
    held for them."""

    def __init__(
        self,
        conn: Connection,
        experiment_id: UUID,
        definitions: dict[str, KeptDefinition],
        user_ids: Collection[str],
    ) -> None:
        self._conn = conn
        self._experiment_id = experiment_id
        self._definitions = definitions
        self._state = stored_defined(conn, experiment_id, user_ids) if definitions else {}

    def step(self, user_ids: set[str], until: datetime, running: dict[UUID, dict[str, DefinedStats]]) -> None:
        if not self._definitions:
            return
        new = recompute_defined(self._conn, self._experiment_id, self._definitions, user_ids, None, until)
        old = {k: v for k, v in self._state.items() if k[0] in user_ids}
        add_deltas(running, fold_defined(self._definitions, user_ids, old, new, check_finite=False).deltas)
        for key in old:
            del self._state[key]
        self._state.update(new)


class DefinitionRollup:
    """The scheduled rollup's part for kept definitions, for one experiment (a no-op without any).

    Called by RollupRepository.roll_up inside the experiment's savepoint, for each day it walks:
    `fold` with the day's users, then `snapshot`. A failure rolls it back with the rest of the
    experiment."""

    def __init__(self, conn: Connection, experiment_id: UUID) -> None:
        self._conn = conn
        self._experiment_id = experiment_id
        self._definitions = kept_definitions(conn, experiment_id)

    def fold(self, user_ids: set[str], high: int, until: datetime) -> None:
        """Recompute these users up to `until` and store their rows and the per-variant deltas."""
        if not self._definitions or not user_ids:
            return
        old = stored_defined(self._conn, self._experiment_id, user_ids)
        new = recompute_defined(self._conn, self._experiment_id, self._definitions, user_ids, high, until)
        self._store(fold_defined(self._definitions, user_ids, old, new))

    def _store(self, result: DefinedFold) -> None:
        e = self._experiment_id
        if result.removed:
            users, names = zip(*result.removed, strict=True)
            self._conn.execute(
                "DELETE FROM rollup_user_definitions d"
                " USING unnest(%s::text[], %s::text[]) AS t(user_id, name)"
                " WHERE d.experiment_id = %s AND d.user_id = t.user_id AND d.name = t.name",
                (list(users), list(names), e),
            )
        if result.users:
            keys, rows = zip(*result.users.items(), strict=True)
            self._conn.execute(
                "INSERT INTO rollup_user_definitions (experiment_id, user_id, name, variant_id, count, x, y)"
                " SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::uuid[], %s::bigint[], %s::float8[],"
                " %s::float8[]) ON CONFLICT (experiment_id, user_id, name) DO UPDATE"
                " SET count = EXCLUDED.count, x = EXCLUDED.x, y = EXCLUDED.y",
                (
                    e,
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [r.variant_id for r in rows],
                    [r.count for r in rows],
                    [r.x for r in rows],
                    [r.y for r in rows],
                ),
            )
        if result.deltas:
            dkeys, deltas = zip(*result.deltas.items(), strict=True)
            self._conn.execute(
                f"INSERT INTO rollup_definitions AS r (experiment_id, variant_id, name, {_SUMS})"
                " SELECT %s, * FROM unnest(%s::uuid[], %s::text[], %s::bigint[], %s::bigint[], %s::float8[],"
                " %s::float8[], %s::float8[], %s::float8[], %s::float8[])"
                " ON CONFLICT (experiment_id, variant_id, name) DO UPDATE"
                " SET count = r.count + EXCLUDED.count, users = r.users + EXCLUDED.users,"
                " sum_x = r.sum_x + EXCLUDED.sum_x, sum_x2 = r.sum_x2 + EXCLUDED.sum_x2,"
                " sum_y = r.sum_y + EXCLUDED.sum_y, sum_y2 = r.sum_y2 + EXCLUDED.sum_y2,"
                " sum_xy = r.sum_xy + EXCLUDED.sum_xy".encode(),
                (
                    e,
                    [k[0] for k in dkeys],
                    [k[1] for k in dkeys],
                    [d.count for d in deltas],
                    [d.users for d in deltas],
                    [d.sum_x for d in deltas],
                    [d.sum_x2 for d in deltas],
                    [d.sum_y for d in deltas],
                    [d.sum_y2 for d in deltas],
                    [d.sum_xy for d in deltas],
                ),
            )

    def snapshot(self, day: date) -> None:
        """Copy the experiment's current per-variant totals into their snapshot rows of `day`."""
        if not self._definitions:
            return
        self._conn.execute(
            f"INSERT INTO snapshot_definitions (experiment_id, variant_id, name, day, {_SUMS})"
            f" SELECT experiment_id, variant_id, name, %(day)s, {_SUMS} FROM rollup_definitions"
            " WHERE experiment_id = %(e)s ON CONFLICT (experiment_id, day, variant_id, name) DO UPDATE"
            " SET count = EXCLUDED.count, users = EXCLUDED.users, sum_x = EXCLUDED.sum_x,"
            " sum_x2 = EXCLUDED.sum_x2, sum_y = EXCLUDED.sum_y, sum_y2 = EXCLUDED.sum_y2,"
            " sum_xy = EXCLUDED.sum_xy".encode(),
            {"day": day, "e": self._experiment_id},
        )
