"""abtest.domain.webhook_urls with an injected resolver: accepted and refused URLs, every forbidden address
family in IPv4, IPv6 and embedded forms, odd IPv4 spellings, and DNS rebinding between write and delivery."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abtest.domain.webhook_urls import (
    UnsafeWebhookUrl,
    check_webhook_url,
    forbidden_reason,
    parse_webhook_url,
    pin_webhook_url,
)
from abtest.errors import InvalidInput

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"

ZONE: dict[str, list[str]] = {
    "hooks.example.com": [PUBLIC_V4, PUBLIC_V6],
    "internal.example.com": ["10.1.2.3"],
    "mixed.example.com": [PUBLIC_V4, "127.0.0.1"],
    "meta.example.com": ["169.254.169.254"],
    "v6meta.example.com": ["fd00:ec2::254"],
    "mapped.example.com": ["::ffff:10.0.0.1"],
    "cgnat.example.com": ["100.64.1.1"],
    "empty.example.com": [],
    "garbage.example.com": ["not-an-address"],
    "localhost": ["127.0.0.1", "::1"],
}


def resolver(zone: dict[str, list[str]] | None = None) -> Callable[[str, int], Sequence[str]]:
    table = ZONE if zone is None else zone

    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return table[host]

    return resolve


def refused(url: str, *, local_mode: bool = False) -> UnsafeWebhookUrl:
    with pytest.raises(UnsafeWebhookUrl) as caught:
        check_webhook_url(url, local_mode=local_mode, resolve=resolver())
    assert caught.value.field == "url"
    assert caught.value.code == "invalid_webhook_url"
    assert caught.value.message.startswith("url: ")
    assert caught.value.details == {"reason": caught.value.reason}
    return caught.value


def test_a_public_https_url_is_accepted_and_split() -> None:
    parsed = check_webhook_url("https://Hooks.Example.com/a/b?x=1&y=2", local_mode=False, resolve=resolver())
    assert (parsed.scheme, parsed.host, parsed.port, parsed.target) == (
        "https",
        "hooks.example.com",
        443,
        "/a/b?x=1&y=2",
    )
    assert (
        check_webhook_url("https://hooks.example.com:8443", local_mode=False, resolve=resolver()).target
        == "/"
    )
    assert parse_webhook_url("https://[2606:2800:21f:cb07::1]:9443/h", local_mode=False).port == 9443


def test_the_error_is_a_422_validation_error_naming_url() -> None:
    error = refused("https://169.254.169.254/latest/meta-data/")
    assert isinstance(error, InvalidInput)  # the HTTP layer maps InvalidInput to 422
    assert error.reason == "forbidden_address"
    assert "instance metadata" in error.message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # Scheme and syntax
        ("http://hooks.example.com/hook", "scheme"),
        ("ftp://hooks.example.com/", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("hooks.example.com/hook", "scheme"),
        ("", "syntax"),
        ("https://", "syntax"),
        ("https://hooks.example.com/" + "a" * 2100, "syntax"),
        ("https://hooks.example.com/#frag", "syntax"),
        ("https://hooks.example.com /x", "syntax"),
        ("https://hooks.example.com\\@127.0.0.1/", "syntax"),
        ("https://hooks.exämple.com/", "syntax"),
        ("https://hooks.example.com:0/", "syntax"),
        ("https://hooks.example.com:99999/", "syntax"),
        ("https://[::1/", "syntax"),
        # User info tricks
        ("https://user:pass@hooks.example.com/", "userinfo"),
        ("https://hooks.example.com@127.0.0.1/", "userinfo"),
        ("https://hooks.example.com:443@10.0.0.1/", "userinfo"),
        # Odd spellings of 127.0.0.1 (and friends)
        ("https://2130706433/", "host_syntax"),
        ("https://0x7f000001/", "host_syntax"),
        ("https://0x7f.1/", "host_syntax"),
        ("https://0x7f.0.0.1/", "host_syntax"),
        ("https://0177.0.0.1/", "host_syntax"),
        ("https://127.1/", "host_syntax"),
        ("https://127.0.1/", "host_syntax"),
        ("https://127.0.0.1./", "host_syntax"),
        ("https://1.2.3.4.5/", "host_syntax"),
        ("https://hooks.example.123/", "host_syntax"),
        ("https://%31%32%37.0.0.1/", "host_syntax"),
        ("https://[fe80::1%25eth0]/", "host_syntax"),
        ("https://[::ffff:127.0.0.1%25lo]/", "host_syntax"),
        ("https://ex_ample.com/", "host_syntax"),
        ("https://ex..ample.com/", "host_syntax"),
        ("https://-example.com/", "host_syntax"),
        # Names that mean this machine
        ("https://localhost/", "forbidden_address"),
        ("https://anything.localhost/", "forbidden_address"),
        # Forbidden IPv4 literals
        ("https://127.0.0.1/", "forbidden_address"),
        ("https://127.8.9.10/", "forbidden_address"),
        ("https://169.254.169.254/", "forbidden_address"),
        ("https://169.254.1.1/", "forbidden_address"),
        ("https://10.0.0.1/", "forbidden_address"),
        ("https://172.16.5.4/", "forbidden_address"),
        ("https://192.168.1.1/", "forbidden_address"),
        ("https://100.64.0.1/", "forbidden_address"),
        ("https://0.0.0.0/", "forbidden_address"),
        ("https://0.1.2.3/", "forbidden_address"),
        ("https://224.0.0.1/", "forbidden_address"),
        ("https://239.255.255.250/", "forbidden_address"),
        ("https://240.0.0.1/", "forbidden_address"),
        ("https://255.255.255.255/", "forbidden_address"),
        ("https://192.0.2.1/", "forbidden_address"),
        ("https://198.18.0.1/", "forbidden_address"),
        # Forbidden IPv6 literals
        ("https://[::1]/", "forbidden_address"),
        ("https://[::]/", "forbidden_address"),
        ("https://[fd00:ec2::254]/", "forbidden_address"),
        ("https://[fc00::1]/", "forbidden_address"),
        ("https://[fe80::1]/", "forbidden_address"),
        ("https://[fec0::1]/", "forbidden_address"),
        ("https://[ff02::1]/", "forbidden_address"),
        ("https://[ff0e::1]/", "forbidden_address"),
        ("https://[2001:db8::1]/", "forbidden_address"),
        ("https://[100::1]/", "forbidden_address"),
        # IPv4 hidden in IPv6
        ("https://[::ffff:127.0.0.1]/", "forbidden_address"),
        ("https://[::ffff:7f00:1]/", "forbidden_address"),
        ("https://[::ffff:169.254.169.254]/", "forbidden_address"),
        ("https://[::ffff:a9fe:a9fe]/", "forbidden_address"),
        ("https://[::ffff:10.0.0.1]/", "forbidden_address"),
        ("https://[::127.0.0.1]/", "forbidden_address"),
        ("https://[64:ff9b::a9fe:a9fe]/", "forbidden_address"),
        ("https://[64:ff9b::10.0.0.1]/", "forbidden_address"),
        ("https://[2002:a9fe:a9fe::1]/", "forbidden_address"),
        ("https://[2002:7f00:1::1]/", "forbidden_address"),
        ("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "forbidden_address"),
        # Names that resolve to forbidden addresses (any one of them is enough)
        ("https://internal.example.com/", "forbidden_address"),
        ("https://mixed.example.com/", "forbidden_address"),
        ("https://meta.example.com/", "forbidden_address"),
        ("https://v6meta.example.com/", "forbidden_address"),
        ("https://mapped.example.com/", "forbidden_address"),
        ("https://cgnat.example.com/", "forbidden_address"),
        # Names that do not resolve
        ("https://nxdomain.example.com/", "unresolvable"),
        ("https://empty.example.com/", "unresolvable"),
        ("https://garbage.example.com/", "unresolvable"),
    ],
)
def test_refused_in_aws_mode(url: str, reason: str) -> None:
    assert refused(url).reason == reason


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost:8080/hook",
        "http://[::1]:8080/hook",
        "https://127.0.0.1:8443/hook",
        "https://hooks.example.com/hook",
    ],
)
def test_local_mode_allows_loopback_and_http_to_it(url: str) -> None:
    parsed = check_webhook_url(url, local_mode=True, resolve=resolver())
    assert parsed.url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/hook", "scheme"),
        ("http://10.0.0.1/hook", "scheme"),
        ("https://10.0.0.1/hook", "forbidden_address"),
        ("https://169.254.169.254/", "forbidden_address"),
        ("https://[fd00:ec2::254]/", "forbidden_address"),
        ("https://meta.example.com/", "forbidden_address"),
        ("https://[::ffff:169.254.169.254]/", "forbidden_address"),
        ("http://2130706433/", "host_syntax"),
    ],
)
def test_local_mode_still_refuses_everything_else(url: str, reason: str) -> None:
    assert refused(url, local_mode=True).reason == reason


def test_aws_mode_refuses_http_even_to_loopback() -> None:
    assert refused("http://127.0.0.1:8080/hook").reason == "scheme"
    assert refused("http://localhost:8080/hook").reason == "scheme"


def test_delivery_pins_the_checked_address_with_a_single_lookup() -> None:
    calls: list[tuple[str, int]] = []

    def counting(host: str, port: int) -> Sequence[str]:
        calls.append((host, port))
        return [PUBLIC_V6, PUBLIC_V4]

    pinned = pin_webhook_url("https://hooks.example.com:8443/h?x=1", local_mode=False, resolve=counting)
    assert calls == [("hooks.example.com", 8443)]
    assert pinned.address == PUBLIC_V6
    assert (pinned.url.host, pinned.url.port, pinned.url.target) == ("hooks.example.com", 8443, "/h?x=1")


def test_an_ip_literal_is_pinned_without_any_lookup() -> None:
    def no_dns(host: str, port: int) -> Sequence[str]:
        raise AssertionError("an IP literal must not be resolved")

    assert pin_webhook_url(f"https://{PUBLIC_V4}/h", local_mode=False, resolve=no_dns).address == PUBLIC_V4
    assert pin_webhook_url(f"https://[{PUBLIC_V6}]/h", local_mode=False, resolve=no_dns).address == PUBLIC_V6


def test_dns_rebinding_between_write_and_delivery_is_caught_at_delivery() -> None:
    # Given a name that answers a public address when the URL is written...
    answers = iter([[PUBLIC_V4], ["169.254.169.254"], [PUBLIC_V4, "10.0.0.7"]])

    def rebinding(host: str, port: int) -> Sequence[str]:
        return next(answers)

    url = "https://rebind.example.com/hook"
    assert check_webhook_url(url, local_mode=False, resolve=rebinding).host == "rebind.example.com"
    # ...when it answers the metadata address at delivery, the delivery is refused before any connection.
    with pytest.raises(UnsafeWebhookUrl, match="instance metadata"):
        pin_webhook_url(url, local_mode=False, resolve=rebinding)
    # And a public address next to a private one is no better.
    with pytest.raises(UnsafeWebhookUrl, match="private"):
        pin_webhook_url(url, local_mode=False, resolve=rebinding)


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_and_its_mapped_and_nat64_forms_get_the_same_verdict(
    address: ipaddress.IPv4Address,
) -> None:
    verdict = forbidden_reason(address)
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    nat64 = ipaddress.IPv6Address(f"64:ff9b::{address}")
    assert (forbidden_reason(mapped) is None) == (verdict is None)
    assert (forbidden_reason(nat64) is None) == (verdict is None)
    # Allowed only if globally routable and not multicast, whatever the Python version's tables say.
    if verdict is None:
        assert address.is_global
        assert not address.is_multicast


@given(st.ip_addresses(v=6))
def test_an_allowed_ipv6_address_is_global_unicast(address: ipaddress.IPv6Address) -> None:
    if forbidden_reason(address) is None:
        assert not address.is_multicast
        assert not address.is_link_local
        assert not address.is_loopback
        assert address not in ipaddress.IPv6Network("fc00::/7")
        assert (
            address.is_global
            or address.ipv4_mapped is not None
            or address in ipaddress.IPv6Network("64:ff9b::/96")
        )


@given(
    st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"]),
    st.data(),
)
def test_every_address_of_the_private_and_local_ranges_is_refused(network: str, data: st.DataObject) -> None:
    net = ipaddress.IPv4Network(network)
    address = net[data.draw(st.integers(min_value=0, max_value=net.num_addresses - 1))]
    assert forbidden_reason(address) is not None
    assert forbidden_reason(ipaddress.IPv6Address(f"::ffff:{address}")) is not None
