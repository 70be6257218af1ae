"""Overrides over real HTTP (issue 12's acceptance): a PUT is served on the very next /assignments and
/recommendations with source "override"; the forced user's conversion is accepted, absent from /metrics
and /results and counted apart; DELETE brings back normal bucketing; bad writes store nothing."""

from __future__ import annotations

from abtest.contract.bucketing import bucket_for
from tests.e2e.conftest import Http
from tests.integration.test_experiments_api import experiment_body


def test_override_lifecycle_over_http(http: Http) -> None:
    status, _, experiment = http.request(
        "POST", "/api/v1/experiments", experiment_body(traffic_allocation=1.0)
    )
    assert status == 201
    path = f"/api/v1/experiments/{experiment['id']}"
    assert http.request("PUT", f"{path}/status", {"status": "running"})[0] == 200
    for n in range(4):  # real users, and a warm cache in the server's container
        assert (
            http.request(
                "POST", "/api/v1/assignments", {"experiment_id": experiment["id"], "user_id": f"r{n}"}
            )[0]
            == 200
        )
    index = bucket_for("qa@example.com", experiment["salt"], [0.5, 0.5], 1.0)
    assert index is not None
    forced = experiment["variants"][1 - index]  # the variant bucketing would NOT give

    status, _, written = http.request(
        "PUT", f"{path}/overrides/qa%40example.com", {"variant": forced["name"]}
    )
    assert (status, written["variant"], written["user_id"]) == (200, forced["name"], "qa@example.com")

    body = {"experiment_id": experiment["id"], "user_id": "qa@example.com"}
    _, _, assigned = http.request("POST", "/api/v1/assignments", body)
    assert (assigned["source"], assigned["reason"], assigned["variant"]["id"]) == (
        "override",
        "override",
        forced["id"],
    )
    _, _, recs = http.request("POST", "/api/v1/recommendations", {"user_id": "qa@example.com", "limit": 1})
    assert (recs["source"], recs["experiment_variant"]) == (
        "override",
        f"{experiment['name']}:{forced['name']}",
    )

    conversion = {**body, "metric_name": "click", "event_id": "qa-click-1"}
    status, headers, stored = http.request("POST", "/api/v1/experiments/conversions", conversion)
    assert (status, headers["Idempotent-Replayed"], stored["variant_id"]) == (201, "false", forced["id"])
    real = {
        "experiment_id": experiment["id"],
        "user_id": "r0",
        "metric_name": "click",
        "event_id": "r0-click",
    }
    assert http.request("POST", "/api/v1/experiments/conversions", real)[0] == 201

    _, _, metrics = http.request("GET", f"{path}/metrics")
    assert sum(v["unique_users"] for v in metrics["variant_metrics"].values()) == 4
    assert sum(v["conversions"]["click"]["count"] for v in metrics["variant_metrics"].values()) == 1
    assert metrics["overrides"] == {"active": 1, "users": 1, "exposures": 2, "conversions": 1}
    _, _, results = http.request("GET", f"{path}/results")
    assert sum(v["users"] for v in results["variants"]) == 4
    assert results["overrides"] == metrics["overrides"]
    _, _, listing = http.request("GET", f"{path}/overrides")
    assert [o["user_id"] for o in listing["overrides"]] == ["qa@example.com"]

    # Bad writes: nothing stored.
    for user, payload, expected in (
        ("qa2", {"variant": "nope"}, (422, "variant")),
        ("qa2", {"variant": 3}, (422, "variant")),
    ):
        status, _, error = http.request("PUT", f"{path}/overrides/{user}", payload)
        assert (status, error["field"]) == expected
    status, _, error = http.request(
        "PUT",
        "/api/v1/experiments/00000000-0000-4000-8000-000000000000/overrides/qa2",
        {"variant": "control"},
    )
    assert (status, error["error"]) == (404, "experiment_not_found")
    assert http.request("GET", f"{path}/overrides")[2]["count"] == 1

    assert http.request("DELETE", f"{path}/overrides/qa%40example.com")[0] == 204
    assert http.request("DELETE", f"{path}/overrides/qa%40example.com")[0] == 404
    _, _, again = http.request("POST", "/api/v1/assignments", body)
    assert (again["source"], again["reason"], again["variant"]["id"]) == (
        "assignment",
        "assigned",
        experiment["variants"][index]["id"],
    )

    assert http.request("PUT", f"{path}/status", {"status": "completed"})[0] == 200
    status, _, error = http.request("PUT", f"{path}/overrides/qa2", {"variant": "control"})
    assert (status, error["error"]) == (409, "experiment_completed")
    assert http.request("GET", f"{path}/overrides")[2]["count"] == 0
