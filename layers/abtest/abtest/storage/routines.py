"""Routines: a hot statement kept as its Python constant and run as a PL/pgSQL function.

Why: PostgreSQL plans every statement it receives as text, and the hot path's statements are large CTEs
(planning them cost as much as running them). Protocol-level prepared statements would cache the plan,
but RDS Proxy pins a session that prepares one, so the connection keeps `prepare_threshold=None`. The
statements inside a PL/pgSQL function are planned once per session and kept (SPI plan cache), and a
call `SELECT * FROM f(...)` is planned in a few microseconds: the plan cache without PREPARE.

How (the one mechanism; the migration runner in abtest.storage.schema installs routines):

- The statement stays ONE Python constant in its repository module, with psycopg's `%(name)s`
  placeholders, and a `Routine` next to it names the function and declares the placeholders' SQL
  types in call order (`params`). Constructing a Routine checks that the placeholders and the declared
  parameters are the same names: an edit of the statement that adds a placeholder without declaring it
  fails at import, not in production.
- `Routine.call` is the text the repository sends: `SELECT * FROM name($1::type, ...)` with the
  same `%(name)s` parameters (one statement, one round trip, exactly as before).
- `install` (run by the migration runner under its advisory lock, in its transaction) creates the
  function from the constant: placeholders become `$1..$n`; the result columns are not declared by
  hand but described by the server (the statement is parsed with the declared parameter types,
  without running it); a function of that name with the same argument types is dropped first (its
  result columns may differ); one with another parameter list is left for the previous code version,
  whose warm containers keep calling it between the migration and the function update of a deploy
  (calls are positional with exact types, so they never pick the wrong one); and `schema_routines`
  records the digest of the definition.
  The runner installs a routine when its digest differs from the recorded one, or whenever a numbered
  migration was applied in the same run (a changed table may change the result types). So editing a
  routine's statement needs no numbered migration: the next migrate run (deploy, `make run`, the
  tests' session fixture) replaces the function, like Flyway's repeatable migrations.
- Per-function settings (`settings`) become `SET` clauses of the function, e.g. the plan cache mode;
  they apply inside the function only, so the session is never changed (no RDS Proxy pinning).

The body's semantics are the statement's: one statement, run with its own snapshot like any
statement in READ COMMITTED, so races between concurrent requests behave exactly as before.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from psycopg import pq, sql

from abtest.storage.database import Connection

# Bumped when the way a function is generated from its statement changes: every routine reinstalls.
MECHANISM_VERSION = "1"
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Routine:
    """A statement (with `%(name)s` placeholders) installed as the PL/pgSQL function `name`."""

    name: str
    statement: str
    params: tuple[tuple[str, str], ...]  # (placeholder, SQL type) in the function's argument order
    settings: Mapping[str, str] = field(default_factory=dict)  # SET clauses of the function

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"routine name {self.name!r} is not a plain lower-case SQL identifier")
        used = set(_PLACEHOLDER.findall(self.statement))
        declared = [param for param, _ in self.params]
        if len(set(declared)) != len(declared):
            raise ValueError(f"routine {self.name}: a parameter is declared twice: {declared}")
        if used != set(declared):
            raise ValueError(
                f"routine {self.name}: placeholders and declared parameters differ "
                f"(undeclared: {sorted(used - set(declared))}, unused: {sorted(set(declared) - used)})"
            )
        for key in self.settings:
            if not _NAME.match(key):
                raise ValueError(f"routine {self.name}: {key!r} is not a setting name")

    @property
    def call(self) -> str:
        """The statement the repository sends: the function's one row set, same parameters."""
        arguments = ", ".join(f"%({param})s::{sql_type}" for param, sql_type in self.params)
        return f"SELECT * FROM {self.name}({arguments})"

    def body(self) -> str:
        """The statement with positional parameters ($1..$n in declaration order), as run by the function."""
        position = {param: f"${i}" for i, (param, _) in enumerate(self.params, start=1)}
        # psycopg reads "%%" as a literal "%"; the function body gets the literal.
        return _PLACEHOLDER.sub(lambda m: position[m.group(1)], self.statement).replace("%%", "%")

    @property
    def digest(self) -> str:
        """What the installed function was made from: a different digest means reinstall."""
        source = "\n".join(
            [
                MECHANISM_VERSION,
                self.name,
                repr(self.params),
                repr(sorted(self.settings.items())),
                self.statement,
            ]
        )
        return hashlib.sha256(source.encode()).hexdigest()


