"""Targeting acceptance over real HTTP (the local server): the QA route answers as the evaluator for
every conformance case; a targeted experiment enrolls only matching users through /assignments and
/recommendations; a stored assignment survives an attribute change; invalid targeting is a 422 naming
the path, on create and on PATCH, and nothing is stored."""

from __future__ import annotations

from typing import Any

from abtest.domain.targeting import evaluate
from tests.conformance import conformance_cases, skip_or_fail_when_missing
from tests.e2e.conftest import Http

EXPERIMENTS = "/api/v1/experiments"


def _experiment(name: str, targeting: Any, surface: str = "recommendations") -> dict[str, Any]:
    return {
        "name": name,
        "surface": surface,
        "variants": [
            {"name": "control", "weight": 0.5, "config": {"lora_boost": 0.0}},
            {"name": "treatment", "weight": 0.5, "config": {"lora_boost": 0.5}},
        ],
        "targeting": targeting,
    }


def test_the_qa_route_answers_as_the_evaluator_for_every_conformance_case(http: Http) -> None:
    cases = conformance_cases()
    if not cases:
        skip_or_fail_when_missing()
    differences = []
    refused = []
    for name, condition, attributes, expected, groups in cases:
        body = {"condition": condition, "attributes": attributes, "saved_groups": groups}
        status, _, answer = http.request("POST", "/api/v1/targeting/evaluate", body)
        assert status == 200, (name, answer)
        ours = evaluate(condition, attributes, groups)
        if answer["error"] is not None:
            # A condition the write-time checks refuse can never be stored, so serving never matches it.
            refused.append(name)
            if answer["matches"] is not False:
                differences.append((name, answer, ours, expected))
        elif answer["matches"] is not ours:
            differences.append((name, answer, ours, expected))
        if ours is not expected:
            differences.append((name, answer, ours, expected))
    assert differences == []
    # Some cases are conditions the write-time checks refuse (GrowthBook's legacy `$groups`, `$in` with
    # a non-array, ...): the evaluator still answers them, the QA route says they never match.
    assert 0 < len(refused) < len(cases) // 2, refused
    assert len(cases) == 266


def test_a_targeted_experiment_enrolls_only_matching_users_through_both_routes(http: Http) -> None:
    status, _, group = http.request("POST", "/api/v1/saved-groups", {"key": "qa_team", "values": ["qa-1"]})
    assert status == 201, group
    targeting = {"$or": [{"app.version": {"$vgte": "2.0.0"}, "country": {"$in": ["FR"]}},
                         {"user": {"$inGroup": "qa_team"}}]}  # fmt: skip
    status, _, experiment = http.request("POST", EXPERIMENTS, _experiment("targeted_flow", targeting))
    assert status == 201, experiment
    assert http.request("PUT", f"{EXPERIMENTS}/{experiment['id']}/status", {"status": "running"})[0] == 200
    matching = {"country": "FR", "app": {"version": "2.1.0"}}
    old_app = {"country": "FR", "app": {"version": "1.9.9"}}

    def recommend(user: str, attributes: Any) -> dict[str, Any]:
        status, _, body = http.request(
            "POST", "/api/v1/recommendations", {"user_id": user, "limit": 2, "attributes": attributes}
        )
        assert status == 200, body
        return dict(body)

    def assign(user: str, attributes: Any) -> dict[str, Any]:
        body = {"user_id": user, "experiment_id": experiment["id"], "attributes": attributes}
        status, _, answer = http.request("POST", "/api/v1/assignments", body)
        assert status == 200, answer
        return dict(answer)

    for n in range(15):
        assert recommend(f"old-{n}", old_app)["reason"] == "targeting_not_met"
        assert recommend(f"anon-{n}", None)["reason"] == "targeting_not_met"
        refused = assign(f"de-{n}", {"country": "DE", "app": {"version": "3.0.0"}})
        assert (refused["reason"], refused["enrolled"], refused["variant"]) == (
            "targeting_not_met",
            False,
            None,
        )
        lookup = http.request("GET", f"{EXPERIMENTS}/{experiment['id']}/assignments/de-{n}")[2]
        assert lookup["enrolled"] is False
    via_recommendations = recommend("fr-1", matching)
    assert via_recommendations["reason"] == "assigned"
    assert via_recommendations["experiment_variant"].startswith("targeted_flow:")
    via_assignments = assign("fr-2", matching)
    assert (via_assignments["reason"], via_assignments["new_assignment"]) == ("assigned", True)
    assert assign("qa-1", {"user": "qa-1"})["reason"] == "assigned"  # through the saved group

    # The attributes change (the user moved, downgraded the app): the stored assignment wins.
    moved = recommend("fr-1", {"country": "DE"})
    assert (moved["reason"], moved["experiment_variant"]) == (
        "assigned",
        via_recommendations["experiment_variant"],
    )
    kept = assign("fr-2", old_app)
    assert (kept["variant"], kept["new_assignment"]) == (via_assignments["variant"], False)
    # The targeting changes while running: enrolled users stay, new ones meet the new condition.
    patched = http.request("PATCH", f"{EXPERIMENTS}/{experiment['id']}", {"targeting": {"country": "DE"}})
    assert patched[0] == 200, patched
    assert assign("fr-2", matching)["variant"] == via_assignments["variant"]
    assert assign("fr-3", matching)["reason"] == "targeting_not_met"
    assert assign("de-new", {"country": "DE"})["reason"] == "assigned"


def test_invalid_targeting_is_a_422_naming_the_path_and_nothing_is_stored(http: Http) -> None:
    bad = {"country": {"$in": "FR"}}
    status, _, error = http.request("POST", EXPERIMENTS, _experiment("bad_targeting", bad, "checkout"))
    assert (status, error["error"], error["field"]) == (422, "validation_error", "targeting.country.$in")
    listing = http.request("GET", f"{EXPERIMENTS}?status=all&name=bad_targeting")[2]
    assert listing["experiments"] == []

    good = {"country": {"$in": ["FR"]}}
    status, _, experiment = http.request("POST", EXPERIMENTS, _experiment("good_targeting", good, "checkout"))
    assert status == 201
    path = f"{EXPERIMENTS}/{experiment['id']}"
    for targeting, field in [
        ({"ua": {"$regex": "(?<=x)y"}}, "targeting.ua.$regex"),
        ({"$and": [{"a": {"$foo": 1}}]}, "targeting.$and[0].a.$foo"),
        ({"id": {"$inGroup": "no_such_group"}}, "targeting.id.$inGroup"),
    ]:
        status, _, error = http.request("PATCH", path, {"targeting": targeting, "description": "changed"})
        assert (status, error["field"]) == (422, field), error
    stored = http.request("GET", path)[2]
    assert (stored["targeting"], stored["description"]) == (good, "")
