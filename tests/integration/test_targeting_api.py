"""Targeting through the handlers against PostgreSQL: experiments' targeting (validated on create and
PATCH, 422 naming the path, nothing stored), saved groups (CRUD, in use -> 409), the QA route, and
serving (only matching users enrolled, on both routes; a stored assignment survives)."""

from __future__ import annotations

from typing import Any

from tests.integration.test_assignments_api import assign
from tests.integration.test_assignments_api import catalog as catalog  # the fixture
from tests.integration.test_experiments_api import BASE, create, set_status

GROUPS = "/api/v1/saved-groups"
EVALUATE = "/api/v1/targeting/evaluate"
FRANCE = {"country": {"$in": ["FR", "BE"]}}


def new_group(api: Any, key: str, values: list[Any]) -> dict[str, Any]:
    response = api("POST", GROUPS, {"key": key, "values": values})
    assert response.status == 201, response
    body: dict[str, Any] = response.json
    return body


def test_targeting_is_stored_shown_and_edited_while_running(api: Any) -> None:
    experiment = create(api, targeting=FRANCE)
    assert experiment["targeting"] == FRANCE
    assert api("GET", f"{BASE}/{experiment['id']}").json["targeting"] == FRANCE
    assert create(api, name="untargeted")["targeting"] == {}
    assert set_status(api, experiment["id"], "running").status == 200
    patched = api("PATCH", f"{BASE}/{experiment['id']}", {"targeting": {"app": {"$vgte": "2.0.0"}}})
    assert patched.status == 200, patched
    assert patched.json["targeting"] == {"app": {"$vgte": "2.0.0"}}
    assert set_status(api, experiment["id"], "completed").status == 200
    frozen = api("PATCH", f"{BASE}/{experiment['id']}", {"targeting": {}})
    assert (frozen.status, frozen.json["error"]) == (409, "experiment_completed")


def test_invalid_targeting_is_a_422_naming_the_path_and_nothing_is_stored(api: Any, sql: Any) -> None:
    bad = {"$or": [{"plan": "pro"}, {"country": {"$in": "FR"}}], "ua": {"$regex": "(?=x)"}}
    response = api("POST", BASE, {**_body("bad"), "targeting": bad})
    assert response.status == 422, response
    assert response.json["field"] == "targeting.$or[1].country.$in"
    assert [e["field"] for e in response.json["errors"]] == [
        "targeting.$or[1].country.$in",
        "targeting.ua.$regex",
    ]
    assert response.json["error_count"] == 2
    assert sql("SELECT count(*) FROM experiments") == [(0,)]

    experiment = create(api, targeting=FRANCE)
    for targeting, field in [
        ({"country": {"$nin": 3}}, "targeting.country.$nin"),
        ({"name": {"$regx": "a"}}, "targeting.name.$regx"),
        ({"id": {"$inGroup": "nope"}}, "targeting.id.$inGroup"),
        ({"a": {"$regex": "a" * 300}}, "targeting.a.$regex"),
    ]:
        patched = api("PATCH", f"{BASE}/{experiment['id']}", {"targeting": targeting})
        assert (patched.status, patched.json["field"]) == (422, field), patched
    assert api("GET", f"{BASE}/{experiment['id']}").json["targeting"] == FRANCE
    not_object = api("PATCH", f"{BASE}/{experiment['id']}", {"targeting": ["FR"]})
    assert (not_object.status, not_object.json["field"]) == (422, "targeting")


def _body(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}],
        "surface": "checkout",
    }


def test_saved_groups_crud(api: Any, sql: Any) -> None:
    group = new_group(api, "beta_testers", ["ann", 42])
    assert group["key"] == "beta_testers"
    assert group["values"] == ["ann", 42]
    assert api("POST", GROUPS, {"key": "beta_testers", "values": []}).json["error"] == "duplicate_key"
    listing = api("GET", GROUPS).json["saved_groups"]
    assert [(g["key"], g["value_count"]) for g in listing] == [("beta_testers", 2)]
    assert api("GET", f"{GROUPS}/{group['id']}").json["values"] == ["ann", 42]
    replaced = api("PUT", f"{GROUPS}/{group['id']}", {"values": ["bob"], "key": "beta"})
    assert replaced.status == 200
    assert replaced.json["key"] == "beta"
    assert replaced.json["values"] == ["bob"]
    assert replaced.json["updated_at"] >= group["updated_at"]
    for values, words in [
        ([True], "string or a number"),
        ([""], "1 to 256"),
        (["x" * 257], "1 to 256"),
        ([[1]], "string or a number"),
        (list(range(10_001)), "at most 10000"),
    ]:
        refused = api("POST", GROUPS, {"key": "other", "values": values})
        assert refused.status == 422, refused
        assert words in refused.json["message"], refused
    assert api("POST", GROUPS, {"key": "bad key", "values": []}).json["field"] == "key"
    assert api("DELETE", f"{GROUPS}/{group['id']}").status == 204
    missing = api("GET", f"{GROUPS}/{group['id']}")
    assert (missing.status, missing.json["error"]) == (404, "saved_group_not_found")
    assert sql("SELECT count(*) FROM saved_groups") == [(0,)]


