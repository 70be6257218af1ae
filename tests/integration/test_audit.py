"""The audit log against a real PostgreSQL: every admin write appends its entry in its own transaction
(a failed write leaves none, a failed entry fails the write), entries are append-only for the
application's role, and /history and /audit read them newest first, page by page."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from abtest.domain.audit import SYSTEM_ACTOR, Actor, AuditEntry
from abtest.storage.audit import AuditWriteFailed, record
from abtest.storage.database import Connection, Database
from abtest.storage.schema import apply_migrations
from localdev.lambda_events import LocalLambdaContext, http_api_event
from localdev.template import match
from tests.integration.conftest import ROUTES, ApiResponse, authorizer
from tests.integration.test_experiments_api import BASE, create, experiment_body, set_status

AUDIT = "/api/v1/audit"


def history(api: Any, experiment_id: str, query: str = "") -> list[dict[str, Any]]:
    response = api("GET", f"{BASE}/{experiment_id}/history", query=query)
    assert response.status == 200, response
    events: list[dict[str, Any]] = response.json["events"]
    return events


def actions(events: list[dict[str, Any]]) -> list[str]:
    return [event["action"] for event in events]


def call_with_headers(
    method: str, path: str, body: Any, headers: dict[str, str], claims: dict[str, Any] | None = None
) -> ApiResponse:
    """Like the `api` fixture, with extra request headers and the token's claims of choice."""
    found = match(ROUTES, method, path)
    assert found is not None
    route, params = found
    context = authorizer(("abtest/admin", "abtest/read"))
    if claims is not None:
        context["jwt"]["claims"] = claims
    event = http_api_event(
        method,
        path,
        route_key=route.route_key,
        path_parameters=params,
        headers={"content-type": "application/json", **headers},
        body=None if body is None else json.dumps(body),
        authorizer=context,
    )
    return ApiResponse(route.load()(event, LocalLambdaContext(function_name=route.function)))


# --- every admin write, with its subject -----------------------------------------------------------


def test_every_experiment_write_is_in_its_history_with_the_tokens_subject(api: Any) -> None:
    # Given a draft taking half of its surface
    exp = create(api, name="audited", surface="audit-a", namespace_share=0.5)
    ident = exp["id"]
    # When it is edited, started, grown, paused, resumed and completed
    assert api("PATCH", f"{BASE}/{ident}", {"description": "edited"}).status == 200
    assert set_status(api, ident, "running").status == 200
    assert api("PATCH", f"{BASE}/{ident}", {"namespace_share": 0.75}).status == 200
    for status in ("paused", "running", "completed"):
        assert set_status(api, ident, status).status == 200

    # Then each change is an entry, newest first, by the token's subject
    events = history(api, ident)
    assert actions(events) == [
        "namespace.release",
        "experiment.complete",
        "experiment.resume",
        "experiment.pause",
        "namespace.allocate",
        "experiment.update",
        "namespace.allocate",
        "experiment.start",
        "experiment.update",
        "experiment.create",
    ]
    assert {(e["actor"]["type"], e["actor"]["id"]) for e in events} == {("user", "test-client")}
    assert all(e["request_id"] for e in events)
    by_action = {e["action"]: e for e in reversed(events)}  # the newest of each action wins
    created = events[-1]
    assert (created["entity_type"], created["entity_id"], created["before"]) == ("experiment", ident, None)
    assert created["after"]["name"] == "audited"
    assert created["after"]["variants"][1]["config"] == {"lora_boost": 0.5}
    edit = events[-2]
    assert (edit["before"], edit["after"]) == (
        {"description": "Testing LoRA boost levels"},
        {"description": "edited"},
    )
    assert edit["changes"] == [
        {"field": "description", "before": "Testing LoRA boost levels", "after": "edited"}
    ]
    start = by_action["experiment.start"]
    assert start["before"]["status"] == "draft"
    assert (start["after"]["status"], start["after"]["started_at"] is not None) == ("running", True)
    first_allocation = events[-4]
    assert (first_allocation["entity_type"], first_allocation["entity_id"]) == ("namespace", "audit-a")
    assert (first_allocation["parent_type"], first_allocation["parent_id"]) == ("experiment", ident)
    assert (first_allocation["before"]["buckets"], first_allocation["after"]["buckets"]) == (0, 5000)
    growth = by_action["namespace.allocate"]
    assert (growth["before"]["buckets"], growth["after"]["buckets"]) == (5000, 7500)
    assert events[5]["changes"] == [{"field": "namespace_share", "before": 0.5, "after": 0.75}]
    release = by_action["namespace.release"]
    assert (release["before"]["buckets"], release["after"]["buckets"]) == (7500, 0)
    complete = by_action["experiment.complete"]
    assert [c["field"] for c in complete["changes"]] == ["completed_at", "status"]


