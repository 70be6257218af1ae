"""abtest.delivery.pinned_http against real receivers on 127.0.0.1 (local mode): the request arrives signed
and verifiable, goes to the pinned address without a second lookup, is not redirected, times out, and
over TLS is verified as the URL's host name (SNI), not as the address."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook

from abtest.delivery.pinned_http import post, system_resolver
from abtest.domain.webhook_signing import generate_secret, message_id, signed_headers
from abtest.domain.webhook_urls import UnsafeWebhookUrl, pin_webhook_url

BODY = b'{"type": "srm_detected", "timestamp": "2026-12-07T06:00:00Z", "data": {"experiment_id": 7}}'


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    requests: list[Received] = field(default_factory=list)
    status: int = 204
    extra_headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    server_names: list[str | None] = field(default_factory=list)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            receiver.requests.append(
                Received(
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
            )
            time.sleep(receiver.delay)
            self.send_response(receiver.status)
            for name, value in receiver.extra_headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (the timeout test) or refused the certificate is expected here.
        return


@pytest.fixture
def serve() -> Iterator[Callable[..., Receiver]]:
    servers: list[ThreadingHTTPServer] = []

    def start(tls: ssl.SSLContext | None = None) -> Receiver:
        server = _QuietServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        receiver = Receiver(port=server.server_address[1])
        server.RequestHandlerClass = _handler(receiver)
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: receiver.server_names.append(name)
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return receiver

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def only(address: str) -> Callable[[str, int], Sequence[str]]:
    """A resolver that answers one address for any name (and counts nothing: see the pinning test)."""
    return lambda _host, _port: [address]


def test_a_signed_delivery_arrives_and_verifies_with_the_standard_library(
    serve: Callable[..., Receiver],
) -> None:
    receiver = serve()
    secret = generate_secret()
    msg_id = message_id()
    pinned = pin_webhook_url(
        f"http://localhost:{receiver.port}/hooks/abtest?team=growth",
        local_mode=True,
        resolve=only("127.0.0.1"),
    )
    headers = {"content-type": "application/json", **signed_headers(secret, msg_id, BODY)}
    response = post(pinned, BODY, headers, timeout=5)
    assert response.ok
    assert response.status == 204
    [request] = receiver.requests
    assert request.path == "/hooks/abtest?team=growth"
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert request.body == BODY
    assert request.headers["webhook-id"] == msg_id
    assert Webhook(secret).verify(request.body, request.headers)["data"] == {"experiment_id": 7}
    assert secret not in str(request.headers)


def test_redirects_are_not_followed(serve: Callable[..., Receiver]) -> None:
    target = serve()
    redirector = serve()
    redirector.status = 307
    redirector.extra_headers = {"location": f"http://127.0.0.1:{target.port}/elsewhere"}
    pinned = pin_webhook_url(
        f"http://127.0.0.1:{redirector.port}/h", local_mode=True, resolve=only("127.0.0.1")
    )
    response = post(pinned, BODY, {}, timeout=5)
    assert response.status == 307
    assert not response.ok
    assert len(redirector.requests) == 1
    assert target.requests == []


def test_a_slow_receiver_times_out(serve: Callable[..., Receiver]) -> None:
    receiver = serve()
    receiver.delay = 3.0
    pinned = pin_webhook_url(
        f"http://127.0.0.1:{receiver.port}/h", local_mode=True, resolve=only("127.0.0.1")
    )
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        post(pinned, BODY, {}, timeout=0.5)
    assert time.monotonic() - started < 2.5


def test_a_closed_port_is_an_oserror() -> None:
    pinned = pin_webhook_url("http://127.0.0.1:9/h", local_mode=True, resolve=only("127.0.0.1"))
    with pytest.raises(ConnectionRefusedError):
        post(pinned, BODY, {}, timeout=2)


def test_a_rebinding_name_is_refused_before_any_connection(serve: Callable[..., Receiver]) -> None:
    receiver = serve()
    answers = iter([["127.0.0.1"], ["10.0.0.8"]])

    def rebinding(host: str, port: int) -> Sequence[str]:
        return next(answers)

    url = f"http://localhost:{receiver.port}/h"
    assert post(pin_webhook_url(url, local_mode=True, resolve=rebinding), BODY, {}, timeout=5).ok
    with pytest.raises(UnsafeWebhookUrl):
        pin_webhook_url(url, local_mode=True, resolve=rebinding)
    assert len(receiver.requests) == 1


def _self_signed(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for `name` only, and a client context that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def test_https_goes_to_the_pinned_address_verified_as_the_url_host_sent_as_sni(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    # ".invalid" never resolves in real DNS (RFC 6761): reaching the receiver proves that the connection
    # used the pinned address and looked nothing up by name.
    server_tls, client_tls = _self_signed(tmp_path, "hooks.invalid")
    receiver = serve(server_tls)
    with pytest.raises(socket.gaierror):
        system_resolver("hooks.invalid", receiver.port)
    lookups: list[str] = []

    def once(host: str, port: int) -> Sequence[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    pinned = pin_webhook_url(f"https://hooks.invalid:{receiver.port}/h?x=1", local_mode=True, resolve=once)
    assert pinned.address == "127.0.0.1"
    response = post(pinned, BODY, {"content-type": "application/json"}, timeout=5, tls=client_tls)
    assert response.ok
    assert lookups == ["hooks.invalid"]
    assert receiver.server_names == ["hooks.invalid"]
    assert receiver.requests[0].headers["host"] == f"hooks.invalid:{receiver.port}"
    assert receiver.requests[0].path == "/h?x=1"
    # The same address under another name fails verification: the certificate is checked for the name.
    other = pin_webhook_url(
        f"https://other.invalid:{receiver.port}/h", local_mode=True, resolve=only("127.0.0.1")
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        post(other, BODY, {}, timeout=5, tls=client_tls)
    assert len(receiver.requests) == 1
    # And the default context (the system's trust store) does not trust a self-signed certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        post(pinned, BODY, {}, timeout=5)
