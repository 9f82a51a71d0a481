"""The webhook target rule, with literal addresses and a stub resolver: nothing here opens
a connection or asks a DNS server (public addresses appear only as strings)."""

from __future__ import annotations

import ipaddress

import pytest

from domain.webhook_targets import address_refusal, check_static, check_target

# Refused in both modes.
ALWAYS_REFUSED = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a9fe:a9fe", "link-local"),
]

# Refused in live mode, allowed in sandbox (local receivers).
LOCAL = [
    ("127.0.0.1", "loopback"),
    ("127.1.2.3", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "shared"),
    ("100.127.255.254", "shared"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fec0::1", "site-local"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:127.0.0.1", "loopback"),
    ("64:ff9b::a00:1", "private"),
    ("2002:a00:1::1", "private"),
    ("192.0.2.10", "private"),
    ("2001:db8::1", "private"),
]

PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "kind"), ALWAYS_REFUSED)
@pytest.mark.parametrize("live", [True, False])
def test_link_local_multicast_unspecified_and_reserved_are_refused_in_both_modes(
    address: str, kind: str, live: bool
) -> None:
    reason = address_refusal(ipaddress.ip_address(address), live=live)
    assert reason is not None and kind in reason


@pytest.mark.parametrize(("address", "kind"), LOCAL)
def test_loopback_and_private_are_refused_live_and_allowed_in_sandbox(
    address: str, kind: str
) -> None:
    reason = address_refusal(ipaddress.ip_address(address), live=True)
    assert reason is not None and kind in reason
    assert address_refusal(ipaddress.ip_address(address), live=False) is None


@pytest.mark.parametrize("address", PUBLIC)
@pytest.mark.parametrize("live", [True, False])
def test_public_addresses_are_allowed(address: str, live: bool) -> None:
    assert address_refusal(ipaddress.ip_address(address), live=live) is None


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("http://10.0.0.5/hook", "10.0.0.5", 80),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254", 443),
        ("http://[::1]:8080/", "::1", 8080),
        ("http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1", 80),
    ],
)
async def test_literal_addresses_in_urls_are_checked_without_resolving(
    url: str, host: str, port: int
) -> None:
    async def no_resolving(host: str, port: int) -> list[str]:
        raise AssertionError("a literal address must not be resolved")

    verdict = await check_target(url, live=True, resolver=no_resolving)
    assert not verdict.allowed and (verdict.host, verdict.port) == (host, port)
    assert check_static(url, live=True).refused == verdict.refused


async def test_a_public_literal_is_allowed_with_its_address_and_port() -> None:
    async def no_resolving(host: str, port: int) -> list[str]:
        raise AssertionError("a literal address must not be resolved")

    verdict = await check_target("https://93.184.216.34:8443/x", live=True, resolver=no_resolving)
    assert verdict.allowed and verdict.addresses == ("93.184.216.34",) and verdict.port == 8443


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://93.184.216.34/", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://hooks.example.com/", "http or https"),
        ("https://user:pw@hooks.example.com/", "user name or password"),
        ("https://user@93.184.216.34/", "user name or password"),
        ("http:///nohost", "no host"),
        ("http://hooks.example.com:99999/", "cannot be parsed"),
    ],
)
@pytest.mark.parametrize("live", [True, False])
def test_scheme_userinfo_and_malformed_urls_are_refused(url: str, words: str, live: bool) -> None:
    verdict = check_static(url, live=live)
    assert verdict.refused is not None and words in verdict.refused


class StubResolver:
    """Answers from a table and records the questions; never touches the network."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise OSError(f"unknown host {host}")
        return self.table[host]


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    resolver = StubResolver(
        {
            "internal.example": ["10.0.0.1"],
            "public.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
            "mixed.example": ["93.184.216.34", "169.254.169.254"],
            "local.example": ["127.0.0.1"],
            "garbage.example": ["not-an-address"],
            "empty.example": [],
        }
    )
    internal = await check_target("https://internal.example/h", live=True, resolver=resolver)
    assert internal.refused is not None and "10.0.0.1 is a private address" in internal.refused

    public = await check_target("https://public.example:8443/h", live=True, resolver=resolver)
    assert public.allowed
    assert public.addresses == ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    assert ("public.example", 8443) in resolver.asked

    mixed = await check_target("http://mixed.example/", live=True, resolver=resolver)
    assert mixed.refused is not None and "link-local" in mixed.refused
    mixed_sandbox = await check_target("http://mixed.example/", live=False, resolver=resolver)
    assert mixed_sandbox.refused is not None and "link-local" in mixed_sandbox.refused

    local_live = await check_target("http://local.example/", live=True, resolver=resolver)
    assert local_live.refused is not None and "loopback" in local_live.refused
    local = await check_target("http://local.example/", live=False, resolver=resolver)
    assert local.allowed and local.addresses == ("127.0.0.1",)

    for host in ("garbage.example", "empty.example", "unknown.example"):
        verdict = await check_target(f"http://{host}/", live=True, resolver=resolver)
        assert verdict.refused is not None and host in verdict.refused


def test_a_name_passes_the_static_check_unresolved() -> None:
    verdict = check_static("https://hooks.example.com/in", live=True)
    assert verdict.allowed and verdict.addresses == () and verdict.port == 443