def test_a_deleted_draft_keeps_its_history(api: Any) -> None:
    exp = create(api, name="short_lived")
    assert api("DELETE", f"{BASE}/{exp['id']}").status == 204
    assert api("GET", f"{BASE}/{exp['id']}").status == 404

    events = history(api, exp["id"])
    assert actions(events) == ["experiment.delete", "experiment.create"]
    assert events[0]["before"]["name"] == "short_lived"
    assert events[0]["after"] is None


def test_history_of_an_unknown_experiment_is_404(api: Any) -> None:
    response = api("GET", f"{BASE}/{uuid.uuid4()}/history")
    assert (response.status, response.json["error"]) == (404, "experiment_not_found")
    assert api("GET", f"{BASE}/not-a-uuid/history").status == 404


def test_an_experiment_from_before_the_audit_log_has_an_empty_history(api: Any, sql: Any) -> None:
    exp = create(api, name="older")
    # Simulate an experiment created before migration 0010: no entries at all (as superuser: tests only).
    sql("DELETE FROM audit_events RETURNING id")
    response = api("GET", f"{BASE}/{exp['id']}/history")
    assert (response.status, response.json) == (200, {"events": [], "next_cursor": None})


def test_no_ops_record_nothing(api: Any, sql: Any) -> None:
    exp = create(api, name="noop", description="same")
    assert api("PATCH", f"{BASE}/{exp['id']}", {"description": "same"}).status == 200
    assert set_status(api, exp["id"], "draft").status == 200
    assert actions(history(api, exp["id"])) == ["experiment.create"]


def test_the_change_reason_and_a_client_token_are_recorded(api: Any) -> None:
    exp = create(api, name="reasoned")
    claims = {"sub": "svc-deployer", "client_id": "svc-deployer", "scope": "abtest/admin"}
    response = call_with_headers(
        "PATCH",
        f"{BASE}/{exp['id']}",
        {"traffic_allocation": 0.9},
        {"X-Change-Reason": "ticket EXP-42: more traffic"},
        claims,
    )
    assert response.status == 200, response
    entry = history(api, exp["id"])[0]
    assert entry["reason"] == "ticket EXP-42: more traffic"
    assert (entry["actor"]["type"], entry["actor"]["id"]) == ("client", "svc-deployer")
    assert entry["actor"]["scopes"] == ["abtest/admin", "abtest/read"]


def test_an_unusable_change_reason_is_a_422_and_changes_nothing(api: Any, sql: Any) -> None:
    response = call_with_headers(
        "POST", BASE, experiment_body(name="too_long"), {"x-change-reason": "x" * 1001}
    )
    assert (response.status, response.json["field"]) == (422, "X-Change-Reason")
    assert sql("SELECT count(*) FROM experiments") == [(0,)]
    assert sql("SELECT count(*) FROM audit_events") == [(0,)]


# --- one transaction ------------------------------------------------------------------------------


def test_a_failing_write_leaves_no_entry(api: Any, sql: Any) -> None:
    exp = create(api, name="first", surface="audit-b")
    assert api("POST", BASE, experiment_body(name="first")).status == 409  # duplicate name
    assert set_status(api, exp["id"], "paused").status == 409  # invalid transition
    assert api("PATCH", f"{BASE}/{exp['id']}", {"name": "first", "traffic_allocation": 2}).status == 422
    # A second experiment asking for a share its surface lacks stays a draft, and nothing is recorded.
    assert set_status(api, exp["id"], "running").status == 200
    other = create(api, name="second", surface="audit-b", namespace_share=0.5)
    assert set_status(api, other["id"], "running").status == 409
    assert actions(history(api, other["id"])) == ["experiment.create"]
    assert sql("SELECT action FROM audit_events ORDER BY id") == [
        ("experiment.create",),
        ("experiment.start",),
        ("namespace.allocate",),
        ("experiment.create",),
    ]


