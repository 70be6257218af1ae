"""Namespaces: bucket allocation (inside the experiments' lifecycle transactions), the serving view,
the /surfaces read model and the read-only lookup of a user's membership."""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from uuid import UUID

from abtest.contract.namespaces import NAMESPACE_BUCKETS, namespace_bucket
from abtest.domain.assignment import AssignedVariant, experiment_variant_tag
from abtest.domain.experiments import Experiment, Status
from abtest.domain.lifecycle import ENROLLING
from abtest.domain.namespaces import NamespaceAllocation, NamespaceMember, SurfaceMembership, SurfaceNamespace
from abtest.domain.paging import decode_cursor, encode_cursor
from abtest.errors import ErrorCode, NotFound
from abtest.storage.database import Connection, Database
from abtest.storage.experiments import SELECT_EXPERIMENT

# Each experiment's buckets as merged ranges (gaps and islands), for the cache and /surfaces.
_RANGES = """
SELECT surface, experiment_id, min(bucket) AS start, max(bucket) + 1 AS "end"
FROM (SELECT surface, experiment_id, bucket,
             bucket - row_number() OVER (PARTITION BY surface, experiment_id ORDER BY bucket) AS island
      FROM namespace_buckets WHERE experiment_id IS NOT NULL {where}) owned
GROUP BY surface, experiment_id, island
ORDER BY surface, experiment_id, start
"""


