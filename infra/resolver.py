"""Host name resolution for webhook targets, through the event loop's ``getaddrinfo`` (run
in its executor, so a slow DNS server never blocks the loop)."""

from __future__ import annotations

import asyncio
import socket

__all__ = ["resolve"]


async def resolve(host: str, port: int) -> list[str]:
    """Every IP address ``host`` resolves to for TCP on ``port``, in the resolver's order and
    without repeats; raises ``OSError`` (``socket.gaierror``) when it does not resolve."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen
