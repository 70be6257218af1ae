"""Assignments handler in-process against PostgreSQL: contract, stickiness, concurrency, lifecycle."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import pytest

from abtest.contract.bucketing import bucket_for
from localdev.seed import demo_catalog
from tests.integration.conftest import ApiResponse
from tests.integration.test_experiments_api import BASE, experiment_body


def running_experiment(api: Any, **overrides: Any) -> dict[str, Any]:
    created = api("POST", BASE, experiment_body(**overrides)).json
    started: dict[str, Any] = api("PUT", f"{BASE}/{created['id']}/status", {"status": "running"}).json
    return started


def predicted_tag(experiment: dict[str, Any], user_id: str) -> str | None:
    weights = [v["weight"] for v in experiment["variants"]]
    index = bucket_for(user_id, experiment["salt"], weights, experiment["traffic_allocation"])
    return None if index is None else f"{experiment['name']}:{experiment['variants'][index]['name']}"


def assign(api: Any, experiment_id: str, user_id: str, **extra: Any) -> ApiResponse:
    response: ApiResponse = api(
        "POST", "/api/v1/assignments", {"experiment_id": experiment_id, "user_id": user_id, **extra}
    )
    return response


@pytest.fixture
def catalog(sql: Any, clean_db: str) -> None:
    from abtest.storage import CatalogRepository
    from abtest.storage.database import get_database

    items, profiles = demo_catalog(n_items=300, n_users=50)
    CatalogRepository(get_database()).replace_catalog(items, profiles)


def test_recommendations_are_tagged_exactly_as_the_contract_predicts(
    api: Any, sql: Any, catalog: None
) -> None:
    experiment = running_experiment(api)
    users = [f"user-{n}" for n in range(1, 51)] + ["ユーザー", "josé", "🙂"]

    for user in users:
        response = api("POST", "/api/v1/recommendations", {"user_id": user, "limit": 5})
        assert response.status == 200, response
        body = response.json
        expected = predicted_tag(experiment, user)
        assert body["experiment_variant"] == expected
        assert len(body["recommendations"]) == 5
        assert {item["experiment_variant"] for item in body["recommendations"]} == {expected}

    enrolled = [u for u in users if predicted_tag(experiment, u) is not None]
    assert 0 < len(enrolled) < len(users), "50% traffic should enroll some and exclude some"
    assert sql("SELECT count(*) FROM assignments") == [(len(enrolled),)]
    assert sql("SELECT count(*) FROM exposures") == [(len(enrolled),)]


def test_variant_configs_change_the_recommendations(api: Any, catalog: None) -> None:
    body = experiment_body(
        traffic_allocation=1.0,
        variants=[
            {"name": "control", "weight": 0.5, "config": {"lora_boost": 0.0}},
            {"name": "treatment", "weight": 0.5, "config": {"lora_boost": 1.0}},
        ],
    )
    experiment = running_experiment(api, **body)
    by_variant: dict[str, list[str]] = {}
    for n in range(1, 30):
        tag = predicted_tag(experiment, f"user-{n}")
        assert tag is not None
        items = api("POST", "/api/v1/recommendations", {"user_id": f"user-{n}", "limit": 10}).json
        by_variant.setdefault(tag, [])
        by_variant[tag].append(",".join(i["item_id"] for i in items["recommendations"]))
    control = by_variant[f"{experiment['name']}:control"]
    treatment = by_variant[f"{experiment['name']}:treatment"]
    assert len(set(control)) == 1, "control is popularity-only: the same list for everyone"
    assert len(set(treatment)) > 1, "treatment follows each user's profile"


def test_assignment_is_sticky_and_every_request_is_an_exposure(api: Any, sql: Any) -> None:
    experiment = running_experiment(api, traffic_allocation=1.0)
    first = assign(api, experiment["id"], "alice", context={"page": "home"})
    assert first.status == 200
    assert first.json["enrolled"]
    assert first.json["new_assignment"]
    assert first.json["experiment_variant"] == predicted_tag(experiment, "alice")
    assert first.json["variant"]["config"] in ({"lora_boost": 0.3}, {"lora_boost": 0.5})
    second = assign(api, experiment["id"], "alice")
    assert (second.json["variant"], second.json["new_assignment"]) == (first.json["variant"], False)
    quiet = assign(api, experiment["id"], "alice", record_exposure=False)
    assert quiet.json["exposure_recorded"] is False
    assert sql("SELECT count(*) FROM exposures WHERE user_id = 'alice'") == [(2,)]
    assert sql("SELECT context FROM assignments") == [({"page": "home"},)]


def test_the_stored_assignment_wins_over_the_hash(api: Any, sql: Any) -> None:
    experiment = running_experiment(api, traffic_allocation=1.0)
    predicted = predicted_tag(experiment, "bob")
    other = next(v for v in experiment["variants"] if f"{experiment['name']}:{v['name']}" != predicted)
    sql(
        "INSERT INTO assignments (experiment_id, user_id, variant_id) VALUES (%s, 'bob', %s) RETURNING 1",
        (experiment["id"], other["id"]),
    )
    response = assign(api, experiment["id"], "bob")
    assert response.json["variant"]["name"] == other["name"]
    assert response.json["new_assignment"] is False


def test_sixteen_threads_enrolling_one_new_user_store_one_row(api: Any, sql: Any) -> None:
    experiment = running_experiment(api, traffic_allocation=1.0)
    barrier = threading.Barrier(16)
    answers: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            body = assign(api, experiment["id"], "racer").json
            answers.append((body["variant"]["id"], body["new_assignment"]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len({variant for variant, _ in answers}) == 1
    assert sum(created for _, created in answers) == 1
    assert sql("SELECT count(*) FROM assignments") == [(1,)]
    assert sql("SELECT count(*) FROM exposures") == [(16,)]


def test_paused_and_completed_experiments_enroll_nobody(api: Any, sql: Any) -> None:
    experiment = running_experiment(api, traffic_allocation=1.0)
    assert assign(api, experiment["id"], "early").json["enrolled"]
    api("PUT", f"{BASE}/{experiment['id']}/status", {"status": "paused"})

    paused = assign(api, experiment["id"], "late")
    assert (paused.json["enrolled"], paused.json["reason"]) == (False, "experiment_not_running")
    recs = api("POST", "/api/v1/recommendations", {"user_id": "later", "limit": 1}).json
    assert recs["experiment_variant"] is None
    api("PUT", f"{BASE}/{experiment['id']}/status", {"status": "completed"})
    assert assign(api, experiment["id"], "latest").json["enrolled"] is False
    assert sql("SELECT user_id FROM assignments") == [("early",)]
    assert sql("SELECT count(*) FROM exposures") == [(1,)]


def test_draft_experiments_are_not_running(api: Any) -> None:
    draft = api("POST", BASE, experiment_body()).json
    response = assign(api, draft["id"], "u1")
    assert (response.status, response.json["reason"]) == (200, "experiment_not_running")


def test_traffic_exclusion_is_a_clear_answer(api: Any, sql: Any) -> None:
    experiment = running_experiment(api, traffic_allocation=0.0)
    response = assign(api, experiment["id"], "anyone")
    assert response.json == {
        "experiment_id": experiment["id"],
        "experiment_name": experiment["name"],
        "user_id": "anyone",
        "enrolled": False,
        "reason": "excluded_by_traffic",
        "variant": None,
        "experiment_variant": None,
        "new_assignment": False,
        "exposure_recorded": False,
        "source": None,
    }
    assert sql("SELECT count(*) FROM assignments") == [(0,)]


def test_raising_traffic_keeps_enrolled_users_in_their_variant(api: Any) -> None:
    experiment = running_experiment(api, traffic_allocation=0.2)
    users = [f"u{n}" for n in range(200)]
    before = {u: assign(api, experiment["id"], u).json["experiment_variant"] for u in users}
    api("PATCH", f"{BASE}/{experiment['id']}", {"traffic_allocation": 0.9})
    after = {u: assign(api, experiment["id"], u).json["experiment_variant"] for u in users}
    assert all(after[u] == tag for u, tag in before.items() if tag is not None)
    assert sum(t is not None for t in after.values()) > sum(t is not None for t in before.values())


def test_lookup_reads_without_enrolling(api: Any, sql: Any) -> None:
    experiment = running_experiment(api, traffic_allocation=1.0)
    path = f"{BASE}/{experiment['id']}/assignments"
    before = api("GET", f"{path}/carol")
    assert (before.status, before.json["enrolled"], before.json["variant"]) == (200, False, None)
    assert sql("SELECT count(*) FROM assignments") == [(0,)]
    assigned = assign(api, experiment["id"], "carol").json
    after = api("GET", f"{path}/carol").json
    assert after["variant"] == assigned["variant"]
    assert after["experiment_variant"] == assigned["experiment_variant"]
    encoded = api("GET", f"{path}/user%40example.com")
    assert encoded.json["user_id"] == "user@example.com"
    assert api("GET", f"{BASE}/00000000-0000-4000-8000-000000000000/assignments/x").status == 404
    assert sql("SELECT count(*) FROM exposures") == [(1,)]


def test_a_long_user_id_with_an_at_sign_is_found_by_both_lookups(api: Any) -> None:
    # 220 characters decoded, but 228 percent-encoded: the limit is on the decoded id (issue 19).
    user = "a@b" * 73 + "c"
    assert len(user) == 220
    experiment = running_experiment(api, traffic_allocation=1.0)
    assigned = assign(api, experiment["id"], user)
    assert assigned.status == 200, assigned
    encoded = quote(user, safe="")
    assert len(encoded) > 256
    stored = api("GET", f"{BASE}/{experiment['id']}/assignments/{encoded}")
    assert (stored.status, stored.json["user_id"]) == (200, user), stored
    assert stored.json["experiment_variant"] == assigned.json["experiment_variant"]
    surface = api("GET", f"/api/v1/surfaces/{experiment['surface']}/assignments/{encoded}")
    assert surface.status == 200, surface
    assert surface.json["experiment_variant"] == assigned.json["experiment_variant"]


@pytest.mark.parametrize(
    "user_id",
    ["x" * 257, "%40" * 257, "x" * 3073, "x" * 40_000, "a%00b", "%00"],
    ids=["257", "257-encoded", "3073", "40000", "nul", "only-nul"],
)
def test_a_path_user_id_out_of_limits_is_the_same_422_on_every_route(api: Any, user_id: str) -> None:
    # These were 404 (over 256 encoded characters), 422 (overrides) or a database error naming body (NUL).
    experiment_id = running_experiment(api)["id"]
    for method, path, body in [
        ("GET", f"{BASE}/{experiment_id}/assignments/{user_id}", None),
        ("GET", f"/api/v1/surfaces/recommendations/assignments/{user_id}", None),
        ("PUT", f"{BASE}/{experiment_id}/overrides/{user_id}", {"variant": "control"}),
        ("DELETE", f"{BASE}/{experiment_id}/overrides/{user_id}", None),
    ]:
        response = api(method, path, body)
        assert (response.status, response.json["field"]) == (422, "user_id"), (method, path[:80], response)


def test_unknown_experiment_is_404(api: Any) -> None:
    response = assign(api, "00000000-0000-4000-8000-000000000000", "u")
    assert (response.status, response.json["error"]) == (404, "experiment_not_found")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/recommendations", {"limit": 3}, "user_id"),
        ("/api/v1/recommendations", {"user_id": ""}, "user_id"),
        ("/api/v1/recommendations", {"user_id": "x" * 257}, "user_id"),
        ("/api/v1/recommendations", {"user_id": "\ud800"}, "user_id"),
        ("/api/v1/recommendations", {"user_id": "u", "limit": 0}, "limit"),
        ("/api/v1/recommendations", {"user_id": "u", "limit": 101}, "limit"),
        ("/api/v1/recommendations", {"user_id": "u", "context": [1]}, "context"),
        ("/api/v1/recommendations", {"user_id": "u", "context": {"x": "y" * 5000}}, "context"),
        ("/api/v1/recommendations", {"user_id": "u", "surface": "Bad Surface"}, "surface"),
        ("/api/v1/recommendations", {"user_id": "u", "extra": 1}, "extra"),
        ("/api/v1/assignments", {"user_id": "u"}, "experiment_id"),
        ("/api/v1/assignments", {"user_id": "u", "experiment_id": "nope"}, "experiment_id"),
        (
            "/api/v1/assignments",
            {"user_id": 5, "experiment_id": "00000000-0000-4000-8000-000000000000"},
            "user_id",
        ),
    ],
)
def test_invalid_requests_are_422_naming_the_field(
    api: Any, path: str, body: dict[str, Any], field: str
) -> None:
    response = api("POST", path, body)
    assert response.status == 422, response
    assert field in {e["field"] for e in response.json["errors"]}


@pytest.mark.parametrize(
    ("config", "field"),
    [({"lora_boost": 2}, "variants[0].config.lora_boost"), ({"lora": 0.3}, "variants[0].config.lora")],
)
def test_recommender_configs_are_checked_at_creation(
    api: Any, sql: Any, config: dict[str, Any], field: str
) -> None:
    body = experiment_body(
        variants=[{"name": "a", "weight": 0.5, "config": config}, {"name": "b", "weight": 0.5}]
    )
    response = api("POST", BASE, body)
    assert (response.status, response.json["field"]) == (422, field)
    assert sql("SELECT count(*) FROM experiments") == [(0,)]
    other = api("POST", BASE, {**body, "surface": "checkout"})
    assert other.status == 201


def test_recommendations_without_any_experiment_are_untagged(api: Any, catalog: None) -> None:
    body = api("POST", "/api/v1/recommendations", {"user_id": "user-1", "limit": 3}).json
    assert body["experiment_id"] is None
    assert body["experiment_variant"] is None
    assert [i["experiment_variant"] for i in body["recommendations"]] == [None] * 3
