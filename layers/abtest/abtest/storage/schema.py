"""The schema: the numbered SQL migrations in abtest/storage/migrations, applied once each.

Idempotent and safe to run concurrently: all pending files apply in one transaction under an advisory
lock, and each applied file is recorded in schema_migrations. `python -m abtest.migrate` and the
MigrateFunction custom resource both come here.
"""

from __future__ import annotations

import time
from importlib import resources

import psycopg
from psycopg import sql

from abtest.storage.database import Connection, Database, get_database

# Any constant works; it only has to be the same for every migrate process.
_LOCK_KEY = 7_412_039_551


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every migration, in order. The version is the file name without .sql."""
    folder = resources.files("abtest.storage.migrations")
    files = sorted(
        (entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return files


def apply_migrations(conn: Connection) -> list[str]:
    """Apply pending migrations on `conn` and return the versions applied now."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, script in migration_files():
            if version in done:
                continue
            conn.execute(script.encode())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied_now.append(version)
    return applied_now


class MigrationFailed(Exception):
    """A migration could not be applied (the driver's message says why)."""


def migrate_database(database: Database | None = None) -> list[str]:
    """Apply the pending migrations through the container's database; return the versions applied."""
    try:
        return (database or get_database()).run(apply_migrations, transaction=False)
    except psycopg.Error as exc:
        raise MigrationFailed(str(exc)) from exc


def migrate_with_role_timeout(conn: Connection, role_timeout_ms: int, deadline: float) -> list[str]:
    """Apply the pending migrations, then set the application role's statement_timeout in this database.

    The hot path runs some statements outside a transaction, where only that role default bounds
    them (SET LOCAL covers transactions only). This session may use what is left until `deadline`.
    """
    session_timeout_ms = max(int((deadline - time.monotonic()) * 1000), 1)
    conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(session_timeout_ms)))
    applied = apply_migrations(conn)
    conn.execute(
        sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} SET statement_timeout = {}").format(
            sql.Identifier(conn.info.dbname), sql.Literal(role_timeout_ms)
        )
    )
    return applied
