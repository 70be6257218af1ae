"""MigrateFunction, the CloudFormation custom resource, against a real PostgreSQL.

CloudFormation is played by an HTTP server on 127.0.0.1 that records the PUT to the ResponseURL: every
request must be answered, SUCCESS or FAILED with a reason, and before the function's timeout.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from abtest import wiring
from abtest.storage import schema
from localdev.lambda_events import LocalLambdaContext
from localdev.postgres import PROJECT_ROOT
from localdev.template import Route, load_template

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
CLOSED_PORT_URL = "postgresql://postgres@127.0.0.1:9/postgres"


@dataclass
class Put:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeCloudFormation:
    """Where the handler sends its answers: `url` is the ResponseURL, `answers` what arrived."""

    url: str
    answers: list[Put] = field(default_factory=list)

    def only_answer(self) -> dict[str, Any]:
        assert len(self.answers) == 1, self.answers
        return self.answers[0].body


class _Recorder(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        self.server.fake.answers.append(Put(self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
        pass


@pytest.fixture
def cloudformation() -> Iterator[FakeCloudFormation]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    fake = FakeCloudFormation(f"http://127.0.0.1:{server.server_address[1]}/stack-response?signature=x")
    server.fake = fake  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def handler() -> Handler:
    """The handler loaded as Lambda would, from the template's CodeUri and Handler."""
    properties = load_template()["Resources"]["MigrateFunction"]["Properties"]
    code_uri = PROJECT_ROOT / properties["CodeUri"]
    return Route("-", "-", "MigrateFunction", code_uri, properties["Handler"]).load()


@pytest.fixture
def point_at(database_url: str) -> Iterator[Callable[[str], None]]:
    """Point the function's settings at another database; the test database again afterwards."""

    def switch(url: str) -> None:
        os.environ["DATABASE_URL"] = url
        wiring.reset()

    yield switch
    switch(database_url)


@pytest.fixture
def role_timeout_reset(database_url: str) -> Iterator[None]:
    yield
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} RESET statement_timeout").format(
                sql.Identifier(conn.info.dbname)
            )
        )


@pytest.fixture
def empty_database(database_url: str, point_at: Callable[[str], None]) -> Iterator[str]:
    """A new, unmigrated database on the test server, which the function is pointed at."""
    name = f"abtest_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test role may not create databases")
    url = make_conninfo(database_url, dbname=name)
    point_at(url)
    yield url
    point_at(database_url)
    with psycopg.connect(database_url, autocommit=True) as admin:
        # The migrations set a role statement_timeout here; dropping may take longer on a loaded machine.
        admin.execute("SET statement_timeout = 0")
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def cfn_event(request_type: str, response_url: str, **properties: str) -> dict[str, Any]:
    """A CloudFormation custom resource request as Lambda receives it."""
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:abtest-MigrateFunction",
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/abtest/0f1e2d3c",
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "DatabaseMigrations",
        "ResourceType": "Custom::DatabaseMigrations",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:...", **properties},
    }
    if request_type != "Create":
        event["PhysicalResourceId"] = "abtest-database-migrations"
    if request_type == "Update":
        event["OldResourceProperties"] = {"ServiceToken": "arn:aws:lambda:...", "StatementTimeoutMs": "5000"}
    return event


def context(timeout_ms: int = 60_000) -> LocalLambdaContext:
    return LocalLambdaContext(function_name="MigrateFunction", timeout_ms=timeout_ms)


