"""Apply the numbered SQL migrations in abtest/migrations, once each.

`python -m abtest.migrate` (uses DATABASE_URL or the DB_* settings). Idempotent and safe to run
concurrently: all pending files apply in one transaction under an advisory lock, and each applied
file is recorded in schema_migrations.
"""

from __future__ import annotations

import sys
from importlib import resources

import psycopg

from abtest.db import Connection, get_database
from abtest.errors import Unavailable

# Any constant works; it only has to be the same for every migrate process.
_LOCK_KEY = 7_412_039_551


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every migration, in order. The version is the file name without .sql."""
    folder = resources.files("abtest.migrations")
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


def main() -> int:
    """Entry point of `python -m abtest.migrate`."""
    try:
        applied = get_database().run(apply_migrations, transaction=False)
    except (psycopg.Error, Unavailable) as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        return 1
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