def test_a_group_in_use_cannot_be_deleted_or_renamed_until_its_experiments_complete(api: Any) -> None:
    group = new_group(api, "vip", ["ann"])
    experiment = create(api, targeting={"$or": [{"id": {"$inGroup": "vip"}}, {"plan": "pro"}]})
    for method, body in (("DELETE", None), ("PUT", {"values": ["x"], "key": "vip2"})):
        refused = api(method, f"{GROUPS}/{group['id']}", body)
        assert (refused.status, refused.json["error"]) == (409, "saved_group_in_use"), refused
        assert refused.json["experiments"] == [experiment["id"]]
    negated = new_group(api, "blocked", ["x"])
    create(api, name="negated", targeting={"id": {"$notInGroup": "blocked"}})
    assert api("DELETE", f"{GROUPS}/{negated['id']}").json["error"] == "saved_group_in_use"
    # New values under the same key are fine (they reach serving containers within the cache TTL).
    assert api("PUT", f"{GROUPS}/{group['id']}", {"values": ["ann", "bob"], "key": "vip"}).status == 200
    assert set_status(api, experiment["id"], "running").status == 200
    assert set_status(api, experiment["id"], "completed").status == 200
    assert api("DELETE", f"{GROUPS}/{group['id']}").status == 204


def test_the_qa_route_evaluates_without_touching_experiments(api: Any, sql: Any) -> None:
    new_group(api, "vip", ["ann"])
    ask = {"condition": {"id": {"$inGroup": "vip"}}, "attributes": {"id": "ann"}}
    assert api("POST", EVALUATE, ask).json == {"matches": True, "error": None}
    given = {**ask, "saved_groups": {"vip": ["bob"]}}
    assert api("POST", EVALUATE, given).json == {"matches": False, "error": None}
    unknown = api("POST", EVALUATE, {"condition": {"id": {"$inGroup": "nobody"}}, "attributes": {"id": "a"}})
    assert unknown.json["matches"] is False
    assert unknown.json["error"].startswith("condition.id.$inGroup: no saved group")
    invalid = api("POST", EVALUATE, {"condition": {"n": {"$in": 1}}, "attributes": {"n": 1}})
    assert invalid.status == 200
    assert invalid.json == {"matches": False, "error": "condition.n.$in: $in takes an array"}
    not_object = api("POST", EVALUATE, {"condition": "FR", "attributes": {}})
    assert not_object.json == {"matches": False, "error": "condition: a condition must be a JSON object"}
    assert api("POST", EVALUATE, {"attributes": {}}).status == 422  # malformed bodies stay 4xx
    assert api("POST", EVALUATE, {"condition": {}, "attributes": []}).status == 422
    assert api("POST", EVALUATE, {"condition": {}, "attributes": {"a": "x" * 5000}}).status == 422
    assert sql("SELECT count(*) FROM experiments") == [(0,)]


def test_the_qa_route_never_matches_a_condition_it_reports_invalid(api: Any) -> None:
    # Too large or too deep conditions used to be evaluated anyway (and matched); serving would refuse them.
    big = {"$or": [{"plan": "pro"}, {"note": {"$ne": "x" * 17_000}}]}
    deep: dict[str, Any] = {"plan": "pro"}
    for _ in range(11):
        deep = {"$and": [deep]}
    for condition in (big, deep):
        answer = api("POST", EVALUATE, {"condition": condition, "attributes": {"plan": "pro"}})
        assert answer.status == 200, answer
        assert answer.json["error"] is not None
        assert answer.json["matches"] is False


def test_scopes(api: Any) -> None:
    read = ("abtest/read",)
    assert api("POST", EVALUATE, {"condition": {}, "attributes": {}}, scopes=read).status == 200
    assert api("GET", GROUPS, scopes=read).status == 200
    assert api("POST", GROUPS, {"key": "k", "values": []}, scopes=read).status == 403
    assert api("POST", GROUPS, {"key": "k", "values": []}, scopes=("abtest/admin",)).status == 201
    assert api("POST", EVALUATE, {"condition": {}}, scopes=("abtest/ingest",)).status == 403


def test_only_matching_users_are_enrolled_through_both_routes(api: Any, sql: Any, catalog: None) -> None:
    new_group(api, "staff", ["emp-1", "emp-2"])
    targeting = {"$or": [{"country": {"$in": ["FR"]}}, {"user": {"$inGroup": "staff"}}]}
    experiment = create(api, targeting=targeting, traffic_allocation=1.0)
    assert set_status(api, experiment["id"], "running").status == 200
    recs = "/api/v1/recommendations"
    for n in range(20):
        other = api("POST", recs, {"user_id": f"de-{n}", "limit": 1, "attributes": {"country": "DE"}})
        assert (other.json["reason"], other.json["experiment_variant"]) == ("targeting_not_met", None)
        assert assign(api, experiment["id"], f"us-{n}", attributes={"country": "US"}).json["reason"] == (
            "targeting_not_met"
        )
        assert assign(api, experiment["id"], f"none-{n}").json["reason"] == "targeting_not_met"
    assert sql("SELECT count(*) FROM assignments") == [(0,)]
    assert sql("SELECT count(*) FROM namespace_members") == [(0,)]
    assert sql("SELECT count(*) FROM exposures") == [(0,)]
    fr = api("POST", recs, {"user_id": "fr-1", "limit": 1, "attributes": {"country": "FR"}})
    assert fr.json["reason"] == "assigned"
    staff = assign(api, experiment["id"], "emp-2", attributes={"user": "emp-2"})
    assert staff.json["reason"] == "assigned"
    assert staff.json["new_assignment"]
    # Enrolled users keep their variant when their attributes change (targeting is at enrollment only).
    moved = api("POST", recs, {"user_id": "fr-1", "limit": 1, "attributes": {"country": "DE"}})
    assert moved.json["experiment_variant"] == fr.json["experiment_variant"]
    kept = assign(api, experiment["id"], "emp-2", attributes={})
    assert kept.json["variant"] == staff.json["variant"]
    assert not kept.json["new_assignment"]
    assert sql("SELECT count(*) FROM assignments") == [(2,)]
