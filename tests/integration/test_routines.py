"""Routines against PostgreSQL: installed from the statement, replaced when it changes, never duplicated."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from abtest.storage.assignments import ENROLL
from abtest.storage.routines import Routine, RoutineError, ensure_routines_table, install
from abtest.storage.schema import ROUTINES, install_routines

NAME = "abtest_test_routine"


@pytest.fixture
def conn(clean_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(clean_db, autocommit=True, row_factory=dict_row) as connection:
        yield connection
        for signature in signatures(connection):
            connection.execute(f"DROP FUNCTION {signature}")
        connection.execute("DELETE FROM schema_routines WHERE name = %s", (NAME,))


def signatures(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT oid::regprocedure::text AS s FROM pg_proc WHERE proname = %s ORDER BY 1", (NAME,)
    ).fetchall()
    return [row["s"] for row in rows]


def test_a_changed_statement_replaces_the_function_and_its_signature(conn: psycopg.Connection) -> None:
    first = Routine(NAME, "SELECT %(a)s + 1 AS b, %(t)s AS t", params=(("a", "int"), ("t", "text")))
    with conn.transaction():
        install(conn, first)
    assert conn.execute(first.call, {"a": 41, "t": "x"}).fetchone() == {"b": 42, "t": "x"}
    assert signatures(conn) == [f"{NAME}(integer,text)"]

    same_types = Routine(
        NAME, "SELECT %(a)s - 1 AS c, %(t)s || '!' AS t", params=(("a", "int"), ("t", "text"))
    )
    with conn.transaction():
        install(conn, same_types)
    assert conn.execute(same_types.call, {"a": 43, "t": "x"}).fetchone() == {"c": 42, "t": "x!"}
    assert signatures(conn) == [f"{NAME}(integer,text)"]  # replaced, result columns and all

    second = Routine(NAME, "SELECT %(a)s * 2 AS doubled", params=(("a", "bigint"),))
    with conn.transaction():
        install(conn, second)
    assert conn.execute(second.call, {"a": 21}).fetchone() == {"doubled": 42}
    # The previous parameter list stays callable for the code version still running during a deploy.
    assert signatures(conn) == [f"{NAME}(bigint)", f"{NAME}(integer,text)"]
    assert conn.execute(same_types.call, {"a": 43, "t": "x"}).fetchone() == {"c": 42, "t": "x!"}
    recorded = conn.execute("SELECT digest FROM schema_routines WHERE name = %s", (NAME,)).fetchone()
    assert recorded == {"digest": second.digest}


def test_a_statement_the_server_refuses_is_an_error_naming_the_routine(conn: psycopg.Connection) -> None:
    broken = Routine(
        NAME, "SELECT no_such_column FROM experiments WHERE id = %(id)s", params=(("id", "uuid"),)
    )
    with pytest.raises(RoutineError, match=NAME), conn.transaction():
        install(conn, broken)
    assert signatures(conn) == []


def test_the_migration_runner_installs_only_what_changed(clean_db: str) -> None:
    with psycopg.connect(clean_db, autocommit=True, row_factory=dict_row) as conn:
        with conn.transaction():
            assert install_routines(conn) == []  # the session fixture's migrate run installed them
            installed = ensure_routines_table(conn)
        assert installed == {routine.name: routine.digest for routine in ROUTINES}
        with conn.transaction():
            conn.execute("UPDATE schema_routines SET digest = 'stale' WHERE name = %s", (ENROLL.name,))
            assert install_routines(conn) == [ENROLL.name]
        with conn.transaction():
            assert sorted(install_routines(conn, reinstall_all=True)) == sorted(r.name for r in ROUTINES)
        definition = conn.execute(
            "SELECT obj_description(%s::regproc, 'pg_proc') AS d", (ENROLL.name,)
        ).fetchone()
        assert definition is not None
        assert ENROLL.digest in definition["d"]