@pytest.fixture
def audit_refuses(clean_db: str) -> Iterator[Any]:
    """Make the database refuse audit entries of one action (a real constraint), then allow them again."""
    added: list[str] = []

    def refuse(action: str) -> None:
        name = f"test_refuse_{len(added)}"
        with psycopg.connect(clean_db, autocommit=True) as conn:
            conn.execute(
                pgsql.SQL("ALTER TABLE audit_events ADD CONSTRAINT {} CHECK (action <> {}) NOT VALID").format(
                    pgsql.Identifier(name), pgsql.Literal(action)
                )
            )
        added.append(name)

    yield refuse
    with psycopg.connect(clean_db, autocommit=True) as conn:
        for name in added:
            conn.execute(
                pgsql.SQL("ALTER TABLE audit_events DROP CONSTRAINT {}").format(pgsql.Identifier(name))
            )


def test_a_refused_entry_rolls_the_change_back(api: Any, sql: Any, audit_refuses: Any) -> None:
    exp = create(api, name="guarded", surface="audit-c")
    audit_refuses("experiment.create")
    audit_refuses("experiment.start")

    created = api("POST", BASE, experiment_body(name="never_stored"))
    started = set_status(api, exp["id"], "running")

    assert (created.status, created.json["error"]) == (500, "internal_error")
    assert (started.status, started.json["error"]) == (500, "internal_error")
    assert sql("SELECT name, status FROM experiments") == [("guarded", "draft")]
    # The start's buckets were rolled back with it.
    assert sql("SELECT count(*) FROM namespace_buckets WHERE experiment_id IS NOT NULL") == [(0,)]
    assert sql("SELECT action FROM audit_events") == [("experiment.create",)]


def test_record_appends_inside_the_callers_transaction(clean_db: str, sql: Any) -> None:
    db = Database(lambda: {"conninfo": clean_db})
    entry = AuditEntry(actor=SYSTEM_ACTOR, action="thing.touch", entity_type="thing", entity_id="t-1")

    class Boom(Exception):
        pass

    def fails_after_recording(conn: Connection) -> None:
        record(conn, entry)
        raise Boom

    with pytest.raises(Boom):
        db.run(fails_after_recording)
    assert sql("SELECT count(*) FROM audit_events") == [(0,)]

    entry_id = db.run(lambda conn: record(conn, entry))
    assert sql("SELECT id, action, actor_type, actor_id FROM audit_events") == [
        (entry_id, "thing.touch", "system", "system")
    ]
    # Outside a transaction an entry would commit apart from its change: refused.
    with pytest.raises(AuditWriteFailed):
        db.run(lambda conn: record(conn, entry), transaction=False)
    assert sql("SELECT count(*) FROM audit_events") == [(1,)]
    db.close()


# --- append-only ---------------------------------------------------------------------------------


@pytest.fixture
def app_role_database(database_url: str) -> Iterator[str]:
    """A fresh database owned by a non-superuser role that ran the migrations itself, as the
    application's role does in AWS (a superuser would ignore every privilege)."""
    suffix = uuid.uuid4().hex[:10]
    role, name = f"abtest_audit_role_{suffix}", f"abtest_audit_{suffix}"
    admin_url = psycopg.conninfo.make_conninfo(database_url, dbname="postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(pgsql.Identifier(role)))
        admin.execute(
            pgsql.SQL("CREATE DATABASE {} OWNER {}").format(pgsql.Identifier(name), pgsql.Identifier(role))
        )
    url = psycopg.conninfo.make_conninfo(database_url, dbname=name, user=role)
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))
            admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role)))


def test_the_application_role_can_append_but_never_update_or_delete(app_role_database: str) -> None:
    db = Database(lambda: {"conninfo": app_role_database})
    db.run(apply_migrations, transaction=False)
    actor = Actor(type="user", id="alice")
    entry = AuditEntry(actor=actor, action="thing.touch", entity_type="thing", entity_id="t-1")
    entry_id = db.run(lambda conn: record(conn, entry))

    with psycopg.connect(app_role_database, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE audit_events SET actor_id = 'mallory' WHERE id = %s", (entry_id,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM audit_events WHERE id = %s", (entry_id,))
        assert conn.execute("SELECT actor_id FROM audit_events").fetchall() == [("alice",)]
        # The tests' reset between tests still works for this role (TRUNCATE is kept on purpose).
        conn.execute("TRUNCATE audit_events")
        assert conn.execute("SELECT count(*) FROM audit_events").fetchone() == (0,)
    db.close()


