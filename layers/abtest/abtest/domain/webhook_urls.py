"""Which webhook URLs the service may call, checked when a URL is written and again at every delivery.

A webhook makes the service send requests to an address someone typed in, from inside a VPC: without
rules it would fetch the instance metadata (169.254.169.254, fd00:ec2::254), the database or any other
private service for them (server-side request forgery). The rules:

- `https` only in AWS mode; local mode (the development server) also allows `http` to 127.0.0.1, [::1]
  and localhost, so that tests and developers can run a receiver on their machine;
- no user name or password in the URL, no fragment, no odd spelling of a host: an IPv4 address is
  four decimal numbers (`2130706433`, `0x7f.1`, `0177.0.0.1` and `127.1` are refused, as browsers and
  some resolvers would read them as 127.0.0.1), IPv6 in brackets without a zone, names are ASCII
  letters, digits and hyphens (IDNs in their `xn--` form);
- every address the host resolves to must be publicly routable: no loopback (except in local mode),
  link-local, private, unique-local, site-local, multicast, unspecified, reserved or shared (CGNAT)
  address, in IPv4, IPv6 or an IPv6 form that embeds an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
  NAT64 `64:ff9b::/96`, 6to4, Teredo), whose IPv4 address must pass too.

At delivery the host is resolved once (`pin_webhook_url`), every address is checked, and the connection
is made to the checked address (abtest.delivery.pinned_http), never by name again: a DNS answer that
changes between check and connect (rebinding) cannot redirect the request. Redirects are not followed.

The resolver is injected (`Resolver`), so this module does no I/O and its tests need no DNS.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from abtest.errors import ErrorCode, InvalidInput
from abtest.limits import MAX_WEBHOOK_URL_LENGTH

__all__ = [
    "PinnedWebhookUrl",
    "Resolver",
    "UnsafeWebhookUrl",
    "WebhookUrl",
    "check_webhook_url",
    "forbidden_reason",
    "parse_webhook_url",
    "pin_webhook_url",
]

# host, port -> the addresses it resolves to (as strings). Raises OSError when it cannot resolve.
Resolver = Callable[[str, int], Sequence[str]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# A last label that some parser would read as a number: decimal, octal or 0x-hex (WHATWG URL's rule).
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


class UnsafeWebhookUrl(InvalidInput):
    """A webhook URL the service will not call: HTTP 422 naming `url`; `details["reason"]` says why."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, code=ErrorCode.INVALID_WEBHOOK_URL, field="url")
        self.reason = reason
        self.details["reason"] = reason


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    """A syntactically acceptable webhook URL, split into what the connection needs."""

    url: str
    scheme: str
    host: str
    """Lower-case name or address as written (IPv6 without brackets): the TLS server name and Host."""
    port: int
    target: str
    """Path and query: the request target (`/` when the URL has no path)."""

    @property
    def literal_address(self) -> Address | None:
        """The address when the host is an IP literal, else None."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class PinnedWebhookUrl:
    """A webhook URL with the one checked address the delivery must connect to."""

    url: WebhookUrl
    address: str


def _refuse(message: str, reason: str) -> UnsafeWebhookUrl:
    return UnsafeWebhookUrl(f"url: {message}", reason=reason)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and would reach: mapped, NAT64, 6to4 or Teredo client."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def forbidden_reason(address: Address, *, allow_loopback: bool = False) -> str | None:
    """Why the service may not connect to `address` (e.g. "link-local"), or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = forbidden_reason(embedded, allow_loopback=allow_loopback)
            if reason is not None or address.ipv4_mapped is not None or address in _NAT64:
                # Mapped and NAT64 addresses reach exactly their IPv4 address: its verdict is theirs.
                return None if reason is None else f"{reason} (embedded IPv4 {embedded})"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return None if allow_loopback else "loopback"
    if address in _METADATA:
        return "link-local (instance metadata)"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address):
        if address in _UNIQUE_LOCAL:
            return "unique-local"
        if address.is_site_local:
            return "site-local"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "shared (carrier-grade NAT)"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


def _check_host_spelling(host: str) -> None:
    """Refuse hosts that are neither a canonical IP address nor a plain ASCII DNS name."""
    labels = host.removesuffix(".").split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # The WHATWG URL standard (and inet_aton) read such a host as an IPv4 address, in any of its
        # spellings: only the canonical dotted quad is allowed, so that what is checked is what is called.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise _refuse(
                f"{host!r} is not a valid host: write an IPv4 address as four decimal numbers",
                "host_syntax",
            ) from None
        return
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _refuse(
            f"{host!r} is not a valid host name (ASCII letters, digits and hyphens; IDNs as xn--)",
            "host_syntax",
        )