def ensure_routines_table(conn: Connection) -> dict[str, str]:
    """Create schema_routines if needed; return {name: digest} of the installed routines."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_routines ("
        " name text PRIMARY KEY, digest text NOT NULL, installed_at timestamptz NOT NULL DEFAULT now())"
    )
    return {row["name"]: row["digest"] for row in conn.execute("SELECT name, digest FROM schema_routines")}


def install(conn: Connection, routine: Routine) -> None:
    """(Re)create the routine's function from its statement and record its digest (inside a transaction)."""
    columns = _result_columns(conn, routine)
    arguments = sql.SQL(", ").join(sql.SQL(sql_type) for _, sql_type in routine.params)
    # The same argument types: replaced (dropped first, since its result columns may differ). Another
    # parameter list is another function: the previous code version keeps calling it until its
    # containers are replaced (a deploy migrates before the functions update).
    conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}({})").format(sql.Identifier(routine.name), arguments))
    returns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(sql_type)) for name, sql_type in columns
    )
    settings = sql.SQL("").join(
        sql.SQL(" SET {} = {}").format(sql.Identifier(key), sql.Literal(value))
        for key, value in sorted(routine.settings.items())
    )
    # Result columns are PL/pgSQL variables too: `use_column` makes a bare name in the statement mean
    # the table's column, as it did in the plain statement. Parameters are unnamed ($n only).
    body = f"#variable_conflict use_column\nBEGIN\nRETURN QUERY\n{routine.body()};\nEND"
    conn.execute(
        sql.SQL(
            "CREATE FUNCTION {name}({arguments}) RETURNS TABLE ({returns})"
            " LANGUAGE plpgsql VOLATILE{settings} AS {body}"
        ).format(
            name=sql.Identifier(routine.name),
            arguments=arguments,
            returns=returns,
            settings=settings,
            body=sql.Literal(body),
        )
    )
    conn.execute(
        sql.SQL("COMMENT ON FUNCTION {}({}) IS {}").format(
            sql.Identifier(routine.name),
            arguments,
            sql.Literal(f"routine {routine.digest} (abtest.storage.routines; generated, do not edit)"),
        )
    )
    conn.execute(
        "INSERT INTO schema_routines (name, digest) VALUES (%s, %s)"
        " ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, installed_at = now()",
        (routine.name, routine.digest),
    )


def _result_columns(conn: Connection, routine: Routine) -> list[tuple[str, str]]:
    """(name, SQL type) of the statement's result columns, as the server describes them (not run)."""
    oids = [
        row["oid"]
        for row in conn.execute(
            "SELECT t::regtype::oid AS oid FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n",
            ([sql_type for _, sql_type in routine.params],),
        )
    ]
    pgconn = conn.pgconn
    # The unnamed prepared statement of the protocol, replaced by the next one: a parse and a describe,
    # never executed. (Only the migration session does this; the hot path never prepares anything.)
    prepared = pgconn.prepare(b"", routine.body().encode(), oids)
    if prepared.status != pq.ExecStatus.COMMAND_OK:
        raise RoutineError(routine.name, prepared.get_error_message())
    described = pgconn.describe_prepared(b"")
    if described.status != pq.ExecStatus.COMMAND_OK:
        raise RoutineError(routine.name, described.get_error_message())
    columns = [(described.fname(i) or b"").decode() for i in range(described.nfields)]
    types = [(described.ftype(i), described.fmod(i)) for i in range(described.nfields)]
    if not columns:
        raise RoutineError(routine.name, "the statement returns no columns")
    if len(set(columns)) != len(columns):
        raise RoutineError(routine.name, f"the statement's result columns are not unique: {columns}")
    names = [
        row["t"]
        for row in conn.execute(
            "SELECT format_type(o, m) AS t FROM unnest(%s::oid[], %s::int[]) WITH ORDINALITY AS u(o, m, n)"
            " ORDER BY n",
            ([oid for oid, _ in types], [mod for _, mod in types]),
        )
    ]
    return list(zip(columns, names, strict=True))


class RoutineError(Exception):
    """A routine's statement could not be turned into its function (the server's message says why)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"routine {name}: {message}")
