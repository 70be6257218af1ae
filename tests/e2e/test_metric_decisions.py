"""The decision through the local server, over HTTP only: users enrolled with POST /assignments (which
records their exposure), their conversions sent in batches to POST /events."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Http

USERS = 300


def post(http: Http, path: str, body: Any) -> Any:
    status, _, answer = http.request("POST", path, body)
    assert status in (200, 201), (path, status, answer)
    return answer


def run(http: Http, name: str, latency_shift: float, weights: tuple[float, float]) -> dict[str, Any]:
    experiment = post(
        http,
        "/api/v1/experiments",
        {
            "name": name,
            "surface": name,
            "traffic_allocation": 1.0,
            "variants": [
                {"name": "control", "weight": weights[0]},
                {"name": "treatment", "weight": weights[1]},
            ],
            "metrics": {
                "goals": ["checkout"],
                "guardrails": [{"name": "latency", "margin": 0.02}],
                "secondary": ["revenue"],
            },
            "decision": {"framework": "clear_signals", "min_days": 0},
        },
    )
    status, _, _ = http.request(
        "PUT", f"/api/v1/experiments/{experiment['id']}/status", {"status": "running"}
    )
    assert status == 200
    events: list[dict[str, Any]] = []
    for k in range(USERS):
        user = f"{name}-user-{k}"
        assigned = post(http, "/api/v1/assignments", {"experiment_id": experiment["id"], "user_id": user})
        treated = assigned["variant"]["name"] == "treatment"
        base = {"type": "conversion", "experiment_id": experiment["id"], "user_id": user}
        latency = 100.0 + (k % 7) - 3 + (latency_shift if treated else 0.0)
        events.append({**base, "event_id": f"l-{k}", "metric_name": "latency", "value": latency})
        if k % 10 < (9 if treated else 3):
            events.append({**base, "event_id": f"c-{k}", "metric_name": "checkout"})
            events.append({**base, "event_id": f"r-{k}", "metric_name": "revenue", "value": 20.0})
    for first in range(0, len(events), 1000):
        answer = post(http, "/api/v1/events", {"events": events[first : first + 1000]})
        assert all(result["status"] == "accepted" for result in answer["results"]), answer
    status, _, results = http.request("GET", f"/api/v1/experiments/{experiment['id']}/results")
    assert status == 200
    decision: dict[str, Any] = results["decision"]
    return decision


def test_ship_then_rollback_through_the_local_server(http: Http) -> None:
    for definition in (
        {"name": "checkout", "type": "proportion"},
        {"name": "latency", "type": "mean", "direction": "lower"},
        {"name": "revenue", "type": "mean"},
    ):
        post(http, "/api/v1/metric-definitions", definition)

    shipped = run(http, "ship_it", 0.0, (0.5, 0.5))
    assert (shipped["action"], shipped["variant"]) == ("ship", "treatment"), shipped

    rolled_back = run(http, "roll_it_back", 10.0, (0.5, 0.5))
    assert rolled_back["action"] == "rollback", rolled_back