def parse_webhook_url(url: str, *, local_mode: bool) -> WebhookUrl:
    """Check a URL's syntax and scheme (no DNS); raises UnsafeWebhookUrl naming `url`."""
    if not url:
        raise _refuse("a webhook URL is required", "syntax")
    if len(url) > MAX_WEBHOOK_URL_LENGTH:
        raise _refuse(f"at most {MAX_WEBHOOK_URL_LENGTH} characters", "syntax")
    if any(ord(char) <= 0x20 or ord(char) >= 0x7F or char == "\\" for char in url):
        raise _refuse(
            "spaces, control characters, backslashes and non-ASCII characters are not allowed", "syntax"
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _refuse(f"not a valid URL ({exc})", "syntax") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise _refuse("the scheme must be https", "scheme")
    if "@" in parts.netloc:
        raise _refuse("a user name or password in the URL is not allowed", "userinfo")
    if parts.fragment or url.endswith("#"):
        raise _refuse("a fragment (#...) is not allowed", "syntax")
    if "%" in parts.netloc:
        raise _refuse("percent-encoding and IPv6 zones are not allowed in the host", "host_syntax")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise _refuse(f"not a valid URL ({exc})", "syntax") from None
    if not host:
        raise _refuse("the URL has no host", "syntax")
    if port == 0:
        raise _refuse("port 0 is not a destination", "syntax")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _refuse(f"{host!r} is not a valid IPv6 address", "host_syntax") from None
    else:
        _check_host_spelling(host)
    if scheme == "http" and not (local_mode and host in _LOCAL_HOSTS):
        raise _refuse(
            "the scheme must be https (http only to 127.0.0.1, [::1] or localhost on the local server)",
            "scheme",
        )
    if not local_mode and (host == "localhost" or host.endswith((".localhost", ".localhost."))):
        raise _refuse("localhost is not a webhook destination", "forbidden_address")
    default_port = 443 if scheme == "https" else 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebhookUrl(url=url, scheme=scheme, host=host, port=port or default_port, target=target)


def _checked_addresses(parsed: WebhookUrl, *, local_mode: bool, resolve: Resolver) -> list[str]:
    """Every address of the host, each checked; the host's own when it is an IP literal."""
    literal = parsed.literal_address
    if literal is not None:
        candidates = [str(literal)]
    else:
        try:
            candidates = list(resolve(parsed.host, parsed.port))
        except (OSError, UnicodeError) as exc:
            raise _refuse(f"{parsed.host!r} does not resolve ({exc})", "unresolvable") from None
        if not candidates:
            raise _refuse(f"{parsed.host!r} does not resolve to any address", "unresolvable")
    checked = []
    for candidate in candidates:
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            raise _refuse(
                f"{parsed.host!r} resolved to {candidate!r}, not an address", "unresolvable"
            ) from None
        reason = forbidden_reason(address, allow_loopback=local_mode)
        if reason is not None:
            where = f"{address} is" if literal is not None else f"{parsed.host!r} resolves to {address},"
            raise _refuse(f"{where} a {reason} address: not a webhook destination", "forbidden_address")
        checked.append(str(address))
    return checked


def check_webhook_url(url: str, *, local_mode: bool, resolve: Resolver) -> WebhookUrl:
    """The check when a URL is written (POST/PATCH): syntax, scheme, and every address it resolves to now."""
    parsed = parse_webhook_url(url, local_mode=local_mode)
    _checked_addresses(parsed, local_mode=local_mode, resolve=resolve)
    return parsed


def pin_webhook_url(url: str, *, local_mode: bool, resolve: Resolver) -> PinnedWebhookUrl:
    """The check at delivery: resolve once, check every address, and return the address to connect to.

    The caller connects to `address` (with the URL's host as TLS server name and Host header) and never
    resolves the name again; a resolver that now answers differently than at write time is caught here.
    """
    parsed = parse_webhook_url(url, local_mode=local_mode)
    addresses = _checked_addresses(parsed, local_mode=local_mode, resolve=resolve)
    return PinnedWebhookUrl(url=parsed, address=addresses[0])
