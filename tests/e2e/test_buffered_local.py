"""`make run` with INGEST_MODE=buffered: the local server queues events in-process and its writer
thread stores them, as SQS and IngestFunction do in AWS; outcomes are read back by event id. Several
server processes (--processes 2) share the port."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import start_server
from tests.integration.test_experiments_api import BASE, experiment_body


def test_buffered_ingestion_on_the_local_server(
    clean_db: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_MODE", "buffered")
    with start_server(database_url, "--processes", "2", "--workers", "4") as http:
        status, _, created = http.request("POST", BASE, experiment_body(traffic_allocation=1.0))
        assert status == 201
        experiment_id = created["id"]
        assert http.request("PUT", f"{BASE}/{experiment_id}/status", {"status": "running"})[0] == 200
        body = {"experiment_id": experiment_id, "user_id": "alice", "record_exposure": False}
        assert http.request("POST", "/api/v1/assignments", body)[0] == 200
        conversion = {"experiment_id": experiment_id, "user_id": "alice", "metric_name": "purchase"}
        status, _, queued = http.request("POST", "/api/v1/experiments/conversions", conversion)
        assert status == 202, queued
        batch = {
            "events": [
                {"type": "exposure", "experiment_id": experiment_id, "user_id": "alice", "event_id": "x1"},
                {"type": "exposure", "experiment_id": experiment_id, "user_id": "bob", "event_id": "x2"},
            ]
        }
        status, _, answer = http.request("POST", "/api/v1/events", batch)
        assert (status, answer["queued"]) == (202, 2)
        outcomes = {}
        deadline = time.monotonic() + 20
        for event_id in (queued["event_id"], "x1", "x2"):
            query = f"/api/v1/events/outcome?experiment_id={experiment_id}&event_id={event_id}"
            while True:
                status, _, found = http.request("GET", query)
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert status == 200, found
            outcomes[event_id] = found["outcomes"][0]
        assert outcomes[queued["event_id"]]["status"] == "accepted"
        assert outcomes["x1"]["status"] == "accepted"
        assert (outcomes["x2"]["status"], outcomes["x2"]["error"]) == ("rejected", "user_not_assigned")
        status, _, metrics = http.request("GET", f"{BASE}/{experiment_id}/metrics")
        assert status == 200
        assert sum(v["unique_users"] for v in metrics["variant_metrics"].values()) == 1, metrics
