"""The database at its connection limit answers 503 with Retry-After (a refused connection is the
service's pool timeout: it holds one connection per container), never a 500."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from abtest import wiring
from tests.integration.conftest import call


@pytest.fixture
def full_database(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The service connects as a role whose connection limit is used up."""
    role = f"abtest_full_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(clean_db, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 0").format(sql.Identifier(role)))
    url = psycopg.conninfo.make_conninfo(clean_db, user=role, password="")
    monkeypatch.setenv("DATABASE_URL", url)
    wiring.reset()
    try:
        yield
    finally:
        monkeypatch.undo()
        wiring.reset()
        with psycopg.connect(clean_db, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/experiments", None),
        ("POST", "/api/v1/assignments", {"experiment_id": str(uuid.uuid4()), "user_id": "u"}),
        (
            "POST",
            "/api/v1/events",
            {
                "events": [
                    {"type": "exposure", "experiment_id": str(uuid.uuid4()), "user_id": "u", "event_id": "e"}
                ]
            },
        ),
    ],
)
def test_no_connection_left_answers_503_retry_after(
    full_database: None, method: str, path: str, body: object
) -> None:
    answer = call(method, path, body)
    assert answer.status == 503, answer
    assert answer.json["error"] == "database_unavailable"
    assert answer.headers["Retry-After"] == "1"
