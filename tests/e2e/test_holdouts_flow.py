"""Holdouts over real HTTP through the local server: a holdout on one surface keeps its users out of
that surface's experiment on both routes while the measurement group is enrolled, conversions of both
groups are accepted, the results compare the two groups, and bad input stores nothing."""

from __future__ import annotations

from typing import Any

import pytest

from abtest.contract.holdouts import holdout_group, holdout_size
from tests.e2e.conftest import Http
from tests.integration.test_experiments_api import experiment_body

HOLDOUTS = "/api/v1/holdouts"


def ok(http: Http, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    got, _, payload = http.request(method, path, body)
    assert got == status, payload
    return payload


def test_a_holdout_keeps_its_users_out_and_compares_the_groups(http: Http) -> None:
    experiment = ok(
        http,
        "POST",
        "/api/v1/experiments",
        experiment_body("feed_ranking", surface="feed", traffic_allocation=1.0),
        201,
    )
    ok(http, "PUT", f"/api/v1/experiments/{experiment['id']}/status", {"status": "running"})
    elsewhere = ok(
        http, "POST", "/api/v1/experiments", experiment_body("search_ranking", surface="search"), 201
    )
    ok(http, "PUT", f"/api/v1/experiments/{elsewhere['id']}/status", {"status": "running"})
    holdout = ok(http, "POST", HOLDOUTS, {"name": "feed_h1", "percent": 0.1, "surfaces": ["feed"]}, 201)
    hid = holdout["id"]
    assert ok(http, "PUT", f"{HOLDOUTS}/{hid}/status", {"status": "running"})["status"] == "running"

    size = holdout_size(holdout["percent"])
    users = [f"user-{n}" for n in range(300)]
    held = [u for u in users if holdout_group(holdout["salt"], u, size) == "holdout"]
    measured = [u for u in users if holdout_group(holdout["salt"], u, size) == "measurement"]
    assert len(held) > 10
    assert len(measured) > 10

    for user in held:
        body = ok(http, "POST", "/api/v1/recommendations", {"user_id": user, "surface": "feed", "limit": 2})
        assert (body["reason"], body["experiment_variant"]) == ("holdout", None)
        assert {item["experiment_variant"] for item in body["recommendations"]} <= {None}
        asked = ok(http, "POST", "/api/v1/assignments", {"experiment_id": experiment["id"], "user_id": user})
        assert (asked["enrolled"], asked["reason"], asked["variant"]) == (False, "holdout", None)
        lookup = ok(http, "GET", f"/api/v1/experiments/{experiment['id']}/assignments/{user}")
        assert lookup["enrolled"] is False
        # The holdout covers feed only: the search experiment may enroll them.
        other = ok(http, "POST", "/api/v1/assignments", {"experiment_id": elsewhere["id"], "user_id": user})
        assert other["reason"] != "holdout"
    for user in measured:
        body = ok(http, "POST", "/api/v1/recommendations", {"user_id": user, "surface": "feed", "limit": 2})
        assert body["reason"] == "assigned"
        assert body["experiment_variant"].startswith("feed_ranking:")

    # Conversions of both groups are accepted: held-out users' as holdout conversions.
    for user in held[:5]:
        conversion = ok(
            http,
            "POST",
            "/api/v1/experiments/conversions",
            {
                "experiment_id": experiment["id"],
                "user_id": user,
                "metric_name": "click",
                "event_id": f"{user}-c",
            },
            201,
        )
        assert (conversion["holdout_conversion"], conversion["variant_id"]) == (True, None)
    for user in measured[:10]:
        conversion = ok(
            http,
            "POST",
            "/api/v1/experiments/conversions",
            {
                "experiment_id": experiment["id"],
                "user_id": user,
                "metric_name": "click",
                "event_id": f"{user}-c",
            },
            201,
        )
        assert conversion["holdout_conversion"] is False
        assert conversion["variant_id"] is not None

    results = ok(http, "GET", f"{HOLDOUTS}/{hid}/results")
    assert [(g["name"], g["users"]) for g in results["groups"]] == [
        ("holdout", len(held)),
        ("measurement", len(measured)),
    ]
    click = results["metrics"]["click"]["conversion"]["comparisons"][0]["absolute"]
    assert click["estimate"] == pytest.approx(10 / len(measured) - 5 / len(held))
    # The experiment's own metrics never see the holdout's conversions.
    metrics = ok(http, "GET", f"/api/v1/experiments/{experiment['id']}/metrics")
    assert (
        sum(v["conversions"].get("click", {}).get("count", 0) for v in metrics["variant_metrics"].values())
        == 10
    )

    # Pausing releases them: a held-out user is enrolled on the next request.
    ok(http, "PUT", f"{HOLDOUTS}/{hid}/status", {"status": "paused"})
    released = ok(
        http, "POST", "/api/v1/recommendations", {"user_id": held[0], "surface": "feed", "limit": 1}
    )
    assert released["reason"] == "assigned"
    completed = ok(http, "PUT", f"{HOLDOUTS}/{hid}/status", {"status": "completed"})
    assert completed["completed_at"] is not None
    status, _, refused = http.request("PUT", f"{HOLDOUTS}/{hid}/status", {"status": "running"})
    assert (status, refused["error"], refused["allowed"]) == (409, "invalid_transition", [])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "h", "percent": 0.05}, "surfaces"),
        ({"name": "h", "percent": 0.05, "surfaces": ["feed"], "all": True}, "surfaces"),
        ({"name": "h", "percent": 0.5, "all": True}, "percent"),
        ({"name": "h", "percent": 0.05, "all": False}, "all"),
    ],
)
def test_invalid_holdouts_are_422_and_store_nothing(http: Http, body: dict[str, Any], field: str) -> None:
    status, _, error = http.request("POST", HOLDOUTS, body)
    assert (status, error["error"], error["field"]) == (422, "validation_error", field)
    assert ok(http, "GET", HOLDOUTS) == {"holdouts": [], "next_cursor": None}