def role_statement_timeout(url: str) -> str:
    """What a new session of the test's role in this database starts with."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW statement_timeout").fetchone()
    assert row is not None
    return str(row[0])


def test_create_answers_success_and_sets_the_role_statement_timeout(
    clean_db: str, handler: Handler, cloudformation: FakeCloudFormation, role_timeout_reset: None
) -> None:
    # The database's own default (5 s): concurrent test runs on this server see no difference.
    event = cfn_event("Create", cloudformation.url, StatementTimeoutMs="5000")

    handler(event, context())

    answer = cloudformation.only_answer()
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["RequestId"] == event["RequestId"]
    assert answer["StackId"] == event["StackId"]
    assert answer["LogicalResourceId"] == "DatabaseMigrations"
    assert answer["PhysicalResourceId"] == "abtest-database-migrations"
    assert answer["Data"] == {"Applied": "", "StatementTimeoutMs": "5000"}  # the fixture migrated already
    assert cloudformation.answers[0].path == "/stack-response?signature=x"
    assert cloudformation.answers[0].headers["Content-Type"] == ""
    with psycopg.connect(clean_db) as conn:
        row = conn.execute(
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
            " WHERE d.datname = current_database() AND s.setrole = current_user::regrole"
        ).fetchone()
    assert row is not None
    assert "statement_timeout=5000" in row[0]


def test_create_then_update_on_an_empty_database(
    empty_database: str, handler: Handler, cloudformation: FakeCloudFormation
) -> None:
    handler(cfn_event("Create", cloudformation.url, StatementTimeoutMs="7000"), context())

    created = cloudformation.only_answer()
    versions = [version for version, _ in schema.migration_files()]
    assert created["Status"] == "SUCCESS", created["Reason"]
    assert created["Data"] == {"Applied": ",".join(versions), "StatementTimeoutMs": "7000"}
    with psycopg.connect(empty_database) as conn:
        stored = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert stored == versions
    assert role_statement_timeout(empty_database) == "7s"

    cloudformation.answers.clear()
    handler(cfn_event("Update", cloudformation.url, StatementTimeoutMs="2500"), context())

    updated = cloudformation.only_answer()
    assert updated["Status"] == "SUCCESS", updated["Reason"]
    assert updated["PhysicalResourceId"] == "abtest-database-migrations"
    assert updated["Data"]["Applied"] == ""
    assert role_statement_timeout(empty_database) == "2500ms"


def test_without_the_property_the_role_gets_the_functions_own_timeout(
    empty_database: str, handler: Handler, cloudformation: FakeCloudFormation
) -> None:
    handler(cfn_event("Create", cloudformation.url), context())

    assert cloudformation.only_answer()["Data"]["StatementTimeoutMs"] == "5000"  # DB_STATEMENT_TIMEOUT_MS
    assert role_statement_timeout(empty_database) == "5s"


def test_delete_succeeds_without_touching_the_database(
    database_url: str,
    handler: Handler,
    cloudformation: FakeCloudFormation,
    point_at: Callable[[str], None],
) -> None:
    point_at(CLOSED_PORT_URL)

    handler(cfn_event("Delete", cloudformation.url), context())

    answer = cloudformation.only_answer()
    assert (answer["Status"], answer["Data"]) == ("SUCCESS", {})


def test_an_unreachable_database_answers_failed_before_the_timeout(
    database_url: str,
    handler: Handler,
    cloudformation: FakeCloudFormation,
    point_at: Callable[[str], None],
) -> None:
    point_at(CLOSED_PORT_URL)
    started = time.monotonic()

    handler(cfn_event("Create", cloudformation.url), context(timeout_ms=4000))

    answer = cloudformation.only_answer()
    assert answer["Status"] == "FAILED"
    assert "Unavailable" in answer["Reason"]
    assert "log stream" in answer["Reason"]
    assert time.monotonic() - started < 4


def test_a_migration_that_cannot_finish_answers_failed_before_the_timeout(
    clean_db: str, handler: Handler, cloudformation: FakeCloudFormation
) -> None:
    # Another migrate run holds the migrations' advisory lock for longer than the function may wait.
    with psycopg.connect(clean_db, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (schema._LOCK_KEY,))
        started = time.monotonic()

        handler(cfn_event("Create", cloudformation.url), context(timeout_ms=3000))

        elapsed = time.monotonic() - started
    answer = cloudformation.only_answer()
    assert answer["Status"] == "FAILED"
    assert elapsed < 3


def test_an_invalid_timeout_property_answers_failed(
    clean_db: str, handler: Handler, cloudformation: FakeCloudFormation
) -> None:
    handler(cfn_event("Create", cloudformation.url, StatementTimeoutMs="50"), context())

    answer = cloudformation.only_answer()
    assert answer["Status"] == "FAILED"
    assert "StatementTimeoutMs" in answer["Reason"]


def test_a_lost_answer_is_logged_not_raised(handler: Handler) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Recorder) as closed:
        port = closed.server_address[1]  # nothing listens once the server is closed
    started = time.monotonic()

    answer = handler(cfn_event("Delete", f"http://127.0.0.1:{port}/"), context())

    assert answer["Status"] == "SUCCESS"
    assert time.monotonic() - started < 5
