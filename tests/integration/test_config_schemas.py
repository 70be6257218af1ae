"""Config schemas of surfaces and config phases, through the handlers against the real database."""

from __future__ import annotations

from typing import Any

import pytest

BASE = "/api/v1/experiments"
SCHEMA_URL = "/api/v1/surfaces/checkout/config-schema"

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "CheckoutConfig",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "button": {"type": "string", "enum": ["green", "blue", "red"]},
        "min_items": {"type": "integer", "minimum": 0},
        "max_items": {"type": "integer", "minimum": 1},
    },
    "invariants": [{"min_items": {"$lte": {"$field": "max_items"}}}],
}


def experiment(name: str = "checkout-test", **configs: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "surface": "checkout",
        "variants": [
            {"name": "control", "weight": 0.5, "config": configs.get("control", {"button": "green"})},
            {"name": "treatment", "weight": 0.5, "config": configs.get("treatment", {"button": "blue"})},
        ],
    }


def publish(api: Any, schema: dict[str, Any], **kwargs: Any) -> Any:
    return api("PUT", SCHEMA_URL, schema, **kwargs)


def test_schema_versions_are_immutable_and_readable(api: Any) -> None:
    assert api("GET", SCHEMA_URL).status == 404
    first = publish(api, SCHEMA)
    assert first.status == 201, first
    assert first.json["version"] == 1
    loose = {**SCHEMA, "additionalProperties": True}
    assert publish(api, loose).json["version"] == 2
    current = api("GET", SCHEMA_URL)
    assert current.json["x-version"] == 2
    assert current.json["additionalProperties"] is True
    older = api("GET", SCHEMA_URL, query="version=1")
    assert older.json["additionalProperties"] is False
    assert older.json["invariants"] == SCHEMA["invariants"]
    listing = api("GET", f"{SCHEMA_URL}/versions")
    assert [v["version"] for v in listing.json["versions"]] == [2, 1]
    assert api("GET", SCHEMA_URL, query="version=9").json["error"] == "config_schema_not_found"


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"$ref": "https://example.com/schema.json"}, "schema.$ref"),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "schema.$defs.a"),
        (
            {"properties": {"x": {"type": "string", "pattern": "(?=lookahead)"}}},
            "schema.properties.x.pattern",
        ),
        ({"properties": {"x": {"$dynamicRef": "#meta"}}}, "schema.properties.x.$dynamicRef"),
        ({"properties": {"x": {"maxLenght": 3}}}, "schema.properties.x.maxLenght"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "schema.$schema"),
        ({"properties": {"x": {"format": "credit-card"}}}, "schema.properties.x.format"),
    ],
)
def test_untrusted_schemas_are_refused(api: Any, schema: dict[str, Any], field: str) -> None:
    response = publish(api, schema)
    assert response.status == 422, response
    assert response.json["field"] == field


def test_configs_are_checked_at_write_time(api: Any) -> None:
    publish(api, SCHEMA)
    wrong_type = api("POST", BASE, experiment(treatment={"button": 3}))
    assert wrong_type.status == 422
    assert wrong_type.json["field"] == "variants[1].config.button"
    assert "type" in {e["keyword"] for e in wrong_type.json["errors"]}
    unknown = api("POST", BASE, experiment(treatment={"buton": "blue"}))
    assert unknown.status == 422
    assert unknown.json["field"] == "variants[1].config.buton"
    assert unknown.json["errors"][0]["keyword"] == "additionalProperties"
    invariant = api("POST", BASE, experiment(treatment={"min_items": 5, "max_items": 2}))
    assert invariant.status == 422
    assert invariant.json["errors"][0]["keyword"] == "invariants[0]"
    created = api("POST", BASE, experiment())
    assert created.status == 201, created
    assert [v["schema_version"] for v in created.json["variants"]] == [1, 1]
    edit = api(
        "PATCH", f"{BASE}/{created.json['id']}", {"variants": experiment(treatment={"button": 1})["variants"]}
    )
    assert edit.status == 422
    assert edit.json["field"] == "variants[1].config.button"


def test_the_recommendations_surface_ships_its_schema(api: Any) -> None:
    schema = api("GET", "/api/v1/surfaces/recommendations/config-schema")
    assert schema.status == 200
    assert set(schema.json["properties"]) == {"lora_boost", "diversity", "candidate_cap"}
    body = experiment(treatment={"lora_bost": 0.5})
    body["surface"] = "recommendations"
    body["variants"][0]["config"] = {"lora_boost": 0.1}
    response = api("POST", BASE, body)
    assert response.status == 422
    assert response.json["field"] == "variants[1].config.lora_bost"


