"""Migration 0005 on existing data: every stored assignment keeps its variant, the experiment each
surface was serving keeps serving whom it served (the whole namespace), the others get no buckets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from abtest.storage.schema import migration_files

SCHEMA = "migration_0005_check"


@pytest.fixture
def before_0005(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A private schema migrated up to 0004, then left for the test to fill and migrate."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"SET search_path TO {SCHEMA}")
        for version, script in migration_files():
            if version >= "0005":
                break
            conn.execute(script.encode())
        try:
            yield conn
        finally:
            conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


def _experiment(
    conn: psycopg.Connection[dict[str, Any]], name: str, status: str, surface: str, n: int
) -> uuid.UUID:
    experiment_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO experiments (id, name, status, salt, surface, started_at)"
        " VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))",
        (experiment_id, name, status, str(experiment_id), surface, n),
    )
    for position in (0, 1):
        conn.execute(
            "INSERT INTO variants (id, experiment_id, position, name, weight) VALUES (%s, %s, %s, %s, 0.5)",
            (uuid.uuid4(), experiment_id, position, f"v{position}"),
        )
    return experiment_id


def _assign(
    conn: psycopg.Connection[dict[str, Any]], experiment_id: uuid.UUID, user: str, position: int
) -> None:
    conn.execute(
        "INSERT INTO assignments (experiment_id, user_id, variant_id)"
        " SELECT %s, %s, id FROM variants WHERE experiment_id = %s AND position = %s",
        (experiment_id, user, experiment_id, position),
    )


def test_existing_surfaces_keep_serving_whom_they_served(
    before_0005: psycopg.Connection[dict[str, Any]],
) -> None:
    conn = before_0005
    served = _experiment(conn, "served", "running", "recommendations", 1)
    sibling = _experiment(conn, "sibling", "running", "recommendations", 2)
    paused_only = _experiment(conn, "paused_only", "paused", "checkout", 3)
    done = _experiment(conn, "done", "completed", "search", 4)
    _assign(conn, served, "u1", 1)
    _assign(conn, sibling, "u2", 0)
    _assign(conn, served, "both", 0)
    _assign(conn, sibling, "both", 1)  # the old bug: one user in two experiments of a surface
    _assign(conn, paused_only, "u3", 1)
    _assign(conn, done, "u4", 0)
    before = conn.execute(
        "SELECT experiment_id, user_id, variant_id FROM assignments ORDER BY 1, 2"
    ).fetchall()

    (version, script) = next((v, s) for v, s in migration_files() if v.startswith("0005"))
    with conn.transaction():
        conn.execute(script.encode())

    after = conn.execute(
        "SELECT experiment_id, user_id, variant_id FROM assignments ORDER BY 1, 2"
    ).fetchall()
    assert after == before, f"{version} must keep every stored assignment"
    owners = dict(
        (row["experiment_id"], row["n"])
        for row in conn.execute(
            "SELECT experiment_id, count(*) AS n FROM namespace_buckets GROUP BY experiment_id"
        ).fetchall()
    )
    assert owners == {served: 10_000, paused_only: 10_000}
    shares = {
        row["id"]: row["namespace_share"]
        for row in conn.execute("SELECT id, namespace_share FROM experiments").fetchall()
    }
    assert shares == {served: 1.0, sibling: 0.0, paused_only: 1.0, done: 1.0}
    members = {
        (row["surface"], row["user_id"]): row["experiment_id"]
        for row in conn.execute("SELECT surface, user_id, experiment_id FROM namespace_members").fetchall()
    }
    assert members == {
        ("recommendations", "u1"): served,
        ("recommendations", "u2"): sibling,
        ("recommendations", "both"): served,
        ("checkout", "u3"): paused_only,
    }
    salts = [row["salt"] for row in conn.execute("SELECT salt FROM namespaces ORDER BY surface").fetchall()]
    assert len(salts) == len(set(salts)) == 2
