"""Through the local server over real HTTP (as `make run` serves it): an exposure or a conversion dated
before the experiment's start changes neither /results nor the time series' length (issue 19)."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Http
from tests.e2e.test_hardening import BASE, convert, enroll, send, start


def readings(http: Http, experiment_id: str) -> tuple[Any, int]:
    status, results, _ = send(http, "GET", f"{BASE}/{experiment_id}/results")
    assert status == 200, results
    results.pop("computed_at")
    status, series, _ = send(http, "GET", f"{BASE}/{experiment_id}/results/timeseries")
    assert status == 200, series
    return results, len(series["points"])


def test_events_dated_before_the_start_change_no_read(http: Http) -> None:
    experiment = start(http, "dated_before_start")
    eid = experiment["id"]
    for user in ("u-1", "u-2"):
        enroll(http, eid, user)  # assigned and exposed now
    assert convert(http, eid, "u-1", value=2.0)[0] == 201
    before = readings(http, eid)
    assert before[1] == 1

    batch = {
        "events": [
            {"type": "exposure", "experiment_id": eid, "user_id": "u-2", "event_id": "old-x"}
            | {"timestamp": "2000-01-02T00:00:00Z"},
            {"type": "conversion", "experiment_id": eid, "user_id": "u-2", "event_id": "old-c"}
            | {"metric_name": "purchase", "timestamp": "2000-01-03T00:00:00Z"},
        ]
    }
    status, answer, _ = send(http, "POST", "/api/v1/events", batch)
    assert status == 200, answer
    assert [(r["status"], r["error"]) for r in answer["results"]] == [("rejected", "event_before_start")] * 2
    status, refused = convert(http, eid, "u-2", timestamp="2000-01-03T00:00:00Z")
    assert (status, refused["error"], refused["field"]) == (422, "event_before_start", "timestamp")

    assert readings(http, eid) == before
