"""The connection layer against a real PostgreSQL: reconnect, timeouts, outage, migrations, secrets."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws

from abtest import wiring
from abtest.errors import Unavailable
from abtest.settings import settings_from_env
from abtest.storage.database import Database, connection_params
from abtest.storage.schema import apply_migrations, migration_files
from tests.integration.test_experiments_api import BASE, experiment_body

CLOSED_PORT_URL = "postgresql://postgres@127.0.0.1:9/postgres"


def test_reconnects_once_after_the_server_drops_the_connection(clean_db: str) -> None:
    db = Database(lambda: {"conninfo": clean_db})
    first_pid = db.run(lambda conn: conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])
    with psycopg.connect(clean_db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first_pid,))

    second_pid = db.run(lambda conn: conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])

    assert second_pid != first_pid


def test_work_that_must_not_be_retried_is_unavailable_after_a_drop(clean_db: str) -> None:
    db = Database(lambda: {"conninfo": clean_db})
    pid = db.run(lambda conn: conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])
    with psycopg.connect(clean_db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    attempts: list[int] = []

    def write(conn: Any) -> None:
        attempts.append(1)
        conn.execute("SELECT 1")

    with pytest.raises(Unavailable):
        db.run(write, transaction=False, retry=False)
    assert attempts == [1]
    db.run(write, transaction=False, retry=False)  # the next request reconnects
    assert attempts == [1, 1]


def test_an_idle_connection_is_checked_before_use(clean_db: str) -> None:
    import abtest.storage.database

    db = Database(lambda: {"conninfo": clean_db})
    first = db.run(lambda conn: conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])
    with psycopg.connect(clean_db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    db._local.used_at -= abtest.storage.database.IDLE_CHECK_SECONDS + 1  # as if the container had been frozen
    second = db.run(
        lambda conn: conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"], retry=False
    )
    assert second != first


def test_statement_timeout_is_unavailable_and_the_connection_survives(clean_db: str) -> None:
    db = Database(lambda: {"conninfo": clean_db}, statement_timeout_ms=100)
    with pytest.raises(Unavailable, match="in time"):
        db.run(lambda conn: conn.execute("SELECT pg_sleep(2)"))
    assert db.run(lambda conn: conn.execute("SELECT 1 AS one").fetchone()) == {"one": 1}


def test_an_unreachable_server_is_unavailable() -> None:
    db = Database(lambda: {"conninfo": CLOSED_PORT_URL, "connect_timeout": 1})
    with pytest.raises(Unavailable):
        db.run(lambda conn: conn.execute("SELECT 1"))


def test_each_thread_gets_its_own_connection(clean_db: str) -> None:
    db = Database(lambda: {"conninfo": clean_db})
    pids: list[int] = []

    def work() -> None:
        pids.append(db.run(lambda conn: conn.execute("SELECT pg_backend_pid() AS p").fetchone()["p"]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(pids)) == 4


def test_migrations_are_idempotent(clean_db: str) -> None:
    db = Database(lambda: {"conninfo": clean_db})
    assert db.run(apply_migrations, transaction=False) == []
    versions = [version for version, _ in migration_files()]
    assert versions == sorted(versions)
    assert versions[0] == "0001_experiments"
    with psycopg.connect(clean_db) as conn:
        recorded = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert recorded == versions


def test_database_constraints_back_the_models(clean_db: str) -> None:
    bad_rows = [
        "INSERT INTO experiments (id, name, salt, traffic_allocation)"
        " VALUES (gen_random_uuid(), 'a', 's', 1.5)",
        "INSERT INTO experiments (id, name, salt, status) VALUES (gen_random_uuid(), 'a', 's', 'archived')",
        "INSERT INTO experiments (id, name, salt) VALUES (gen_random_uuid(), '', 's')",
    ]
    with psycopg.connect(clean_db, autocommit=True) as conn:
        for statement in bad_rows:
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(statement.encode())


@mock_aws
def test_secrets_manager_path_connects_to_a_real_server(clean_db: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(clean_db)
    session = boto3.session.Session(region_name="us-east-1")
    arn = session.client("secretsmanager").create_secret(
        Name="abtest/local",
        SecretString=json.dumps(
            {
                "username": info.get("user", "postgres"),
                "password": "",
                "host": info.get("host", "127.0.0.1"),
                "port": int(info.get("port") or 5432),
                "dbname": info["dbname"],
            }
        ),
    )["ARN"]
    settings = settings_from_env({"DB_SECRET_ARN": arn, "AWS_REGION": "us-east-1"})
    db = Database(lambda: connection_params(settings, session))
    assert db.run(lambda conn: conn.execute("SELECT current_database() AS d").fetchone()) == {
        "d": info["dbname"]
    }


@pytest.fixture
def database_down(clean_db: str) -> Any:
    """Point the handlers at a port where nothing listens, then restore."""
    os.environ["DATABASE_URL"] = CLOSED_PORT_URL
    os.environ["DB_CONNECT_TIMEOUT"] = "1"
    wiring.reset()
    yield
    os.environ["DATABASE_URL"] = clean_db
    del os.environ["DB_CONNECT_TIMEOUT"]
    wiring.reset()


def test_database_down_is_a_json_503(api: Any, database_down: None) -> None:
    for method, path, body in [
        ("POST", BASE, experiment_body()),
        ("GET", BASE, None),
        ("GET", f"{BASE}/00000000-0000-4000-8000-000000000000", None),
    ]:
        response = api(method, path, body)
        assert response.status == 503, response
        assert response.json["error"] == "database_unavailable"
        assert response.headers["Retry-After"] == "1"


def test_handler_recovers_after_its_connection_is_killed(api: Any, clean_db: str) -> None:
    created = api("POST", BASE, experiment_body()).json
    with psycopg.connect(clean_db, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    response = api("GET", f"{BASE}/{created['id']}")
    assert response.status == 200
    assert response.json["id"] == created["id"]


def test_outage_recommendations_fail_open_writes_refuse_and_recovery_needs_no_restart(
    api: Any, sql: Any, outage: Any
) -> None:
    from abtest.storage import CatalogRepository
    from abtest.storage.database import get_database
    from localdev.seed import demo_catalog

    items, profiles = demo_catalog(n_items=50, n_users=5)
    CatalogRepository(get_database()).replace_catalog(items, profiles)
    created = api("POST", BASE, experiment_body(traffic_allocation=1.0)).json
    api("PUT", f"{BASE}/{created['id']}/status", {"status": "running"})
    warm = api("POST", "/api/v1/recommendations", {"user_id": "user-1", "limit": 3})
    assert warm.json["degraded"] is False
    assert warm.json["experiment_variant"] is not None

    outage(True)
    degraded = api("POST", "/api/v1/recommendations", {"user_id": "user-2", "limit": 3})
    assert degraded.status == 200
    assert degraded.json["degraded"] is True
    assert len(degraded.json["recommendations"]) == 3
    assert {i["experiment_variant"] for i in degraded.json["recommendations"]} == {None}
    refused = api("POST", "/api/v1/assignments", {"user_id": "user-2", "experiment_id": created["id"]})
    assert (refused.status, refused.json["error"]) == (503, "database_unavailable")
    assert api("POST", BASE, experiment_body(name="during_outage")).status == 503

    outage(False)
    recovered = api("POST", "/api/v1/recommendations", {"user_id": "user-2", "limit": 3})
    assert recovered.json["degraded"] is False
    assert (
        api("POST", "/api/v1/assignments", {"user_id": "user-2", "experiment_id": created["id"]}).status
        == 200
    )
    assert sql("SELECT name FROM experiments") == [(created["name"],)]
    assert sql("SELECT user_id FROM assignments ORDER BY user_id") == [("user-1",), ("user-2",)]
