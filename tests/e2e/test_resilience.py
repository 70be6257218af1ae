"""Resilience over real HTTP: a burst of concurrent requests, and the database going away mid-run."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from tests.e2e.conftest import Http
from tests.integration.test_experiments_api import experiment_body


def test_a_burst_of_200_concurrent_requests_loses_nothing(http: Http, clean_db: str) -> None:
    status, _, experiment = http.request(
        "POST", "/api/v1/experiments", experiment_body(traffic_allocation=1.0)
    )
    assert status == 201
    eid = experiment["id"]
    assert http.request("PUT", f"/api/v1/experiments/{eid}/status", {"status": "running"})[0] == 200

    def user_flow(n: int) -> list[int]:
        statuses = [
            http.request("POST", "/api/v1/assignments", {"experiment_id": eid, "user_id": f"u{n}"})[0]
        ]
        body = {"experiment_id": eid, "user_id": f"u{n}", "metric_name": "purchase", "event_id": f"e{n}"}
        statuses.append(http.request("POST", "/api/v1/experiments/conversions", body)[0])
        return statuses

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(user_flow, range(100)))

    assert results == [[200, 201]] * 100
    _, _, metrics = http.request("GET", f"/api/v1/experiments/{eid}/metrics")
    variants = metrics["variant_metrics"].values()
    assert sum(v["unique_users"] for v in variants) == 100
    assert sum(v["conversions"]["purchase"]["count"] for v in variants) == 100
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM assignments").fetchone() == (100,)
        assert conn.execute("SELECT count(*) FROM conversions").fetchone() == (100,)


def test_database_outage_mid_run(http: Http, clean_db: str, outage: Callable[[bool], None]) -> None:
    status, _, experiment = http.request(
        "POST", "/api/v1/experiments", experiment_body(traffic_allocation=1.0)
    )
    eid = experiment["id"]
    http.request("PUT", f"/api/v1/experiments/{eid}/status", {"status": "running"})
    assert http.request("POST", "/api/v1/recommendations", {"user_id": "before", "limit": 2})[0] == 200
    outage(True)
    try:
        during: list[tuple[int, Any]] = []
        for _ in range(5):
            status, _, body = http.request(
                "POST", "/api/v1/recommendations", {"user_id": "during", "limit": 2}
            )
            during.append((status, body.get("degraded")))
            write = http.request("POST", "/api/v1/experiments", experiment_body(name="during_outage"))
            assert (write[0], write[2]["error"]) == (503, "database_unavailable")
            conversion = {"experiment_id": eid, "user_id": "before", "metric_name": "click"}
            assert http.request("POST", "/api/v1/experiments/conversions", conversion)[0] == 503
        assert all(status == 200 and degraded is True for status, degraded in during)
    finally:
        outage(False)

    assert (
        http.request("POST", "/api/v1/recommendations", {"user_id": "after", "limit": 2})[2]["degraded"]
        is False
    )
    status, _, _ = http.request("POST", "/api/v1/experiments", experiment_body(name="after_outage"))
    assert status == 201
    with psycopg.connect(clean_db) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM experiments ORDER BY name")]
        assert names == ["after_outage", experiment["name"]]
        assert conn.execute("SELECT count(*) FROM conversions").fetchone() == (0,)
