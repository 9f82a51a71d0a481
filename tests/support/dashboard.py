"""The Dashboard over plain HTTP, as a browser would speak to it: the login form's token,
the session cookie, and each page's CSRF token."""

from __future__ import annotations

import re
from typing import Any

import httpx

__all__ = ["Session", "csrf_of", "dashboard_client", "log_in"]

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no CSRF token"
    return found.group(1)


def dashboard_client(api: str, **headers: str) -> httpx.AsyncClient:
    """A client that keeps cookies and never follows redirects (tests look at each one)."""
    return httpx.AsyncClient(base_url=api, timeout=30, follow_redirects=False, headers=headers)


class Session:
    """A logged-in client and the CSRF token of its session."""

    def __init__(self, client: httpx.AsyncClient, csrf: str) -> None:
        self.client = client
        self.csrf = csrf

    async def post(
        self, path: str, form: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        """A form POST from the Dashboard's own page (same Origin), with the token."""
        data = {"csrf": self.csrf, **(form or {})}
        origin = str(self.client.base_url).rstrip("/")
        return await self.client.post(path, data=data, headers={"Origin": origin}, **kw)


async def log_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    """The login form, filled in and sent; the answer (303 on success)."""
    page = await client.get("/dashboard/login")
    assert page.status_code == 200, page.text
    origin = str(client.base_url).rstrip("/")
    return await client.post(
        "/dashboard/login",
        data={"csrf": csrf_of(page.text), "key": key},
        headers={"Origin": origin},
    )


async def session(api: str, key: str) -> Session:
    client = dashboard_client(api)
    answer = await log_in(client, key)
    assert answer.status_code == 303, answer.text
    page = await client.get("/dashboard/api_keys")
    assert page.status_code == 200, page.text
    return Session(client, csrf_of(page.text))
