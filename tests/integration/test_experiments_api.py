"""Experiments handler, in-process with v2 events, against a real PostgreSQL."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tests.integration.conftest import ApiResponse, call

BASE = "/api/v1/experiments"


def experiment_body(name: str = "recommendation_algorithm_test", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "description": "Testing LoRA boost levels",
        "traffic_allocation": 0.5,
        "variants": [
            {"name": "control", "weight": 0.5, "config": {"lora_boost": 0.3}},
            {"name": "treatment", "weight": 0.5, "config": {"lora_boost": 0.5}},
        ],
    }
    body.update(overrides)
    return body


def create(api: Any, **overrides: Any) -> dict[str, Any]:
    response: ApiResponse = api("POST", BASE, experiment_body(**overrides))
    assert response.status == 201, response
    created: dict[str, Any] = response.json
    return created


def set_status(api: Any, experiment_id: str, status: str) -> ApiResponse:
    response: ApiResponse = api("PUT", f"{BASE}/{experiment_id}/status", {"status": status})
    return response


def test_create_returns_the_stored_draft(api: Any, sql: Any) -> None:
    response = api("POST", BASE, experiment_body())

    assert response.status == 201
    created = response.json
    assert response.headers["Location"] == f"{BASE}/{created['id']}"
    assert created["status"] == "draft"
    assert created["salt"] == created["id"]
    assert created["traffic_allocation"] == 0.5
    assert [(v["name"], v["weight"], v["config"], v["position"]) for v in created["variants"]] == [
        ("control", 0.5, {"lora_boost": 0.3}, 0),
        ("treatment", 0.5, {"lora_boost": 0.5}, 1),
    ]
    assert api("GET", f"{BASE}/{created['id']}").json == created
    assert sql("SELECT count(*) FROM variants") == [(2,)]


def test_create_keeps_a_given_salt_and_variant_order(api: Any) -> None:
    variants = [
        {"name": "c", "weight": 0.3},
        {"name": "a", "weight": 0.4},
        {"name": "b", "weight": 0.3},
    ]
    created = create(api, salt="homepage-2026", variants=variants)
    assert created["salt"] == "homepage-2026"
    assert [v["name"] for v in created["variants"]] == ["c", "a", "b"]


def _without(field: str) -> dict[str, Any]:
    body = experiment_body()
    del body[field]
    return body


def _variants(*variants: dict[str, Any]) -> dict[str, Any]:
    return experiment_body(variants=list(variants))


INVALID_BODIES = [
    pytest.param(_without("name"), "name", id="missing-name"),
    pytest.param(experiment_body(name=""), "name", id="empty-name"),
    pytest.param(experiment_body(name="x" * 129), "name", id="long-name"),
    pytest.param(experiment_body(name="has:colon"), "name", id="colon-in-name"),
    pytest.param(experiment_body(name=7), "name", id="name-not-string"),
    pytest.param(_variants({"name": "only", "weight": 1.0}), "variants", id="one-variant"),
    pytest.param(experiment_body(variants=[]), "variants", id="no-variants"),
    pytest.param(_without("variants"), "variants", id="missing-variants"),
    pytest.param(
        _variants({"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.4}), "variants", id="sum-0.9"
    ),
    pytest.param(
        _variants({"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5 + 1e-8}),
        "variants",
        id="sum-off-by-1e-8",
    ),
    pytest.param(
        _variants({"name": "a", "weight": 1.5}, {"name": "b", "weight": -0.5}),
        "variants[0].weight",
        id="weight-above-1",
    ),
    pytest.param(
        _variants({"name": "a", "weight": "0.5"}, {"name": "b", "weight": 0.5}),
        "variants[0].weight",
        id="weight-string",
    ),
    pytest.param(
        _variants({"name": "a", "weight": True}, {"name": "b", "weight": 0}),
        "variants[0].weight",
        id="weight-bool",
    ),
    pytest.param(
        _variants({"name": "a", "weight": 0.5}, {"name": "a", "weight": 0.5}), "variants", id="dup-names"
    ),
    pytest.param(
        _variants({"name": "a", "weight": 0}, {"name": "b", "weight": 1.0}),
        "variants[0].weight",
        id="weight-0",
    ),
    pytest.param(
        _variants({"name": "a", "weight": 5e-324}, {"name": "b", "weight": 1.0}),
        "variants[0].weight",
        id="weight-denormal",
    ),
    pytest.param(experiment_body(traffic_allocation=1e-300), "traffic_allocation", id="traffic-1e-300"),
    pytest.param(experiment_body(traffic_allocation=0.0009), "traffic_allocation", id="traffic-below-0.001"),
    pytest.param(
        _variants({"name": "", "weight": 0.5}, {"name": "b", "weight": 0.5}),
        "variants[0].name",
        id="empty-variant-name",
    ),
    pytest.param(
        _variants({"name": "v" * 65, "weight": 0.5}, {"name": "b", "weight": 0.5}),
        "variants[0].name",
        id="long-variant-name",
    ),
    pytest.param(
        _variants({"name": "a", "weight": 0.5, "config": [1, 2]}, {"name": "b", "weight": 0.5}),
        "variants[0].config",
        id="config-list",
    ),
    pytest.param(
        _variants({"name": "a", "weight": 0.5, "config": "x"}, {"name": "b", "weight": 0.5}),
        "variants[0].config",
        id="config-string",
    ),
    pytest.param(
        _variants(
            {"name": "a", "weight": 0.5, "config": {"blob": "x" * 20_000}}, {"name": "b", "weight": 0.5}
        ),
        "variants[0].config",
        id="config-too-large",
    ),
    pytest.param(
        _variants({"name": "a", "weight": 0.5, "colour": 1}, {"name": "b", "weight": 0.5}),
        "variants[0].colour",
        id="unknown-variant-field",
    ),
    pytest.param(experiment_body(traffic_allocation=1.01), "traffic_allocation", id="traffic-above-1"),
    pytest.param(experiment_body(traffic_allocation=-0.1), "traffic_allocation", id="traffic-negative"),
    pytest.param(experiment_body(traffic=0.5), "traffic", id="unknown-field"),
    pytest.param(experiment_body(salt=""), "salt", id="empty-salt"),
    pytest.param(experiment_body(description="d" * 2001), "description", id="long-description"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
def test_invalid_create_is_a_4xx_naming_the_field_and_stores_nothing(
    api: Any, sql: Any, body: dict[str, Any], field: str
) -> None:
    response = api("POST", BASE, body)

    assert response.status == 422, response
    assert response.json["error"] == "validation_error"
    assert field in {problem["field"] for problem in response.json["errors"]}, response.json
    assert sql("SELECT count(*) FROM experiments") == [(0,)]
    assert sql("SELECT count(*) FROM variants") == [(0,)]


def test_weights_summing_to_one_within_tolerance_are_accepted(api: Any) -> None:
    variants = [{"name": n, "weight": w} for n, w in (("a", 0.1), ("b", 0.2), ("c", 0.7))]
    assert create(api, variants=variants)["variants"][2]["weight"] == 0.7


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [
        ("{not json", 400, "invalid_json"),
        ('{"name": "a",}', 400, "invalid_json"),
        ("[]", 422, "validation_error"),
        ("null", 422, "validation_error"),
        ("", 422, "validation_error"),
        ('{"name": "a", "traffic_allocation": NaN, "variants": []}', 400, "invalid_json"),
    ],
)
def test_malformed_bodies_are_4xx_json(api: Any, sql: Any, raw: str, status: int, error: str) -> None:
    response = api("POST", BASE, raw_body=raw)
    assert (response.status, response.json["error"]) == (status, error), response
    assert sql("SELECT count(*) FROM experiments") == [(0,)]


def test_duplicate_name_is_409_and_the_first_is_untouched(api: Any, sql: Any) -> None:
    first = create(api)
    body = experiment_body(variants=[{"name": "x", "weight": 0.5}, {"name": "y", "weight": 0.5}])

    response = api("POST", BASE, body)

    assert response.status == 409
    assert response.json == {
        "error": "duplicate_name",
        "message": "an experiment with this name already exists",
        "field": "name",
    }
    assert sql("SELECT count(*) FROM experiments") == [(1,)]
    assert sql("SELECT name FROM variants ORDER BY position") == [("control",), ("treatment",)]
    assert api("GET", f"{BASE}/{first['id']}").json == first


def test_get_unknown_and_malformed_ids(api: Any) -> None:
    missing = api("GET", f"{BASE}/00000000-0000-4000-8000-000000000000")
    assert missing.status == 404
    assert missing.json["error"] == "experiment_not_found"
    malformed = api("GET", f"{BASE}/not-a-uuid")  # names no resource: 404, as a path must
    assert malformed.status == 404
    assert malformed.json["field"] == "experiment_id"


def test_list_defaults_to_running_and_filters(api: Any) -> None:
    draft = create(api, name="draft_one")
    running = create(api, name="running_one")
    assert set_status(api, running["id"], "running").status == 200

    default = api("GET", BASE).json
    assert [e["name"] for e in default["experiments"]] == ["running_one"]
    assert default["next_cursor"] is None
    every = api("GET", BASE, query="status=all").json
    assert [e["name"] for e in every["experiments"]] == ["draft_one", "running_one"]
    drafts = api("GET", BASE, query="status=draft").json
    assert [e["id"] for e in drafts["experiments"]] == [draft["id"]]
    by_name = api("GET", BASE, query="status=all&name=running_one").json
    assert [e["id"] for e in by_name["experiments"]] == [running["id"]]
    assert api("GET", BASE, query="name=draft_one").json["experiments"] == []


def test_list_paginates_with_a_cursor(api: Any) -> None:
    names = [f"exp_{i}" for i in range(5)]
    for name in names:
        create(api, name=name)

    seen: list[str] = []
    query = "status=all&limit=2"
    pages = 0
    while True:
        page = api("GET", BASE, query=query).json
        pages += 1
        seen += [e["name"] for e in page["experiments"]]
        if page["next_cursor"] is None:
            break
        query = f"status=all&limit=2&cursor={page['next_cursor']}"
    assert seen == names
    assert pages == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        ("name=bad%3Aname", "name"),
    ],
)
def test_list_rejects_bad_parameters(api: Any, query: str, field: str) -> None:
    response = api("GET", BASE, query=query)
    assert response.status == 422, response
    assert response.json["field"] == field


def test_lifecycle_records_timestamps(api: Any) -> None:
    experiment = create(api)
    eid = experiment["id"]

    started = set_status(api, eid, "running").json
    assert started["status"] == "running"
    assert started["started_at"] is not None
    paused = set_status(api, eid, "paused").json
    assert paused["status"] == "paused"
    resumed = set_status(api, eid, "running").json
    assert resumed["started_at"] == started["started_at"], "resuming keeps the original start"
    completed = set_status(api, eid, "completed").json
    assert completed["status"] == "completed"
    assert completed["completed_at"] is not None


@pytest.mark.parametrize(
    ("path", "target", "allowed"),
    [
        (["running", "completed"], "running", []),
        (["running", "completed"], "paused", []),
        ([], "paused", ["running"]),
        ([], "completed", ["running"]),
        (["running"], "draft", ["paused", "completed"]),
        (["running", "paused"], "draft", ["running", "completed"]),
    ],
)
def test_invalid_transitions_are_409_with_the_allowed_ones(
    api: Any, path: list[str], target: str, allowed: list[str]
) -> None:
    eid = create(api)["id"]
    for status in path:
        assert set_status(api, eid, status).status == 200

    response = set_status(api, eid, target)

    assert response.status == 409
    assert response.json["error"] == "invalid_transition"
    assert response.json["allowed"] == allowed
    assert response.json["field"] == "status"
    current = path[-1] if path else "draft"
    assert api("GET", f"{BASE}/{eid}").json["status"] == current


def test_status_body_is_validated(api: Any) -> None:
    eid = create(api)["id"]
    response = api("PUT", f"{BASE}/{eid}/status", {"status": "archived"})
    assert response.status == 422
    assert response.json["field"] == "status"
    assert set_status(api, "00000000-0000-4000-8000-000000000000", "running").status == 404


def test_same_status_is_an_idempotent_no_op(api: Any) -> None:
    eid = create(api)["id"]
    first = set_status(api, eid, "running").json
    again = set_status(api, eid, "running")
    assert again.status == 200
    assert again.json == first


def test_patch_a_draft_changes_anything(api: Any, sql: Any) -> None:
    eid = create(api)["id"]
    new_variants = [
        {"name": "a", "weight": 0.2, "config": {"lora_boost": 0.1}},
        {"name": "b", "weight": 0.3},
        {"name": "c", "weight": 0.5},
    ]

    response = api(
        "PATCH",
        f"{BASE}/{eid}",
        {"name": "renamed", "variants": new_variants, "traffic_allocation": 0.1, "description": "new"},
    )

    assert response.status == 200, response
    patched = response.json
    assert patched["name"] == "renamed"
    assert patched["traffic_allocation"] == 0.1
    assert patched["description"] == "new"
    assert [(v["name"], v["weight"]) for v in patched["variants"]] == [("a", 0.2), ("b", 0.3), ("c", 0.5)]
    assert sql("SELECT count(*) FROM variants") == [(3,)]


def test_patch_validates_variants_and_keeps_the_old_ones_on_error(api: Any, sql: Any) -> None:
    eid = create(api)["id"]
    response = api("PATCH", f"{BASE}/{eid}", {"variants": [{"name": "a", "weight": 1.0}]})
    assert response.status == 422
    assert response.json["field"] == "variants"
    assert sql("SELECT name FROM variants ORDER BY position") == [("control",), ("treatment",)]


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "body"), ({"name": None}, "body"), ({"salt": "x"}, "salt"), ({"status": "running"}, "status")],
)
def test_patch_rejects_empty_and_unknown_changes(api: Any, body: dict[str, Any], field: str) -> None:
    eid = create(api)["id"]
    response = api("PATCH", f"{BASE}/{eid}", body)
    assert response.status == 422, response
    assert response.json["field"] == field


def test_patch_running_allows_description_and_more_traffic_only(api: Any) -> None:
    created = create(api)
    eid = created["id"]
    set_status(api, eid, "running")

    ok = api("PATCH", f"{BASE}/{eid}", {"description": "still going", "traffic_allocation": 0.8})
    assert ok.status == 200
    assert (ok.json["description"], ok.json["traffic_allocation"]) == ("still going", 0.8)

    lower = api("PATCH", f"{BASE}/{eid}", {"traffic_allocation": 0.2})
    assert (lower.status, lower.json["error"], lower.json["field"]) == (
        409,
        "traffic_decrease",
        "traffic_allocation",
    )
    variants = copy.deepcopy(created["variants"])
    frozen = api(
        "PATCH",
        f"{BASE}/{eid}",
        # Configs alone may change (a new phase: tests/integration/test_config_schemas.py); names never.
        {"variants": [{"name": v["name"] + "2", "weight": v["weight"]} for v in variants]},
    )
    assert (frozen.status, frozen.json["error"], frozen.json["field"]) == (409, "field_frozen", "variants")
    renamed = api("PATCH", f"{BASE}/{eid}", {"name": "other"})
    assert (renamed.status, renamed.json["field"]) == (409, "name")
    assert api("GET", f"{BASE}/{eid}").json["traffic_allocation"] == 0.8


def test_patch_completed_is_refused(api: Any) -> None:
    eid = create(api)["id"]
    set_status(api, eid, "running")
    set_status(api, eid, "completed")
    response = api("PATCH", f"{BASE}/{eid}", {"description": "too late"})
    assert (response.status, response.json["error"]) == (409, "experiment_completed")


def test_patch_to_a_taken_name_is_409(api: Any) -> None:
    create(api, name="taken")
    eid = create(api, name="mine")["id"]
    response = api("PATCH", f"{BASE}/{eid}", {"name": "taken"})
    assert (response.status, response.json["error"]) == (409, "duplicate_name")


def test_delete_draft_only(api: Any, sql: Any) -> None:
    draft = create(api, name="draft")["id"]
    running = create(api, name="running")["id"]
    set_status(api, running, "running")

    assert api("DELETE", f"{BASE}/{draft}").status == 204
    assert api("GET", f"{BASE}/{draft}").status == 404
    assert api("DELETE", f"{BASE}/{draft}").status == 404
    refused = api("DELETE", f"{BASE}/{running}")
    assert (refused.status, refused.json["error"]) == (409, "experiment_not_draft")
    assert sql("SELECT name FROM experiments") == [("running",)]
    assert sql("SELECT count(*) FROM variants") == [(2,)]


def test_form_encoded_body_is_415(api: Any) -> None:
    from localdev.lambda_events import LocalLambdaContext, http_api_event
    from tests.integration.conftest import ALL_SCOPES, ROUTES, authorizer, match

    route, _ = match(ROUTES, "POST", BASE) or (None, {})
    assert route is not None
    event = http_api_event(
        "POST",
        BASE,
        route_key=route.route_key,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body="name=x",
        authorizer=authorizer(ALL_SCOPES),
    )
    response = route.load()(event, LocalLambdaContext())
    assert response["statusCode"] == 415


def test_unknown_route_in_the_handler_is_404_json(api: Any) -> None:
    import experiments_handler
    from localdev.lambda_events import LocalLambdaContext, http_api_event

    # In AWS an unknown route never reaches a handler; the resolver still answers JSON if one does.
    response = experiments_handler.app.resolve(
        http_api_event("GET", "/api/v1/nothing-here"), LocalLambdaContext()
    )
    assert response["statusCode"] == 404
    assert '"route_not_found"' in response["body"]


def test_lone_surrogates_in_free_text_are_422_not_500(api: Any, sql: Any) -> None:
    response = api(
        "POST",
        BASE,
        raw_body='{"name": "s", "description": "bad \\ud800 text", "variants": '
        '[{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}]}',
    )
    assert response.status == 422, response
    assert sql("SELECT count(*) FROM experiments") == [(0,)]


def test_the_smallest_weight_and_traffic_are_accepted_and_traffic_0_is_off(api: Any) -> None:
    body = _variants({"name": "a", "weight": 0.001}, {"name": "b", "weight": 0.999})
    assert api("POST", BASE, {**body, "traffic_allocation": 0.001}).status == 201
    assert api("POST", BASE, experiment_body(name="off", traffic_allocation=0)).status == 201


def test_negative_zero_is_stored_and_answered_as_zero(api: Any) -> None:
    body = _variants(
        {"name": "a", "weight": 0.5, "config": {"x": -0.0, "y": [-0.0]}}, {"name": "b", "weight": 0.5}
    )
    created = api("POST", BASE, {**body, "traffic_allocation": -0.0, "surface": "checkout"})
    assert created.status == 201, created
    stored = api("GET", f"{BASE}/{created.json['id']}")
    assert not re.search(r"[:\[,]-0[.,\]}]", stored.text), stored.text
    assert stored.json["traffic_allocation"] == 0
    assert stored.json["variants"][0]["config"] == {"x": 0.0, "y": [0.0]}


def test_a_repeated_key_is_refused_naming_it(api: Any, sql: Any) -> None:
    variants = '[{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}]'
    text = '{"name": "first", "name": "second", "variants": ' + variants + "}"
    response = call("POST", BASE, raw_body=text)
    assert response.status == 422, response
    assert (response.json["error"], response.json["field"]) == ("duplicate_key", "name")
    assert sql("SELECT count(*) FROM experiments") == [(0,)]
