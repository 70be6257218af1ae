"""A webhook receiver for the tests: a local HTTP server that keeps every request it gets (the
`receiver` fixture of tests/conftest.py serves one per test)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver(ThreadingHTTPServer):
    """Keeps every request (lower-cased headers, body); answers 500 to the first `fail_first` ones and
    `status` to the others."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 204
        self.fail_first = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            failing = len(self.server.requests) <= self.server.fail_first
        self.send_response(500 if failing else self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass
