"""Overload: the local server sheds what it cannot start soon with 503 `overloaded` and Retry-After,
never a 500, a traceback or a hung connection, and every event it accepted is stored (a refused
request stored nothing: resent after Retry-After, it is stored once)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from tests.integration.test_experiments_api import BASE, experiment_body


@pytest.fixture
def small_server(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, tuple[str, int]]]:
    """The local server with 2 worker threads and room for 2 requests: easy to overload."""
    import threading

    from abtest import wiring
    from localdev.server import PooledHTTPServer
    from localdev.template import http_routes

    monkeypatch.setenv("AUTH_MODE", "none")
    wiring.reset()
    server = PooledHTTPServer(("127.0.0.1", 0), http_routes(), workers=2, max_pending=2)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, ("127.0.0.1", int(server.server_address[1]))
    finally:
        server.shutdown()
        server.server_close()
        monkeypatch.undo()
        wiring.reset()


def _post(address: tuple[str, int], path: str, body: object) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection(*address, timeout=30)  # a hung connection fails the test
    try:
        conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
    finally:
        conn.close()


def test_overload_answers_503_retry_after_and_loses_no_accepted_event(
    small_server: tuple[Any, tuple[str, int]], clean_db: str, capfd: pytest.CaptureFixture[str]
) -> None:
    server, address = small_server
    status, _, created = _post(address, BASE, experiment_body(traffic_allocation=1.0))
    assert status == 201
    experiment_id = created["id"]
    conn = http.client.HTTPConnection(*address, timeout=30)
    conn.request("PUT", f"{BASE}/{experiment_id}/status", json.dumps({"status": "running"}).encode())
    assert conn.getresponse().status == 200
    conn.close()
    users = [f"u{n}" for n in range(200)]
    for user in users:
        assert (
            _post(
                address,
                "/api/v1/assignments",
                {"experiment_id": experiment_id, "user_id": user, "record_exposure": False},
            )[0]
            == 200
        )

    def batch(n: int) -> dict[str, Any]:
        return {
            "events": [
                {"type": "exposure", "experiment_id": experiment_id, "user_id": u, "event_id": f"b{n}-{u}"}
                for u in users
            ]
        }

    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(lambda n: (n, *_post(address, "/api/v1/events", batch(n))), range(48)))
    statuses = sorted({status for _, status, _, _ in answers})
    assert set(statuses) <= {200, 503}, statuses
    refused = [(n, headers, body) for n, status, headers, body in answers if status == 503]
    assert refused, "24 clients at once against 2 workers: some must be refused"
    assert server.shed >= len(refused)
    for _, headers, body in refused:
        assert body["error"] == "overloaded"
        assert int(headers["Retry-After"]) >= 1
    accepted = sum(body["accepted"] for _, status, _, body in answers if status == 200)

    def stored() -> int:
        with psycopg.connect(clean_db) as db:
            row = db.execute("SELECT count(*) FROM exposures").fetchone()
            return int(row[0]) if row else 0

    assert stored() == accepted  # every accepted event is there; a refused batch stored nothing

    # Resent after Retry-After, one at a time: all stored, each once.
    for n, _headers, _ in refused:
        time.sleep(0.05)
        status, _, body = _post(address, "/api/v1/events", batch(n))
        assert status == 200
        assert body["accepted"] == len(users)
    assert stored() == 48 * len(users)
    _, err = capfd.readouterr()
    assert "Traceback" not in err
