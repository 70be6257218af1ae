"""The local server's own HTTP handling, in-process: many requests at once on its worker pool, clients
that hang up before their answer is written, and header bytes that are UTF-8."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.test_experiments_api import BASE, experiment_body


def _request(address: tuple[str, int], method: str, path: str, body: object = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*address, timeout=60)
    try:
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, path, payload, {"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_concurrent_requests_with_and_without_metrics_all_succeed(
    local_server: tuple[str, int], capfd: pytest.CaptureFixture[str]
) -> None:
    # Requests that add metrics (assignments) and requests that add none (reads) at once on the pool:
    # with Powertools' shared metric set, a flush could serialise a set another thread had just
    # cleared and fail with "Must contain at least one metric" (a 500 and a traceback).
    status, created = _request(local_server, "POST", BASE, experiment_body(traffic_allocation=1.0))
    assert status == 201, created
    experiment_id = json.loads(created)["id"]
    status, _ = _request(local_server, "PUT", f"{BASE}/{experiment_id}/status", {"status": "running"})
    assert status == 200

    def one(n: int) -> int:
        if n % 2:
            body = {"experiment_id": experiment_id, "user_id": f"user-{n}"}
            return _request(local_server, "POST", "/api/v1/assignments", body)[0]
        return _request(local_server, "GET", f"{BASE}/{experiment_id}")[0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(one, range(200)))
    assert statuses.count(200) == 200, sorted(set(statuses))
    out, err = capfd.readouterr()
    assert "Must contain at least one metric" not in out + err
    assert "Traceback" not in err
    assert out.count('"AssignmentServed":[1.0]') == 100  # each request published its own count


def test_a_client_that_hangs_up_leaves_no_traceback(
    local_server: tuple[str, int], capfd: pytest.CaptureFixture[str]
) -> None:
    for _ in range(20):
        sock = socket.create_connection(local_server)
        # A large answer (the OpenAPI document), then a reset instead of reading it.
        sock.sendall(b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    time.sleep(1)
    assert _request(local_server, "GET", "/api/v1/openapi.json")[0] == 200  # still serving
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    assert "ConnectionResetError" not in err


def _create_with_reason(address: tuple[str, int], reason: bytes) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection(*address, timeout=60)
    try:
        conn.putrequest("POST", BASE)
        body = json.dumps(experiment_body(name="reasoned")).encode()
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("X-Change-Reason", reason)  # raw bytes, as curl sends what the terminal typed
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_utf8_change_reason_is_stored_as_written_and_other_bytes_are_refused(
    local_server: tuple[str, int],
) -> None:
    # http.server reads header bytes as Latin-1: "café ✓" was stored as "cafÃ© â\x9c\x93".
    status, created = _create_with_reason(local_server, "café ✓ (ticket Ω-7)".encode())
    assert status == 201, created
    status, page = _request(local_server, "GET", f"{BASE}/{created['id']}/history")
    assert status == 200
    assert json.loads(page)["events"][0]["reason"] == "café ✓ (ticket Ω-7)"

    status, refused = _create_with_reason(local_server, b"caf\xe9")  # Latin-1, not UTF-8
    assert status == 400, refused
    assert (refused["error"], refused["field"]) == ("invalid_header", "X-Change-Reason")
