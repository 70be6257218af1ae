"""The audit entries of overrides, saved groups and holdouts against a real PostgreSQL: each admin write
appends exactly one entry (actor, action, before and after) in its own transaction; a write that fails
leaves none, and an entry the database refuses fails the write, which leaves nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from abtest.domain.holdouts import HoldoutCreate
from abtest.domain.saved_groups import SavedGroupIn
from abtest.storage.database import Database
from abtest.storage.holdouts import HoldoutRepository
from abtest.storage.overrides import OverrideRepository
from abtest.storage.saved_groups import SavedGroupRepository
from tests.integration.conftest import ApiResponse
from tests.integration.test_audit import AUDIT, actions, audit_refuses, history
from tests.integration.test_experiments_api import BASE, create, set_status
from tests.integration.test_holdouts import HOLDOUTS, holdout_status
from tests.integration.test_targeting_api import GROUPS

__all__ = ["audit_refuses"]  # the fixture, used by name

TOKEN_SUBJECT = ("user", "test-client")  # the subject of the integration tests' tokens


def appended(sql: Any, write: Callable[[], ApiResponse], status: int = 200) -> list[str]:
    """Run `write`, check its status, and return the actions of the entries it appended."""
    last = sql("SELECT coalesce(max(id), 0) FROM audit_events")[0][0]
    response = write()
    assert response.status == status, response
    return [row[0] for row in sql("SELECT action FROM audit_events WHERE id > %s ORDER BY id", (last,))]


def feed(api: Any, query: str) -> list[dict[str, Any]]:
    response = api("GET", AUDIT, query=query)
    assert response.status == 200, response
    events: list[dict[str, Any]] = response.json["events"]
    return events


def actor_of(entry: dict[str, Any]) -> tuple[str, str]:
    return entry["actor"]["type"], entry["actor"]["id"]


def override_path(experiment_id: str, user: str) -> str:
    return f"{BASE}/{experiment_id}/overrides/{quote(user, safe='')}"


# --- overrides -------------------------------------------------------------------------------------


def test_override_writes_are_in_the_experiments_history(api: Any, sql: Any) -> None:
    # Given a running experiment
    exp = create(api, name="ov_audit", traffic_allocation=1.0)
    ident = exp["id"]
    assert set_status(api, ident, "running").status == 200
    user = "qa@example.com"

    def put(variant: str) -> ApiResponse:
        response: ApiResponse = api("PUT", override_path(ident, user), {"variant": variant})
        return response

    # When a user is forced, moved to the other variant, forced there again (a no-op) and released
    assert appended(sql, lambda: put("treatment")) == ["override.set"]
    assert appended(sql, lambda: put("control")) == ["override.set"]
    assert appended(sql, lambda: put("control")) == []  # nothing changed: nothing recorded
    assert appended(sql, lambda: api("DELETE", override_path(ident, user)), 204) == ["override.delete"]

    # Then the experiment's history shows each with its subject, before and after
    events = history(api, ident)
    assert actions(events)[:3] == ["override.delete", "override.set", "override.set"]
    deleted, moved, forced = events[:3]
    for entry in (deleted, moved, forced):
        assert actor_of(entry) == TOKEN_SUBJECT
        assert (entry["entity_type"], entry["entity_id"]) == ("override", user)
        assert (entry["parent_type"], entry["parent_id"]) == ("experiment", ident)
        assert entry["request_id"]
    assert (forced["before"], forced["after"]) == (None, {"user_id": user, "variant": "treatment"})
    assert forced["changes"] == []
    assert moved["before"] == {"user_id": user, "variant": "treatment"}
    assert moved["after"] == {"user_id": user, "variant": "control"}
    assert moved["changes"] == [{"field": "variant", "before": "treatment", "after": "control"}]
    assert (deleted["before"], deleted["after"]) == ({"user_id": user, "variant": "control"}, None)
    # The feed finds a user's overrides by entity.
    by_user = feed(api, f"entity_type=override&entity_id={quote(user, safe='')}")
    assert actions(by_user) == ["override.delete", "override.set", "override.set"]


def test_failing_override_writes_record_nothing(api: Any, sql: Any) -> None:
    exp = create(api, name="ov_fail")
    ident = exp["id"]
    unknown = str(uuid.uuid4())
    assert appended(sql, lambda: api("PUT", override_path(ident, "u1"), {"variant": "nope"}), 422) == []
    assert appended(sql, lambda: api("DELETE", override_path(ident, "u1")), 404) == []  # no override
    assert appended(sql, lambda: api("PUT", override_path(unknown, "u1"), {"variant": "control"}), 404) == []
    assert appended(sql, lambda: api("DELETE", override_path(unknown, "u1")), 404) == []
    assert set_status(api, ident, "running").status == 200
    assert set_status(api, ident, "completed").status == 200
    put_completed = lambda: api("PUT", override_path(ident, "u1"), {"variant": "control"})  # noqa: E731
    assert appended(sql, put_completed, 409) == []
    assert not [a for a in actions(history(api, ident)) if a.startswith("override.")]


def test_a_refused_override_entry_rolls_the_override_back(
    api: Any, sql: Any, audit_refuses: Callable[[str], None]
) -> None:
    exp = create(api, name="ov_refused")
    ident = exp["id"]
    assert api("PUT", override_path(ident, "kept"), {"variant": "control"}).status == 200
    audit_refuses("override.set")
    audit_refuses("override.delete")

    forced = api("PUT", override_path(ident, "never"), {"variant": "treatment"})
    moved = api("PUT", override_path(ident, "kept"), {"variant": "treatment"})
    released = api("DELETE", override_path(ident, "kept"))

    assert [r.status for r in (forced, moved, released)] == [500, 500, 500]
    assert sql(
        "SELECT o.user_id, v.name FROM experiment_overrides o JOIN variants v ON v.id = o.variant_id"
    ) == [("kept", "control")]
    assert sql("SELECT action FROM audit_events ORDER BY id") == [("experiment.create",), ("override.set",)]


def test_replacing_a_drafts_variants_records_the_overrides_it_removed(api: Any, sql: Any) -> None:
    # Given a draft with two forced QA users
    exp = create(api, name="ov_variants")
    ident = exp["id"]
    assert api("PUT", override_path(ident, "qa-b"), {"variant": "treatment"}).status == 200
    assert api("PUT", override_path(ident, "qa-a"), {"variant": "control"}).status == 200
    variants = [{"name": "old", "weight": 0.5}, {"name": "new", "weight": 0.5}]

    # When its variants are replaced (which deletes the overrides naming the old ones)
    replaced = appended(sql, lambda: api("PATCH", f"{BASE}/{ident}", {"variants": variants}))

    # Then the one update entry lists the removed overrides
    assert replaced == ["experiment.update"]
    assert sql("SELECT count(*) FROM experiment_overrides") == [(0,)]
    update = history(api, ident)[0]
    removed = [{"user_id": "qa-a", "variant": "control"}, {"user_id": "qa-b", "variant": "treatment"}]
    assert (update["before"]["overrides"], update["after"]["overrides"]) == (removed, [])
    assert [c["field"] for c in update["changes"]] == ["overrides", "variants"]
    # An edit that replaces no variants says nothing about overrides.
    assert api("PUT", override_path(ident, "qa-c"), {"variant": "new"}).status == 200
    assert api("PATCH", f"{BASE}/{ident}", {"description": "x"}).status == 200
    assert "overrides" not in history(api, ident)[0]["before"]
    # Deleting the draft deletes its overrides too: its delete entry lists them.
    assert appended(sql, lambda: api("DELETE", f"{BASE}/{ident}"), 204) == ["experiment.delete"]
    assert history(api, ident)[0]["before"]["overrides"] == [{"user_id": "qa-c", "variant": "new"}]


# --- saved groups ----------------------------------------------------------------------------------


def test_saved_group_writes_are_in_the_feed(api: Any, sql: Any) -> None:
    # When a group is created, replaced (renamed, new values), replaced identically, and deleted
    created = api("POST", GROUPS, {"key": "beta", "values": ["ann", 42]})
    assert created.status == 201, created
    group_id = created.json["id"]
    path = f"{GROUPS}/{group_id}"
    assert sql("SELECT action FROM audit_events") == [("saved_group.create",)]
    change = {"key": "beta_testers", "values": ["ann", "bob"]}
    assert appended(sql, lambda: api("PUT", path, change)) == ["saved_group.update"]
    assert appended(sql, lambda: api("PUT", path, change)) == []  # nothing changed
    assert appended(sql, lambda: api("DELETE", path), 204) == ["saved_group.delete"]

    # Then /audit?entity_type=saved_group shows them, newest first, with the subject and the values
    events = feed(api, "entity_type=saved_group")
    assert actions(events) == ["saved_group.delete", "saved_group.update", "saved_group.create"]
    deleted, updated, create_entry = events
    assert {actor_of(e) for e in events} == {TOKEN_SUBJECT}
    assert {e["entity_id"] for e in events} == {group_id}
    assert create_entry["before"] is None
    assert (create_entry["after"]["key"], create_entry["after"]["values"]) == ("beta", ["ann", 42])
    assert updated["changes"] == [
        {"field": "key", "before": "beta", "after": "beta_testers"},
        {"field": "values", "before": ["ann", 42], "after": ["ann", "bob"]},
    ]
    assert (deleted["before"]["key"], deleted["before"]["values"], deleted["after"]) == (
        "beta_testers",
        ["ann", "bob"],
        None,
    )


def test_failing_saved_group_writes_record_nothing(
    api: Any, sql: Any, audit_refuses: Callable[[str], None]
) -> None:
    group = api("POST", GROUPS, {"key": "vip", "values": ["ann"]}).json
    create(api, targeting={"id": {"$inGroup": "vip"}})
    path = f"{GROUPS}/{group['id']}"
    assert appended(sql, lambda: api("POST", GROUPS, {"key": "vip", "values": []}), 409) == []
    assert appended(sql, lambda: api("DELETE", path), 409) == []  # in use
    assert appended(sql, lambda: api("PUT", path, {"key": "vip2", "values": ["x"]}), 409) == []
    assert appended(sql, lambda: api("POST", GROUPS, {"key": "bad", "values": [True]}), 422) == []

    # An entry the database refuses fails the write: nothing changes.
    audit_refuses("saved_group.create")
    audit_refuses("saved_group.update")
    assert api("POST", GROUPS, {"key": "never", "values": []}).status == 500
    assert api("PUT", path, {"values": ["bob"]}).status == 500
    assert sql('SELECT key, "values" FROM saved_groups') == [("vip", ["ann"])]
    assert sql("SELECT action FROM audit_events ORDER BY id") == [
        ("saved_group.create",),
        ("experiment.create",),
    ]


# --- holdouts --------------------------------------------------------------------------------------


def test_holdout_writes_are_in_the_feed(api: Any, sql: Any) -> None:
    created = api("POST", HOLDOUTS, {"name": "q3_holdout", "percent": 0.05, "all": True})
    assert created.status == 201, created
    ident = created.json["id"]
    assert sql("SELECT action FROM audit_events") == [("holdout.create",)]
    for status, action in (
        ("running", "holdout.start"),
        ("paused", "holdout.pause"),
        ("running", "holdout.resume"),
        ("completed", "holdout.complete"),
    ):
        assert appended(sql, lambda: holdout_status(api, ident, status)) == [action]  # noqa: B023

    events = feed(api, "entity_type=holdout")
    assert actions(events) == [
        "holdout.complete",
        "holdout.resume",
        "holdout.pause",
        "holdout.start",
        "holdout.create",
    ]
    assert {actor_of(e) for e in events} == {TOKEN_SUBJECT}
    assert {(e["entity_type"], e["entity_id"]) for e in events} == {("holdout", ident)}
    create_entry, start = events[-1], events[-2]
    assert create_entry["before"] is None
    assert (create_entry["after"]["name"], create_entry["after"]["percent"]) == ("q3_holdout", 0.05)
    assert create_entry["after"]["status"] == "draft"
    assert (start["before"]["status"], start["after"]["status"]) == ("draft", "running")
    assert start["before"]["started_at"] is None
    assert start["after"]["started_at"] is not None
    complete = events[0]
    assert [c["field"] for c in complete["changes"]] == ["completed_at", "status"]


def test_failing_holdout_writes_record_nothing(
    api: Any, sql: Any, audit_refuses: Callable[[str], None]
) -> None:
    holdout = api("POST", HOLDOUTS, {"name": "h", "percent": 0.1, "all": True}).json
    ident = holdout["id"]
    assert appended(sql, lambda: api("POST", HOLDOUTS, {"name": "h", "percent": 0.1, "all": True}), 409) == []
    assert appended(sql, lambda: api("POST", HOLDOUTS, {"name": "x", "percent": 0.5, "all": True}), 422) == []
    assert appended(sql, lambda: holdout_status(api, ident, "paused"), 409) == []  # draft -> paused
    assert appended(sql, lambda: holdout_status(api, ident, "draft")) == []  # already a draft: a no-op

    audit_refuses("holdout.start")
    audit_refuses("holdout.create")
    assert holdout_status(api, ident, "running").status == 500
    assert api("POST", HOLDOUTS, {"name": "never", "percent": 0.1, "all": True}).status == 500
    assert sql("SELECT name, status, started_at FROM holdouts") == [("h", "draft", None)]
    assert sql("SELECT action FROM audit_events") == [("holdout.create",)]


# --- repositories called directly ------------------------------------------------------------------


def test_writes_without_a_request_are_recorded_as_the_system(api: Any, clean_db: str, sql: Any) -> None:
    experiment_id = uuid.UUID(create(api, name="seeded")["id"])
    db = Database(lambda: {"conninfo": clean_db})
    try:
        group = SavedGroupRepository(db).create(SavedGroupIn(key="seeded", values=[1]))
        holdout = HoldoutRepository(db).create(
            HoldoutCreate.model_validate({"name": "seeded", "percent": 0.1, "all": True})
        )
        OverrideRepository(db).put(experiment_id, "seeded-user", "control")
    finally:
        db.close()
    assert sql("SELECT action, actor_type, actor_id, entity_id FROM audit_events ORDER BY id")[1:] == [
        ("saved_group.create", "system", "system", str(group.id)),
        ("holdout.create", "system", "system", str(holdout.id)),
        ("override.set", "system", "system", "seeded-user"),
    ]
