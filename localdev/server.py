"""A local stand-in for API Gateway (like `sam local start-api`, without Docker).

Each HTTP request becomes an HTTP API v2 event for the handler that serves that route in AWS (routes
are read from template.yaml) and is invoked in-process. Requests run on a small pool of worker
threads; each thread keeps its own database connection, like one warm Lambda container each.
`--processes N` forks N such servers on one listening socket (the load benchmark's setting).

Overload is refused, never queued without bound: a request that finds `max_pending` requests already
waiting or running, or that waited in the queue longer than `max_wait` seconds, is answered at once
with 503 `overloaded` and `Retry-After` (as API Gateway and Lambda throttle before any handler in AWS).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from abtest.errors import ErrorCode
from localdev.auth import authorizer_context
from localdev.lambda_events import LocalLambdaContext, http_api_event
from localdev.openapi import build_spec, render
from localdev.template import Route, http_routes, match

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
OPENAPI_PATH = "/api/v1/openapi.json"  # served by the local server only


class _BodyTooLarge(ValueError):
    """The body is larger than API Gateway accepts (413, unlike a malformed length: 400)."""


RETRY_AFTER_SECONDS = 1


class PooledHTTPServer(HTTPServer):
    """HTTPServer that serves requests on a bounded thread pool and sheds what it cannot start soon."""

    request_queue_size = 256
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        routes: list[Route],
        workers: int = 16,
        check_tokens: bool = False,
        max_pending: int | None = None,
        max_wait: float = 5.0,
    ) -> None:
        super().__init__(address, LambdaProxyHandler)
        self.routes = routes
        self.check_tokens = check_tokens
        self.openapi = render(build_spec()).encode()
        self.max_pending = max_pending if max_pending is not None else workers * 8
        self.max_wait = max_wait
        self._pending = 0
        self._lock = threading.Lock()
        self.shed = 0  # requests answered 503 overloaded
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        # Refusals are cheap but still read the request (a client must see the 503, not a reset).
        self._shedders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shed")

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            admitted = self._pending < self.max_pending
            if admitted:
                self._pending += 1
        if admitted:
            self._pool.submit(self._serve, request, client_address, time.monotonic())
        else:
            self._shedders.submit(self._refuse, request, client_address)

    def _serve(self, request: Any, client_address: Any, queued_at: float) -> None:
        try:
            if time.monotonic() - queued_at > self.max_wait:
                self._refuse(request, client_address)
                return
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._lock:
                self._pending -= 1
            self.shutdown_request(request)

    def _refuse(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self.shed += 1
        try:
            OverloadedHandler(request, client_address, self)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up before its answer is written (reset, broken pipe) is normal for a
        server: one quiet line, not a traceback. Anything else keeps the standard traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            sys.stderr.write(f"{client_address[0]} hung up before the answer was written\n")
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._shedders.shutdown(wait=False, cancel_futures=True)


class LambdaProxyHandler(BaseHTTPRequestHandler):
    server: PooledHTTPServer
    server_version = "abtest-local"
    # A client that announces more body than it sends must not hold a worker forever.
    timeout = 10

    def do_GET(self) -> None:
        self._proxy()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET  # noqa: N815

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, PROPFIND, ...) is routed like API Gateway does: no route, JSON 404.
        if name.startswith("do_"):
            return self._proxy
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors (malformed request line, oversized headers) as JSON, not HTML."""
        body = json.dumps(
            {"error": ErrorCode.BAD_REQUEST, "message": message or explain or "bad request"}
        ).encode()
        self.close_connection = True
        self._send(code, {"Content-Type": "application/json", "Connection": "close"}, body)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _proxy(self) -> None:
        try:
            body = self._read_body()
        except _BodyTooLarge as exc:
            self._refuse(413, ErrorCode.BODY_TOO_LARGE, str(exc), "body")
            return
        except ValueError as exc:
            self._refuse(400, ErrorCode.BAD_REQUEST, str(exc), "content-length")
            return
        try:
            # http.server decodes the request line as Latin-1; the bytes are UTF-8 (as API Gateway reads
            # them), and so must be whatever the path percent-encodes ("%FF%FE" names nothing).
            path = self.path.encode("latin-1").decode("utf-8")
            unquote_to_bytes(urlsplit(path).path).decode("utf-8")
        except UnicodeError:
            self._refuse(
                400, ErrorCode.INVALID_PATH, "the path is not UTF-8 (raw or percent-encoded)", "path"
            )
            return
        headers = {}
        for name, value in self.headers.items():
            # Header bytes too arrive Latin-1-decoded; clients send UTF-8 ("café" typed in a terminal).
            # Bytes that are not UTF-8 are refused, naming the header, rather than stored as mojibake.
            try:
                headers[name] = value.encode("latin-1").decode("utf-8")
            except UnicodeError:
                self._refuse(400, ErrorCode.INVALID_HEADER, f"the {name} header is not UTF-8", name)
                return
        url = urlsplit(path)
        if self.command == "GET" and url.path == OPENAPI_PATH:
            self._send(200, {"Content-Type": "application/json"}, self.server.openapi)
            return
        found = match(self.server.routes, self.command, url.path)
        if found is None:
            payload = {
                "error": ErrorCode.ROUTE_NOT_FOUND,
                "message": f"no route for {self.command} {url.path}",
            }
            self._send(404, {"Content-Type": "application/json"}, json.dumps(payload).encode())
            return
        route, params = found
        event = http_api_event(
            self.command,
            url.path,
            route_key=route.route_key,
            path_parameters=params,
            query=url.query,
            headers=headers,
            body=body,
            source_ip=self.client_address[0],
            authorizer=authorizer_context(self.headers.get("Authorization"))
            if self.server.check_tokens
            else None,
        )
        try:
            result = route.load()(event, LocalLambdaContext(function_name=route.function))
        except Exception:
            traceback.print_exc()
            self._send(500, {"Content-Type": "application/json"}, b'{"message":"Internal Server Error"}')
            return
        self._send(*_http_response(result))

    def _refuse(self, status: int, code: ErrorCode, message: str, field: str) -> None:
        self.close_connection = True
        error = json.dumps({"error": code, "message": message, "field": field}).encode()
        self._send(status, {"Content-Type": "application/json"}, error)

    def _read_body(self) -> bytes | None:
        """The request body, whether sent with Content-Length or chunked (as API Gateway accepts)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise _BodyTooLarge("the body exceeds 10 MB")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks) or None
        text = (self.headers.get("Content-Length") or "0").strip()
        if not text.isascii() or not text.isdigit():  # int() would take "-5", " 5" or "5_0"
            raise ValueError(f"invalid Content-Length: {text[:40]!r}")
        length = int(text)
        if length > MAX_BODY_BYTES:
            raise _BodyTooLarge("the body exceeds 10 MB")
        return self.rfile.read(length) if length else None

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)


class OverloadedHandler(LambdaProxyHandler):
    """Reads the request (so the client sees the answer, not a reset) and answers 503 overloaded."""

    timeout = 2

    def _proxy(self) -> None:
        with contextlib.suppress(ValueError):
            self._read_body()
        body = json.dumps(
            {
                "error": ErrorCode.OVERLOADED,
                "message": "the server is at capacity; retry after the Retry-After delay",
            }
        ).encode()
        self.close_connection = True
        headers = {"Content-Type": "application/json", "Retry-After": str(RETRY_AFTER_SECONDS)}
        self._send(503, headers, body)


def _http_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Turn a Lambda proxy (v2) result into status, headers and body, as API Gateway does."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return 200, {"Content-Type": "application/json"}, json.dumps(result).encode()
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    headers = {str(name): str(value) for name, value in (result.get("headers") or {}).items()}
    for cookie in result.get("cookies") or []:
        headers.setdefault("Set-Cookie", cookie)
    return int(result["statusCode"]), headers, raw


def serve(
    host: str = "127.0.0.1",
    port: int = 3000,
    workers: int = 16,
    check_tokens: bool = False,
    processes: int = 1,
    max_pending: int | None = None,
) -> None:
    """Serve every route of template.yaml until interrupted (in `processes` forked processes)."""
    routes = http_routes()
    for route in routes:
        route.load()  # fail at start-up, not on the first request, if a handler cannot import
    server = PooledHTTPServer(
        (host, port), routes, workers=workers, check_tokens=check_tokens, max_pending=max_pending
    )
    bound_host, bound_port = server.server_address[:2]
    print(f"serving {len(routes)} routes on http://{bound_host!s}:{bound_port}", flush=True)
    for route in sorted(routes, key=lambda r: (r.path, r.method)):
        print(f"  {route.method:<6} {route.path}  -> {route.function}", flush=True)
    parent = os.getpid()
    children = _fork(processes - 1)
    ticks = None
    if os.getpid() == parent:  # after the fork: one process runs the timers, never a copy per child
        from localdev.ticker import start_ticks

        ticks = start_ticks()  # the rollup and webhook deliveries on timers, as AWS schedules them
    if children:
        print(f"{processes} processes x {workers} worker threads", flush=True)

        def stop(*_: Any) -> None:
            raise KeyboardInterrupt  # the finally below stops the children too

        signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if ticks is not None:
            ticks.set()
        server.server_close()
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)


def _exit_with(parent: int) -> None:
    """A child's watch: end when the parent is gone (killed without the chance to stop us)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _fork(count: int) -> list[int]:
    """Fork `count` copies of this server (after the socket is bound, before any connection is
    opened: the database connection of the start-up is closed first); the children's ids."""
    if count <= 0:
        return []
    from abtest import wiring

    wiring.reset()  # no connection may be shared by two processes
    children = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # a child: serve until the parent sends SIGTERM (or Ctrl-C reaches the group)
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
            parent = os.getppid()
            threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
            return []
        children.append(pid)
    return children
