"""The schema: the numbered SQL migrations in abtest/storage/migrations, applied once each, then the
routines (hot statements installed as PL/pgSQL functions, see abtest.storage.routines).

Idempotent and safe to run concurrently: all pending files apply in one transaction under an advisory
lock, and each applied file is recorded in schema_migrations. In the same transaction, every routine of
ROUTINES whose definition changed (its digest differs from the one recorded in schema_routines), or
every routine if a numbered migration was applied now, is (re)created from its statement's Python
constant: routines are repeatable, like Flyway's, so editing a routine's statement (say `_ENROLL` in
abtest.storage.assignments) needs no numbered migration, only the next migrate run. A routine's
statement is declared once, next to the repository method that calls it; add new ones to ROUTINES.
`python -m abtest.migrate` and the MigrateFunction custom resource both come here.
"""

from __future__ import annotations

import time
from importlib import resources

import psycopg
from psycopg import sql

from abtest.storage.assignments import ENROLL
from abtest.storage.database import Connection, Database, get_database
from abtest.storage.routines import Routine, ensure_routines_table, install

# Every routine the code calls. The function names are the database's; the statements are Python's.
ROUTINES: tuple[Routine, ...] = (ENROLL,)

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
        install_routines(conn, reinstall_all=bool(applied_now))
    return applied_now


def install_routines(conn: Connection, *, reinstall_all: bool = False) -> list[str]:
    """(Re)create the routines whose definition changed (all of them with `reinstall_all`); return their
    names. Runs inside apply_migrations' transaction, under its lock."""
    installed = ensure_routines_table(conn)
    changed = [r for r in ROUTINES if reinstall_all or installed.get(r.name) != r.digest]
    for routine in changed:
        install(conn, routine)
    return [routine.name for routine in changed]


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