def start(api: Any, experiment_id: str) -> None:
    response = api("PUT", f"{BASE}/{experiment_id}/status", {"status": "running"})
    assert response.status == 200, response


def assign(api: Any, experiment_id: str, user: str) -> dict[str, Any]:
    response = api("POST", "/api/v1/assignments", {"experiment_id": experiment_id, "user_id": user})
    assert response.status == 200, response
    result: dict[str, Any] = response.json
    return result


def test_a_stricter_schema_is_refused_then_published_with_warn(api: Any, sql: Any) -> None:
    publish(api, SCHEMA)
    created = api("POST", BASE, experiment(treatment={"button": "red"})).json
    start(api, created["id"])
    stricter = {**SCHEMA, "properties": {**SCHEMA["properties"], "button": {"enum": ["green", "blue"]}}}
    refused = publish(api, stricter)
    assert refused.status == 409, refused
    assert refused.json["error"] == "config_schema_violated"
    assert refused.json["violations"][0]["experiment_name"] == "checkout-test"
    assert refused.json["violations"][0]["variant"] == "treatment"
    warned = publish(api, {"schema": stricter, "mode": "warn"})
    assert warned.status == 201
    assert warned.json["mode"] == "warn"
    assert warned.json["violations"][0]["field"] == "variants[1].config.button"
    # Users of the violating variant are served control's config, and stay in their variant.
    served = {}
    for n in range(40):
        answer = assign(api, created["id"], f"user-{n}")
        served[answer["variant"]["name"]] = answer
    treated, control = served["treatment"], served["control"]
    assert treated["reason"] == "config_invalid"
    assert treated["variant"]["config"] == {"button": "green"}
    assert treated["variant"]["config_from"] == "control"
    assert treated["variant"]["schema_version"] == 2
    assert control["reason"] == "assigned"
    assert control["variant"]["config"] == {"button": "green"}
    fallbacks = sql(
        "SELECT count(*) FILTER (WHERE config_fallback), count(*) FILTER (WHERE NOT config_fallback)"
        " FROM exposures e JOIN variants v ON v.id = e.variant_id WHERE v.name = 'treatment'"
    )
    assert fallbacks[0][0] > 0
    assert fallbacks[0][1] == 0


def test_control_invalid_too_serves_untagged_defaults(api: Any) -> None:
    publish(api, SCHEMA)
    created = api("POST", BASE, experiment(control={"button": "red"}, treatment={"button": "red"})).json
    start(api, created["id"])
    publish(api, {"schema": {**SCHEMA, "properties": {"button": {"enum": ["blue"]}}}, "mode": "warn"})
    answer = assign(api, created["id"], "someone")
    assert answer["reason"] == "config_invalid"
    assert answer["variant"] is None
    assert answer["experiment_variant"] is None


def test_a_config_change_opens_a_phase(api: Any, sql: Any) -> None:
    publish(api, SCHEMA)
    created = api("POST", BASE, experiment()).json
    eid = created["id"]
    start(api, eid)
    before = {f"u{n}": assign(api, eid, f"u{n}")["variant"]["name"] for n in range(20)}
    bad = api("POST", f"{BASE}/{eid}/phases", {"variants": [{"name": "treatment", "config": {"button": 9}}]})
    assert bad.status == 422
    assert bad.json["field"] == "variants[1].config.button"
    opened = api(
        "POST",
        f"{BASE}/{eid}/phases",
        {"variants": [{"name": "treatment", "config": {"button": "red"}}], "reason": "red converts"},
    )
    assert opened.status == 201, opened
    assert opened.json["phase"] == 2
    after = {user: assign(api, eid, user) for user in before}
    assert {user: a["variant"]["name"] for user, a in after.items()} == before
    treated = next(a for a in after.values() if a["variant"]["name"] == "treatment")
    assert treated["variant"]["config"] == {"button": "red"}
    assert treated["variant"]["config_version"] == 2
    assert sql("SELECT DISTINCT phase FROM exposures ORDER BY phase") == [(1,), (2,)]
    # Any other writer of exposures (batch events) gets the phase from the trigger.
    sql(
        "INSERT INTO exposures (experiment_id, variant_id, user_id)"
        " SELECT experiment_id, id, 'batch-user' FROM variants WHERE experiment_id = %s LIMIT 1"
        " RETURNING phase",
        (eid,),
    )
    assert sql("SELECT phase FROM exposures WHERE user_id = 'batch-user'") == [(2,)]
    # Weights stay frozen; re-publishing version 1 is phase 3; PATCH with only configs changed is phase 4.
    weights = experiment()["variants"]
    weights[0]["weight"], weights[1]["weight"] = 0.4, 0.6
    assert api("PATCH", f"{BASE}/{eid}", {"variants": weights}).json["error"] == "field_frozen"
    back = api("POST", f"{BASE}/{eid}/phases", {"variants": [{"name": "treatment", "config_version": 1}]})
    assert back.json["phase"] == 3
    assert back.json["variants"][1]["config"] == {"button": "blue"}
    patched = api(
        "PATCH", f"{BASE}/{eid}", {"variants": experiment(treatment={"button": "green"})["variants"]}
    )
    assert patched.status == 200, patched
    assert patched.json["phase"] == 4
    phases = api("GET", f"{BASE}/{eid}/phases").json
    assert [p["phase"] for p in phases["phases"]] == [1, 2, 3, 4]
    assert phases["phases"][1]["reason"] == "red converts"
    assert [v["config_version"] for v in phases["phases"][2]["variants"]] == [1, 1]
    versions = api("GET", f"{BASE}/{eid}/variants/treatment/config-versions").json
    assert [v["version"] for v in versions["versions"]] == [1, 2, 3]
    history = api("GET", f"{BASE}/{eid}/history").json["events"]
    assert "experiment.phase" in {e["action"] for e in history}


