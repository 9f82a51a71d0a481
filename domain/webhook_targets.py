"""Which addresses a webhook may be sent to, so an endpoint cannot aim the dispatcher at the
operator's own network (cloud metadata at 169.254.169.254, internal services, loopback).

Live mode: the scheme is http or https, the URL carries no userinfo, and every address the
host resolves to is public (globally routable, not multicast). Sandbox mode also allows
loopback and private addresses, so a developer can point it at a local receiver; link-local,
multicast, unspecified and reserved addresses stay refused there too. IPv6 forms that embed
an IPv4 address (mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are
judged by the embedded address. Any port is allowed.

A literal IP is judged as written, without resolving. A name is resolved through the
injected resolver, and the check is repeated at every delivery because DNS can change; the
dispatcher then connects to an address this check returned (``Verdict.addresses``), never
to a fresh lookup, so a name cannot resolve one way for the check and another for the send.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Resolver", "Verdict", "address_refusal", "check_static", "check_target"]

# (host, port) → the IP addresses the host resolves to, as strings.
Resolver = Callable[[str, int], Awaitable[list[str]]]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES = {"http": 80, "https": 443}
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ``refused`` is None when the target is allowed; then
    ``addresses`` are the checked addresses to connect to (empty for a name that was not
    resolved by ``check_static``)."""

    host: str
    port: int
    addresses: tuple[str, ...] = ()
    refused: str | None = None

    @property
    def allowed(self) -> bool:
        return self.refused is None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def address_refusal(ip: IpAddress, *, live: bool) -> str | None:
    """Why ``ip`` may not receive a webhook in this mode, or None if it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = address_refusal(embedded, live=live)
            return None if inner is None else f"{inner} (embedded in {ip})"
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return f"{ip} is an unspecified address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    local = _local_kind(ip)
    if local is not None:
        return f"{ip} is a {local} address" if live else None
    if ip.is_reserved:
        return f"{ip} is a reserved address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def _local_kind(ip: IpAddress) -> str | None:
    """The kind of a loopback or private address (allowed in sandbox mode), or None."""
    if ip.is_loopback:
        return "loopback"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _SITE_LOCAL:
        return "site-local"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL:
        return "unique local"
    if ip.is_private and not ip.is_reserved:
        return "private"
    return None


def _parse_ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def check_static(url: str, *, live: bool) -> Verdict:
    """Everything that can be judged without resolving: the scheme, userinfo, the port and
    a literal IP host. A name passes with no addresses (``check_target`` resolves it)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return Verdict("", 0, refused=f"the URL cannot be parsed: {exc}")
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        return Verdict("", 0, refused="the URL's scheme must be http or https")
    host = parts.hostname or ""
    port = port or _SCHEMES[scheme]
    if "@" in parts.netloc:
        return Verdict(host, port, refused="the URL may not carry a user name or password")
    if not host:
        return Verdict(host, port, refused="the URL has no host")
    literal = _parse_ip(host)
    if literal is None:
        return Verdict(host, port)
    reason = address_refusal(literal, live=live)
    return Verdict(host, port, (str(literal),), reason)


async def check_target(url: str, *, live: bool, resolver: Resolver) -> Verdict:
    """The full check: ``check_static``, then every address a name resolves to. A name that
    does not resolve is refused (there is nothing to check, nor to send to)."""
    verdict = check_static(url, live=live)
    if not verdict.allowed or verdict.addresses:
        return verdict
    host, port = verdict.host, verdict.port
    try:
        resolved = await resolver(host, port)
    except OSError as exc:
        return Verdict(host, port, refused=f"{host} does not resolve: {exc}")
    if not resolved:
        return Verdict(host, port, refused=f"{host} does not resolve")
    addresses: list[str] = []
    for text in resolved:
        ip = _parse_ip(text)
        if ip is None:
            return Verdict(host, port, refused=f"{host} resolves to an unusable address {text}")
        reason = address_refusal(ip, live=live)
        if reason is not None:
            return Verdict(host, port, refused=f"{host} resolves to {reason}")
        if str(ip) not in addresses:
            addresses.append(str(ip))
    return Verdict(host, port, tuple(addresses))