def _ranges(
    conn: Connection, surface: str | None = None, among: list[str] | None = None
) -> dict[str, dict[UUID, list[tuple[int, int]]]]:
    params: list[Any]
    where, params = ("AND surface = %s", [surface]) if surface is not None else ("", [])
    if among is not None:
        where, params = "AND surface = ANY(%s)", [among]
    found: dict[str, dict[UUID, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for row in conn.execute(_RANGES.format(where=where).encode(), params):
        found[row["surface"]][row["experiment_id"]].append((row["start"], row["end"]))
    return found


def _surface_view(
    surface: str, salt: str | None, experiments: list[Experiment], ranges: dict[UUID, list[tuple[int, int]]]
) -> SurfaceNamespace:
    members = []
    held_total = 0
    for experiment in experiments:
        held = ranges.get(experiment.id, [])
        count = sum(end - start for start, end in held)
        held_total += count
        members.append(
            NamespaceMember(
                experiment_id=experiment.id,
                name=experiment.name,
                status=experiment.status,
                namespace_share=experiment.namespace_share,
                share=count / NAMESPACE_BUCKETS,
                buckets=held,
            )
        )
    free = NAMESPACE_BUCKETS - held_total
    return SurfaceNamespace(
        surface=surface,
        salt=salt,
        total_buckets=NAMESPACE_BUCKETS,
        free_share=free / NAMESPACE_BUCKETS,
        free_buckets=free,
        experiments=members,
    )


class NamespaceRepository:
    """Surfaces and their namespaces (read side; allocation runs in ExperimentRepository's transactions)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def allocations(self) -> list[NamespaceAllocation]:
        """Every namespace with its salt and each experiment's bucket ranges (for the serving cache)."""

        def work(conn: Connection) -> list[NamespaceAllocation]:
            ranges = _ranges(conn)
            salts = conn.execute("SELECT surface, salt FROM namespaces ORDER BY surface").fetchall()
            return [
                NamespaceAllocation(r["surface"], r["salt"], dict(ranges.get(r["surface"], {})))
                for r in salts
            ]

        return self._db.run(work)

    def surfaces(
        self, surface: str | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[SurfaceNamespace]:
        """Every surface an experiment uses or used (or just `surface`; or the first `limit` named after
        `after`, by name): its experiments that are not completed, oldest first, with their buckets,
        and the free share."""

        def work(conn: Connection) -> list[SurfaceNamespace]:
            filter_sql, params = (
                ("WHERE surface = %(surface)s", {"surface": surface}) if surface else ("", {})
            )
            if after is not None:
                filter_sql, params = "WHERE surface > %(after)s", {"after": after}
            page_sql = " LIMIT %(limit)s" if limit is not None else ""
            names = conn.execute(
                "SELECT surface FROM"
                " (SELECT surface FROM experiments UNION SELECT surface FROM namespaces) s"
                f" {filter_sql} ORDER BY surface{page_sql}".encode(),
                {**params, "limit": limit},
            ).fetchall()
            among = [r["surface"] for r in names] if limit is not None else None
            salts = {r["surface"]: r["salt"] for r in conn.execute("SELECT surface, salt FROM namespaces")}
            query = SELECT_EXPERIMENT + " WHERE e.status <> 'completed'"
            query += " AND e.surface = %(surface)s" if surface else ""
            query += " AND e.surface = ANY(%(among)s)" if among is not None else ""
            query += " ORDER BY e.created_at, e.id"
            by_surface: dict[str, list[Experiment]] = defaultdict(list)
            for row in conn.execute(query.encode(), {**params, "among": among}):
                experiment = Experiment.model_validate(row)
                by_surface[experiment.surface].append(experiment)
            ranges = _ranges(conn, surface, among)
            return [
                _surface_view(
                    r["surface"], salts.get(r["surface"]), by_surface[r["surface"]], ranges[r["surface"]]
                )
                for r in names
            ]

        return self._db.run(work)

    def surface_page(
        self, *, limit: int, cursor: str | None = None
    ) -> tuple[list[SurfaceNamespace], str | None]:
        """A page of /surfaces, by name: `limit` surfaces after the cursor, and the next page's cursor."""
        after = decode_cursor(cursor, str)[0] if cursor is not None else None
        found = self.surfaces(after=after, limit=limit + 1)
        page, more = found[:limit], len(found) > limit
        next_cursor = encode_cursor(page[-1].surface) if more else None
        return page, next_cursor

    def surface(self, surface: str) -> SurfaceNamespace:
        """One surface; NotFound if no experiment ever used it."""
        found = self.surfaces(surface)
        if not found:
            raise NotFound(
                f"no experiment uses the surface '{surface}'",
                code=ErrorCode.SURFACE_NOT_FOUND,
                field="surface",
            )
        return found[0]

    def known(self, surface: str) -> bool:
        """True if a namespace or an experiment (of any status) ever used the surface."""

        def work(conn: Connection) -> bool:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM namespaces WHERE surface = %(s)s)"
                " OR EXISTS (SELECT 1 FROM experiments WHERE surface = %(s)s) AS known",
                {"s": surface},
            ).fetchone()
            return bool(row and row["known"])

        return self._db.run(work, transaction=False)

    def lookup(self, surface: str, user_id: str) -> SurfaceMembership:
        """Which experiment (not completed) and variant of the surface a user is in; never enrolls."""

        def work(conn: Connection) -> SurfaceMembership:
            row = conn.execute(
                "SELECT n.salt, m.experiment_id, e.name, e.status,"
                " v.id AS variant_id, v.name AS variant_name, v.config"
                " FROM namespaces n"
                " LEFT JOIN namespace_members m ON m.surface = n.surface AND m.user_id = %(user_id)s"
                " LEFT JOIN experiments e ON e.id = m.experiment_id AND e.status <> 'completed'"
                " LEFT JOIN assignments a ON a.experiment_id = e.id AND a.user_id = %(user_id)s"
                " LEFT JOIN variants v ON v.id = a.variant_id"
                " WHERE n.surface = %(surface)s",
                {"surface": surface, "user_id": user_id},
            ).fetchone()
            if row is None:
                known = conn.execute(
                    "SELECT 1 FROM experiments WHERE surface = %s LIMIT 1", (surface,)
                ).fetchone()
                if known is None:
                    raise NotFound(
                        f"no experiment uses the surface '{surface}'",
                        code=ErrorCode.SURFACE_NOT_FOUND,
                        field="surface",
                    )
                return _lookup_answer(surface, user_id, None, None, {})
            bucket = namespace_bucket(row["salt"], user_id)
            owner = conn.execute(
                "SELECT experiment_id FROM namespace_buckets WHERE surface = %s AND bucket = %s",
                (surface, bucket),
            ).fetchone()
            return _lookup_answer(surface, user_id, bucket, owner["experiment_id"] if owner else None, row)

        return self._db.run(work, transaction=False)


def _lookup_answer(
    surface: str, user_id: str, bucket: int | None, owner: UUID | None, row: dict[str, Any]
) -> SurfaceMembership:
    member = row.get("name") is not None
    status = Status(row["status"]) if member else None
    variant = (
        AssignedVariant(id=row["variant_id"], name=row["variant_name"], config=row["config"] or {})
        if member and row.get("variant_id") is not None
        else None
    )
    return SurfaceMembership(
        surface=surface,
        user_id=user_id,
        bucket=bucket,
        bucket_owner=owner,
        enrolled=variant is not None and status in ENROLLING,
        experiment_id=row["experiment_id"] if member else None,
        experiment_name=row["name"] if member else None,
        status=status,
        variant=variant,
        experiment_variant=experiment_variant_tag(row["name"], variant.name) if variant is not None else None,
    )
