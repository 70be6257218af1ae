"""Start the local HTTP server (python -m localdev serve) against the test database."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from localdev.postgres import PROJECT_ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Http:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers or {}
        )
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, headers, payload = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, headers, payload = error.code, dict(error.headers), error.read()
        return status, headers, json.loads(payload) if payload else None


@contextlib.contextmanager
def start_server(database_url: str, *args: str, env: dict[str, str] | None = None) -> Iterator[Http]:
    """Run `python -m localdev serve` on a free port until the block ends; `env` adds variables (the
    timers of localdev/ticker.py are off unless `env` turns them on: other tests truncate the tables)."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "LOCAL_TICKS": "off",
        **(env or {}),
    }
    # The server's log goes to a file: an unread pipe would fill up and block the server.
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        # Tests make their own data: no demo experiment (tests/e2e/test_report_browser.py creates it).
        [sys.executable, "-m", "localdev", "serve", "--port", str(port), "--no-demo", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    http = Http(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{http.base_url}/api/v1/nowhere", timeout=10):
                break
        except urllib.error.HTTPError:
            break  # the server answers (404 for an unknown route)
        except OSError:  # refused, reset, or no answer within the probe's timeout on a loaded machine
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"local server did not start:\n{log.read()}") from None
            time.sleep(0.2)
    try:
        yield http
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[Http]:
    with start_server(database_url) as http:
        yield http


@pytest.fixture
def http(server: Http, clean_db: str) -> Http:
    return server


@pytest.fixture
def local_server(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """The local server in this process (its own worker threads, as `make run` serves): what a test
    needs of its internals (its log on this process's stderr, its threads) that a subprocess hides."""
    from abtest import wiring
    from localdev.server import PooledHTTPServer
    from localdev.template import http_routes

    monkeypatch.setenv("AUTH_MODE", "none")  # as `python -m localdev serve` runs it
    wiring.reset()
    server = PooledHTTPServer(("127.0.0.1", 0), http_routes(), workers=8)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        monkeypatch.undo()
        wiring.reset()