# --- reading: pagination and filters -------------------------------------------------------------


def test_history_pages_newest_first_without_gaps_or_repeats(api: Any) -> None:
    exp = create(api, name="paged")
    for i in range(6):
        assert api("PATCH", f"{BASE}/{exp['id']}", {"description": f"edit {i}"}).status == 200
    everything = history(api, exp["id"], "limit=100")
    assert len(everything) == 7

    seen: list[dict[str, Any]] = []
    query = "limit=3"
    while True:
        page = api("GET", f"{BASE}/{exp['id']}/history", query=query).json
        assert len(page["events"]) <= 3
        seen.extend(page["events"])
        if page["next_cursor"] is None:
            break
        query = f"limit=3&cursor={page['next_cursor']}"

    assert seen == everything
    assert [e["after"]["description"] for e in seen[:6]] == [f"edit {i}" for i in reversed(range(6))]
    keys = [(e["occurred_at"], e["id"]) for e in seen]
    assert keys == sorted(keys, reverse=True)


def test_a_cursor_this_api_did_not_return_is_a_422(api: Any) -> None:
    exp = create(api, name="cursor")
    for path in (f"{BASE}/{exp['id']}/history", AUDIT):
        response = api("GET", path, query="cursor=bm9wZQ")
        assert (response.status, response.json["field"]) == (422, "cursor")


def test_the_feed_filters_by_entity_actor_action_and_time(api: Any, sql: Any) -> None:
    first = create(api, name="feed_a", surface="audit-d")
    second = create(api, name="feed_b")
    assert set_status(api, first["id"], "running").status == 200
    sql(
        "UPDATE audit_events SET occurred_at = '2026-01-01T00:00:00Z'"
        " WHERE action = 'experiment.create' AND entity_id = %s RETURNING id",
        (first["id"],),
    )

    def feed(query: str) -> list[tuple[str, str]]:
        response = api("GET", AUDIT, query=query)
        assert response.status == 200, response
        return [(e["action"], e["entity_id"]) for e in response.json["events"]]

    assert len(feed("")) == 4
    assert feed(f"entity_type=experiment&entity_id={second['id']}") == [("experiment.create", second["id"])]
    assert feed("entity_type=namespace") == [("namespace.allocate", "audit-d")]
    assert feed("action=experiment.start") == [("experiment.start", first["id"])]
    assert len(feed("actor=test-client")) == 4
    assert feed("actor=someone-else") == []
    # since is inclusive, until exclusive; offsets are honoured (+ arrives as a space in a query string)
    assert feed("until=2026-01-01T00:00:00Z") == []
    assert feed("until=2026-01-01T00:00:00.000001Z") == [("experiment.create", first["id"])]
    assert feed("since=2025-12-31T23:00:00Z&until=2026-01-01T02:00:00+02:00") == []
    assert feed("since=2025-12-31T23:00:00Z&until=2026-01-01T02:00:01%2B02:00") == [
        ("experiment.create", first["id"])
    ]
    assert len(feed("since=2026-01-01T00:00:01Z")) == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("until=2026-05-01T10:00:00", "until"),  # no offset: not an instant
        ("since=2026-05-01T10:00:00Z&until=13", "until"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("entity_type=Experiment", "entity_type"),
        ("action=start", "action"),
        ("actor=a%00b", "actor"),
        ("entity_id=%00", "entity_id"),
    ],
)
def test_invalid_feed_parameters_are_a_422_naming_them(api: Any, query: str, field: str) -> None:
    response = api("GET", AUDIT, query=query)
    assert (response.status, response.json["error"], response.json["field"]) == (
        422,
        "validation_error",
        field,
    )


def test_reading_needs_the_read_scope(api: Any) -> None:
    exp = create(api, name="scoped")
    for path in (f"{BASE}/{exp['id']}/history", AUDIT):
        refused = api("GET", path, scopes=("abtest/ingest", "abtest/admin"))
        assert (refused.status, refused.json["scope"]) == (403, "read")
        assert api("GET", path, scopes=("abtest/read",)).status == 200
