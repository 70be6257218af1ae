"""Config schemas and phases over real HTTP (the local server): a schema refuses a wrong type and an
unknown key naming the config field, accepts a valid config; a stricter schema a running experiment
violates is a 409 naming it, and with mode warn its violating variant is served control's config
(config_invalid); a config change opens phase 2, users keep their variants and get the new config, and
/results reads the latest phase, one phase or all of them; /history shows the change."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Http

EXPERIMENTS = "/api/v1/experiments"
SCHEMA = "/api/v1/surfaces/search/config-schema"

OPEN = {
    "title": "SearchConfig",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "ranker": {"type": "string", "enum": ["bm25", "dense", "hybrid"]},
        "page_size": {"type": "integer", "minimum": 1, "maximum": 100},
    },
}
STRICTER = {
    **OPEN,
    "properties": {**OPEN["properties"], "ranker": {"type": "string", "enum": ["bm25", "dense"]}},
}


def body(name: str, treatment: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "surface": "search",
        "variants": [
            {"name": "control", "weight": 0.5, "config": {"ranker": "bm25", "page_size": 10}},
            {"name": "treatment", "weight": 0.5, "config": treatment},
        ],
    }


def assign(http: Http, experiment_id: str, user: str) -> dict[str, Any]:
    status, _, answer = http.request(
        "POST", "/api/v1/assignments", {"experiment_id": experiment_id, "user_id": user}
    )
    assert status == 200, answer
    result: dict[str, Any] = answer
    return result


def test_schemas_are_checked_when_configs_are_written_and_served(http: Http) -> None:
    status, _, published = http.request("PUT", SCHEMA, OPEN)
    assert (status, published["version"]) == (201, 1)

    status, _, wrong = http.request(
        "POST", EXPERIMENTS, body("search_a", {"ranker": "hybrid", "page_size": "20"})
    )
    assert (status, wrong["field"]) == (422, "variants[1].config.page_size")
    assert {e["keyword"] for e in wrong["errors"]} == {"type"}
    status, _, unknown = http.request("POST", EXPERIMENTS, body("search_a", {"rankr": "hybrid"}))
    assert (status, unknown["field"]) == (422, "variants[1].config.rankr")

    status, _, created = http.request(
        "POST", EXPERIMENTS, body("search_a", {"ranker": "hybrid", "page_size": 20})
    )
    assert status == 201, created
    eid = created["id"]
    status, _, _ = http.request("PUT", f"{EXPERIMENTS}/{eid}/status", {"status": "running"})
    assert status == 200
    first = {f"s-{n}": assign(http, eid, f"s-{n}") for n in range(30)}
    assert {a["reason"] for a in first.values()} == {"assigned"}

    status, _, refused = http.request("PUT", SCHEMA, STRICTER)
    assert (status, refused["error"]) == (409, "config_schema_violated")
    assert {v["experiment_name"] for v in refused["violations"]} == {"search_a"}
    assert "search_a" in refused["message"]

    status, _, warned = http.request("PUT", SCHEMA, {"schema": STRICTER, "mode": "warn"})
    assert (status, warned["version"], warned["mode"]) == (201, 2, "warn")
    # No waiting for the cache: the enrollment statement tells a container its view is older.
    after = {user: assign(http, eid, user) for user in first}
    for user, answer in after.items():
        assert answer["variant"]["name"] == first[user]["variant"]["name"]  # same variant (intent to treat)
        if answer["variant"]["name"] == "treatment":
            assert answer["reason"] == "config_invalid"
            assert answer["variant"]["config"] == {"ranker": "bm25", "page_size": 10}
            assert answer["variant"]["config_from"] == "control"
        else:
            assert answer["reason"] == "assigned"
        assert answer["variant"]["schema_version"] == 2
    status, _, results = http.request("GET", f"{EXPERIMENTS}/{eid}/results")
    assert results["phase"]["config_invalid_exposures"]["treatment"] > 0


def test_a_config_change_opens_a_phase_and_results_follow_it(http: Http) -> None:
    http.request("PUT", SCHEMA, OPEN)
    status, _, created = http.request(
        "POST", EXPERIMENTS, body("search_b", {"ranker": "dense", "page_size": 20})
    )
    assert status == 201, created
    eid = created["id"]
    http.request("PUT", f"{EXPERIMENTS}/{eid}/status", {"status": "running"})
    early = {f"e-{n}": assign(http, eid, f"e-{n}")["variant"]["name"] for n in range(16)}

    variants = body("search_b", {"ranker": "hybrid", "page_size": 20})["variants"]
    status, _, patched = http.request("PATCH", f"{EXPERIMENTS}/{eid}", {"variants": variants})
    assert (status, patched["phase"]) == (200, 2)

    late = [f"l-{n}" for n in range(10)]
    for user in late:
        assign(http, eid, user)
    returning = list(early)[:4]
    for user in returning:
        answer = assign(http, eid, user)
        assert answer["variant"]["name"] == early[user]
        if early[user] == "treatment":
            assert answer["variant"]["config"] == {"ranker": "hybrid", "page_size": 20}
            assert answer["variant"]["config_version"] == 2

    def users(query: str) -> int:
        status, _, answer = http.request("GET", f"{EXPERIMENTS}/{eid}/results{query}")
        assert status == 200, answer
        return sum(v["users"] for v in answer["variants"])

    assert users("") == users("?phase=2") == len(late) + len(returning)
    assert users("?phase=1") == len(early)
    assert users("?phase=all") == len(early) + len(late)
    status, _, history = http.request("GET", f"{EXPERIMENTS}/{eid}/history")
    assert "experiment.phase" in {event["action"] for event in history["events"]}
