"""One HTTP(S) POST to a webhook, connected to a pre-checked address: no second DNS lookup, no redirects.

`abtest.domain.webhook_urls.pin_webhook_url` resolves the host once and checks every address; this
module connects to the address it returns, while TLS verifies the certificate for the URL's host name
(sent as SNI) and the request carries that name in `Host`. http.client never follows redirects: a 3xx
is returned like any other status, and the caller records it as a failed attempt.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

from abtest.domain.webhook_urls import PinnedWebhookUrl
from abtest.limits import MAX_WEBHOOK_RESPONSE_BYTES

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "DeliveryResponse", "post", "system_resolver"]

# Connect, send and wait for the answer: a receiver should acknowledge fast and work later.
DEFAULT_TIMEOUT_SECONDS = 10.0


def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer for `host` (IPv4 and IPv6, TCP), unique addresses in its order."""
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canonical, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


@dataclass(frozen=True, slots=True)
class DeliveryResponse:
    """What the receiver answered: status, its headers (lower-case names) and the start of its body."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_seconds: float

    @property
    def ok(self) -> bool:
        """A 2xx answer: delivered. Anything else, 3xx included, is a failed attempt."""
        return 200 <= self.status < 300


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection whose socket goes to a fixed address; `host` stays the name for the Host header."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPSConnection whose socket goes to a fixed address, verified as `host` (SNI and certificate)."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


def post(
    pinned: PinnedWebhookUrl,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    tls: ssl.SSLContext | None = None,
) -> DeliveryResponse:
    """POST `body` to the pinned address; raises OSError (timeouts, refused, TLS errors) on no answer.

    `timeout` bounds the connection and each read; the whole exchange is also cut off after twice that.
    `tls` defaults to the system's trust store with hostname checking.
    """
    url = pinned.url
    started = time.monotonic()
    connection: http.client.HTTPConnection
    if url.scheme == "https":
        context = tls if tls is not None else ssl.create_default_context()
        connection = _PinnedHTTPSConnection(url.host, url.port, pinned.address, timeout, context)
    else:
        connection = _PinnedHTTPConnection(url.host, url.port, pinned.address, timeout)
    try:
        connection.request("POST", url.target, body=body, headers=dict(headers))
        response = connection.getresponse()
        chunks: list[bytes] = []
        kept = 0
        while kept < MAX_WEBHOOK_RESPONSE_BYTES:
            if time.monotonic() - started > 2 * timeout:
                raise TimeoutError("the receiver is answering too slowly")
            chunk = response.read1(MAX_WEBHOOK_RESPONSE_BYTES - kept)
            if not chunk:
                break
            chunks.append(chunk)
            kept += len(chunk)
        return DeliveryResponse(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=b"".join(chunks),
            elapsed_seconds=time.monotonic() - started,
        )
    except http.client.HTTPException as exc:
        # A malformed answer is no answer: one error type (OSError) for the caller to record.
        raise ConnectionError(f"invalid HTTP response: {type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
