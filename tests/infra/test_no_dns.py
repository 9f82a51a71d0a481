"""The suite resolves no host names: a webhook endpoint or a URL naming a remote host can
never make a test reach off this machine (see ``tests/conftest.py``)."""

from __future__ import annotations

import socket

import pytest

from infra.resolver import resolve


async def test_a_remote_name_does_not_resolve_in_tests() -> None:
    with pytest.raises(socket.gaierror, match="tests resolve no host names"):
        await resolve("example.com", 443)


async def test_loopback_still_resolves() -> None:
    assert "127.0.0.1" in await resolve("127.0.0.1", 80)
    assert await resolve("localhost", 80)
