"""The enrollment scenario table (tests/scenarios/enrollment.py) against the real enrollment statement
on PostgreSQL (the routine abtest_enroll, through AssignmentRepository), races included; the unit
suite runs the same table against FakeStore."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from abtest.domain.assignment import Enrollment, EnrollRequest
from abtest.storage.assignments import AssignmentRepository
from abtest.storage.database import Connection, Database, get_database
from tests.scenarios.enrollment import SCENARIOS, USER, Rows, Scenario
from tests.scenarios.enrollment_runner import PROFILE, World, play

T = TypeVar("T")
RACE_TIMEOUT_SECONDS = 10.0


class OnConnection:
    """Stands in for Database: runs the repository's work on one connection the test controls (so a
    statement can be left in an open transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def run(self, work: Callable[[Connection], T], **_: Any) -> T:
        return work(self.conn)


def repository_on(conn: Connection) -> AssignmentRepository:
    return AssignmentRepository(cast(Database, OnConnection(conn)))


class PostgresScenarioStore:
    """The test database seeded with a scenario's rows; enrollments run the real statement."""

    can_race = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.repository = AssignmentRepository(get_database())

    def connect(self) -> Connection:
        return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, prepare_threshold=None)

    def seed(self, world: World) -> None:
        given = world.given
        with self.connect() as conn, conn.transaction():
            for surface in sorted({e.surface for e in world.experiments.values()}):
                conn.execute("INSERT INTO namespaces (surface) VALUES (%s)", (surface,))
            for e in world.experiments.values():
                conn.execute(
                    "INSERT INTO experiments (id, name, status, traffic_allocation, salt, surface,"
                    " namespace_share, targeting, started_at, completed_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        e.id,
                        e.name,
                        e.status.value,
                        e.traffic_allocation,
                        e.salt,
                        e.surface,
                        e.namespace_share,
                        Jsonb(e.targeting),
                        e.started_at,
                        e.completed_at,
                    ),
                )
                for v in e.variants:
                    conn.execute(
                        "INSERT INTO variants (id, experiment_id, position, name, weight, config)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        (v.id, e.id, v.position, v.name, v.weight, Jsonb(v.config)),
                    )
            for variant in given.assignments:
                conn.execute(
                    "INSERT INTO assignments (experiment_id, user_id, variant_id) VALUES (%s, %s, %s)",
                    (world.id_of(variant.split(".")[0]), USER, world.id_of(variant)),
                )
            for key in given.members:
                conn.execute(
                    "INSERT INTO namespace_members (surface, user_id, experiment_id) VALUES (%s, %s, %s)",
                    (world.experiments[key].surface, USER, world.id_of(key)),
                )
            for age, variant in enumerate(reversed(given.overrides), start=1):  # oldest first
                conn.execute(
                    "INSERT INTO experiment_overrides (experiment_id, user_id, variant_id, created_at)"
                    " VALUES (%s, %s, %s, now() - make_interval(mins => %s))",
                    (world.id_of(variant.split(".")[0]), USER, world.id_of(variant), age),
                )
            for h in world.holdouts.values():
                conn.execute(
                    "INSERT INTO holdouts (id, name, salt, percent, surfaces, status)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (h.id, h.name, h.salt, h.percent, h.surfaces, h.status.value),
                )
            for key, group in given.holdout_members:
                conn.execute(
                    'INSERT INTO holdout_members (holdout_id, user_id, "group") VALUES (%s, %s, %s)',
                    (world.id_of(key), USER, group),
                )
            if given.profile:
                conn.execute(
                    "INSERT INTO user_profiles (user_id, embedding) VALUES (%s, %s)", (USER, list(PROFILE))
                )

    def enroll(self, request: EnrollRequest) -> Enrollment:
        return self.repository.enroll(request)

    def race(self, first: EnrollRequest, second: EnrollRequest) -> tuple[Enrollment, Enrollment]:
        with self.connect() as winner, self.connect() as loser, self.connect() as watcher:
            lost: list[Enrollment] = []
            failed: list[BaseException] = []

            def run_loser() -> None:
                try:
                    lost.append(repository_on(loser).enroll(second))
                except BaseException as exc:  # re-raised in the test's thread
                    failed.append(exc)

            with winner.transaction():
                won = repository_on(winner).enroll(first)
                thread = threading.Thread(target=run_loser)
                thread.start()
                # Commit only once the second statement waits on the first one's rows.
                deadline = time.monotonic() + RACE_TIMEOUT_SECONDS
                while not self._waiting_on_a_lock(watcher, loser.info.backend_pid):
                    assert not lost, "the second statement did not wait for the first"
                    assert not failed, failed
                    assert time.monotonic() < deadline, "the second statement never waited on a lock"
                    time.sleep(0.01)
            thread.join(RACE_TIMEOUT_SECONDS)
            if failed:
                raise failed[0]
            assert lost, "the second statement did not finish"
            return won, lost[0]

    @staticmethod
    def _waiting_on_a_lock(watcher: Connection, pid: int) -> bool:
        row = watcher.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        return row is not None and row["wait_event_type"] == "Lock"

    def rows(self, world: World) -> Rows:
        with self.connect() as conn:

            def ids(query: str) -> list[Any]:
                return [next(iter(row.values())) for row in conn.execute(query.encode(), (USER,)).fetchall()]

            def count(table: str) -> int:
                row = conn.execute(
                    f"SELECT count(*) AS n FROM {table} WHERE user_id = %s".encode(), (USER,)
                ).fetchone()
                assert row is not None
                return int(row["n"])

            members = conn.execute(
                'SELECT holdout_id, "group" FROM holdout_members WHERE user_id = %s', (USER,)
            ).fetchall()
            return Rows(
                frozenset(
                    world.names[i] for i in ids("SELECT variant_id FROM assignments WHERE user_id = %s")
                ),
                frozenset(
                    world.names[i]
                    for i in ids("SELECT experiment_id FROM namespace_members WHERE user_id = %s")
                ),
                count("exposures"),
                count("override_exposures"),
                frozenset((world.names[m["holdout_id"]], m["group"]) for m in members),
            )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_the_statement_enrolls_as_the_table_says(scenario: Scenario, clean_db: str) -> None:
    play(scenario, PostgresScenarioStore(clean_db))