def convert(api: Any, experiment_id: str, user: str) -> None:
    body = {"experiment_id": experiment_id, "user_id": user, "metric_name": "purchase", "value": 1}
    response = api("POST", "/api/v1/experiments/conversions", body)
    assert response.status in (200, 201), response


def users_by_variant(results: dict[str, Any]) -> dict[str, int]:
    return {v["name"]: v["users"] for v in results["variants"]}


def test_results_default_to_the_latest_phase(api: Any) -> None:
    created = api("POST", BASE, experiment()).json
    eid = created["id"]
    start(api, eid)
    early = [f"early-{n}" for n in range(12)]
    for user in early:
        assign(api, eid, user)
        convert(api, eid, user)
    api("POST", f"{BASE}/{eid}/phases", {"variants": [{"name": "treatment", "config": {"button": "red"}}]})
    late = [f"late-{n}" for n in range(8)]
    for user in [*late, *early[:3]]:  # three early users come back in phase 2
        assign(api, eid, user)
    latest = api("GET", f"{BASE}/{eid}/results").json
    assert latest["phase"]["phase"] == 2
    assert latest["phase"]["label"] == "phase 2 of 2 (latest)"
    assert sum(users_by_variant(latest).values()) == 11
    assert api("GET", f"{BASE}/{eid}/results", query="phase=2").json["variants"] == latest["variants"]
    first = api("GET", f"{BASE}/{eid}/results", query="phase=1").json
    assert sum(users_by_variant(first).values()) == 12
    # The purchases were all made in phase 1: phase 2 counts none of them, even of returning users.
    assert "purchase" in first["metrics"]
    assert "purchase" not in latest["metrics"]
    pooled = api("GET", f"{BASE}/{eid}/results", query="phase=all").json
    assert pooled["phase"]["phase"] == "all"
    assert sum(users_by_variant(pooled).values()) == 20
    assert api("GET", f"{BASE}/{eid}/results", query="phase=3").status == 422
    series = api("GET", f"{BASE}/{eid}/results/timeseries").json
    assert [p["phase"] for p in series["phases"]] == [1, 2]
    report = api("GET", f"{BASE}/{eid}/report")
    assert "phase 2 of 2 (latest)" in report.raw["body"]


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"lora_boost": 1},
        {"lora_boost": 1.5},
        {"lora_boost": "0.5"},
        {"lora_boost": True},
        {"lora_boost": None},
        {"diversity": -0.1},
        {"candidate_cap": 5.0},
        {"candidate_cap": 5.5},
        {"candidate_cap": 0},
        {"algo": "bm25"},
        {"diversity": 1, "lora_boost": 0, "candidate_cap": 10000},
    ],
)
def test_the_migration_stamps_old_recommender_configs_as_the_schema_judges_them(
    sql: Any, config: dict[str, Any]
) -> None:
    import json
    from importlib import resources

    from abtest.domain.config_schemas import check_schema
    from abtest.domain.recommender_config import RECOMMENDER_CONFIG_SCHEMA

    text = (resources.files("abtest.storage.migrations") / "0015_config_schemas.sql").read_text()
    predicate = text.split("-- predicate:begin")[1].split("-- predicate:end")[0]
    (row,) = sql(f"SELECT {predicate} FROM (SELECT %s::jsonb AS c) AS t", (json.dumps(config),))
    assert row[0] is check_schema(RECOMMENDER_CONFIG_SCHEMA).is_valid(config)
