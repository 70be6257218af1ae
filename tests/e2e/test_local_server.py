"""The local server over real HTTP: routing, error shapes, concurrency, and the docs' curl walks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from localdev.postgres import PROJECT_ROOT
from localdev.walks import walk_outcome, walk_script
from tests.e2e.conftest import Http
from tests.integration.test_experiments_api import experiment_body


def get_json(http: Http) -> Callable[[str], Any]:
    """`walk_outcome`'s reader: a GET of an absolute URL on the test server, its JSON body."""

    def get(url: str) -> Any:
        status, _, body = http.request("GET", url.removeprefix(http.base_url))
        assert status == 200, (url, body)
        return body

    return get


def test_the_docs_curl_walks_run_as_documented(http: Http) -> None:
    # The docs' walks (localdev/walks.py, the same script `make sam-api-check` runs against sam local):
    # every request answers 2xx, or the 4xx its page documents, and leaves the expected state behind.
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = walk_script(http.base_url)

    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stderr[-5000:]
    assert walk_outcome(get_json(http), http.base_url) == []


def test_create_get_and_start_over_http(http: Http) -> None:
    status, headers, created = http.request("POST", "/api/v1/experiments", experiment_body())
    assert status == 201
    assert headers["Location"] == f"/api/v1/experiments/{created['id']}"
    assert http.request("GET", f"/api/v1/experiments/{created['id']}")[2] == created
    status, _, started = http.request(
        "PUT", f"/api/v1/experiments/{created['id']}/status", {"status": "running"}
    )
    assert (status, started["status"]) == (200, "running")
    status, _, body = http.request("PUT", f"/api/v1/experiments/{created['id']}/status", {"status": "draft"})
    assert (status, body["allowed"]) == (409, ["paused", "completed"])


@pytest.mark.parametrize(
    ("method", "path", "raw", "content_type", "status", "error"),
    [
        ("GET", "/nowhere", None, "application/json", 404, "route_not_found"),
        ("DELETE", "/api/v1/experiments", None, "application/json", 404, "route_not_found"),
        ("POST", "/api/v1/experiments", b"{oops", "application/json", 400, "invalid_json"),
        ("POST", "/api/v1/experiments", b"\xff\xfe", "application/json", 400, "invalid_json"),
        (
            "POST",
            "/api/v1/experiments",
            b"name=x",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        ("GET", "/api/v1/experiments/123", None, "application/json", 404, "not_found"),
    ],
)
def test_errors_are_json_over_http(
    http: Http, method: str, path: str, raw: bytes | None, content_type: str, status: int, error: str
) -> None:
    got_status, headers, body = http.request(method, path, raw=raw, content_type=content_type)
    assert (got_status, body["error"]) == (status, error)
    assert headers["Content-Type"].startswith("application/json")


def test_concurrent_creates_all_land(http: Http) -> None:
    def create(i: int) -> int:
        return http.request("POST", "/api/v1/experiments", experiment_body(name=f"concurrent_{i}"))[0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(create, range(40)))

    assert statuses == [201] * 40
    _, _, page = http.request("GET", "/api/v1/experiments?status=all&limit=100")
    assert len(page["experiments"]) == 40


def test_jwt_mode_checks_development_tokens(database_url: str) -> None:
    from localdev.auth import development_token
    from tests.e2e.conftest import start_server

    with start_server(database_url, "--auth", "jwt") as http:
        assert http.request("GET", "/api/v1/experiments")[0] == 403
        read = {"Authorization": f"Bearer {development_token(['read'])}"}
        admin = {"Authorization": f"Bearer {development_token(['admin'])}"}
        assert http.request("GET", "/api/v1/experiments", headers=read)[0] == 200
        status, _, body = http.request(
            "POST", "/api/v1/experiments", experiment_body(name="jwt_mode"), headers=read
        )
        assert (status, body["error"], body["scope"]) == (403, "insufficient_scope", "admin")
        status, _, _ = http.request(
            "POST", "/api/v1/experiments", experiment_body(name="jwt_mode"), headers=admin
        )
        assert status == 201


def test_no_auth_mode_refuses_to_bind_beyond_loopback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "localdev", "serve", "--host", "0.0.0.0", "--port", "0"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "127.0.0.1 only" in result.stderr
