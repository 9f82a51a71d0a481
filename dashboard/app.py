"""The Dashboard's ASGI application, served by ``vinr api`` under ``/dashboard``.

Server-rendered pages (Jinja2, ``templates/``), a stylesheet and a small script that
refreshes a subscription's usage and invoices (``static/``). A browser logs in with a
secret key and gets a server-side session (``dashboard.sessions``); a restricted key
cannot log in. Every request after that:

1. finds its session and re-authenticates the session's key (a revoked key's session ends);
2. counts against the key's control-plane rate limit, like an API call;
3. when it is a POST, must come from this site (``Origin``) and carry the session's CSRF
   token — otherwise 403 and nothing is changed.

Bad input answers 4xx with a page that says what to fix; a dependency that is down, 503.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import parse_qsl

import asyncpg
from redis.exceptions import RedisError

from dashboard import pages
from dashboard.http import Answer, check_origin, cookie, cookies, expired_cookie, read_form
from dashboard.sessions import SESSION_COOKIE, SESSION_TTL_S, SessionStore, new_token, same_token
from dashboard.views import Req, render
from domain.accounts import KEY_PREFIXES, hash_key, key_hint
from domain.clock import now_s
from domain.services import Services
from infra.asgi import Receive, Scope, Send
from infra.errors import (
    AuthenticationFailed,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    VinrError,
    refused_value,
)

__all__ = ["PREFIX", "Dashboard"]

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
LOGIN_COOKIE = "vinr_login"
_LOGIN_COOKIE_S = 3600
_MAX_QUERY_VALUE = 255
_STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

Handler = Callable[[Req], Awaitable[Answer]]


Route = tuple[str, "re.Pattern[str]", Handler]


def _compile(routes: Sequence[tuple[str, str, Handler]]) -> list[Route]:
    return [(method, re.compile(pattern), handler) for method, pattern, handler in routes]


class Dashboard:
    """The ASGI app; ``services`` are the API process's (started by its lifespan)."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self._routes = _compile(pages.ROUTES)
        self._static = {
            f"{PREFIX}/static/{p.name}": (p.read_bytes(), _STATIC_TYPES[p.suffix])
            for p in _STATIC.iterdir()
            if p.suffix in _STATIC_TYPES
        }
        self._limiter = services.limiter.control

    def _sessions(self) -> SessionStore:
        return SessionStore(self._s.redis, self._s.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        req = Req(scope, self._s)
        try:
            answer = await self._answer(req, method, receive)
        except VinrError as exc:
            answer = self._error(req, exc)
        except asyncpg.DataError as exc:
            answer = self._error(req, refused_value(exc))
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            answer = self._error(req, DependencyUnavailable("postgres", str(exc)))
        except RedisError as exc:
            answer = self._error(req, DependencyUnavailable("redis", str(exc)))
        await answer.send(send, head=method == "HEAD")

    def _error(self, req: Req, exc: VinrError) -> Answer:
        if exc.status >= 500:
            log.warning("dashboard %s: %s", req.path, exc.message)
        answer = render(req, "error.html", status=exc.status, error=exc)
        answer.headers.extend(exc.headers().items())
        return answer

    async def _answer(self, req: Req, method: str, receive: Receive) -> Answer:
        path = req.path
        if method in ("GET", "HEAD") and path in self._static:
            body, content_type = self._static[path]
            return Answer(200, body, content_type=content_type, cache="public, max-age=300")
        req.query = _query(req.scope)
        if path == f"{PREFIX}/login":
            if method in ("GET", "HEAD"):
                return await self._login_page(req)
            if method == "POST":
                return await self._login(req, receive)
            return _not_allowed("GET, POST")
        if path == f"{PREFIX}/logout":
            if method != "POST":
                return _not_allowed("POST")
            return await self._logout(req, receive)
        handler, allowed = self._route(method, path, req)
        if handler is None:
            if allowed:
                return _not_allowed(", ".join(sorted(allowed)))
            raise NotFound("there is no such page in the Dashboard")
        try:
            authenticated = await self._authenticate(req)
        except AuthenticationFailed as exc:  # the session's key was revoked or expired
            return await self._login_page(req, status=401, message=exc.message)
        if not authenticated:
            if method == "GET" and not path.endswith("/live"):
                return Answer.redirect(f"{PREFIX}/login", headers=req.headers)
            return await self._login_page(req, status=401, message=_ENDED)
        if req.tenant is not None and not self._limiter.take(req.tenant.key_id):
            await self._limiter.acquire(req.tenant)  # 429 when the key is over its limit
        if method == "POST":
            req.form = await self._checked_form(req, receive)
        return await handler(req)

    def _route(self, method: str, path: str, req: Req) -> tuple[Handler | None, set[str]]:
        allowed: set[str] = set()
        for route_method, pattern, handler in self._routes:
            matched = pattern.fullmatch(path)
            if matched is None:
                continue
            if route_method == method or (route_method == "GET" and method == "HEAD"):
                req.params = matched.groupdict()
                return handler, allowed
            allowed.add(route_method)
        return None, allowed

    async def _authenticate(self, req: Req) -> bool:
        """Find the request's session and its key's tenant; False without a live session
        (the session of a key that no longer works is ended here)."""
        sessions = self._sessions()
        session_id = cookies(req.scope).get(SESSION_COOKIE)
        session = await sessions.get(session_id, now_s())
        if session is None:
            if session_id:
                req.headers.append(expired_cookie(req.scope, SESSION_COOKIE))
            return False
        try:
            tenant = await self._s.auth.authenticate_hash(session.key_hash, session.key_hint)
        except AuthenticationFailed as exc:
            await sessions.end(session.id)
            req.headers.append(expired_cookie(req.scope, SESSION_COOKIE))
            raise AuthenticationFailed(f"Your session ended: {exc.message}.") from None
        if tenant.restricted:  # cannot log in; a session never holds one
            await sessions.end(session.id)
            return False
        req.session, req.tenant = session, tenant
        return True

    async def _checked_form(self, req: Req, receive: Receive) -> dict[str, str]:
        """The POST's form, after the same-origin check and the CSRF token (403 when either
        fails: nothing is changed)."""
        check_origin(req.scope)
        form = dict(await read_form(req.scope, receive))
        if req.session is None or not same_token(form.get("csrf"), req.session.csrf):
            raise PermissionDenied(
                "this form's security token is missing or out of date (it belongs to another"
                " session); reload the page and try again",
                code="csrf_token_invalid",
            )
        return form

    # -- login and logout ----------------------------------------------------------------

    async def _login_page(
        self, req: Req, *, status: int = 200, message: str | None = None, key_kind: str = ""
    ) -> Answer:
        if message is None and req.query.get("logged_out"):
            message = "You have logged out."
        token = new_token()
        req.headers.append(cookie(req.scope, LOGIN_COOKIE, token, max_age=_LOGIN_COOKIE_S))
        return render(
            req,
            "login.html",
            status=status,
            login_csrf=token,
            message=message,
            key_kind=key_kind,
        )

    async def _login(self, req: Req, receive: Receive) -> Answer:
        check_origin(req.scope)
        form = await read_form(req.scope, receive)
        expected = cookies(req.scope).get(LOGIN_COOKIE)
        if expected is None or not same_token(form.get("csrf"), expected):
            raise PermissionDenied(
                "the login form's security token is missing or out of date; allow cookies for"
                " this site, reload the login page and try again",
                code="csrf_token_invalid",
            )
        key = (form.get("key") or "").strip()
        if not key:
            return await self._login_page(
                req, status=400, message="Enter a secret key (sk_test_… or sk_live_…)."
            )
        if key.startswith(("rk_test_", "rk_live_")):
            return await self._login_page(
                req,
                status=403,
                key_kind="restricted",
                message=f"{key_hint(key)} is a restricted key: it may only report usage."
                " Log in with a secret key (sk_test_… or sk_live_…).",
            )
        if not key.startswith(KEY_PREFIXES) or len(key) > 256:
            return await self._login_page(
                req,
                status=401,
                message="That is not an API key: secret keys start with sk_test_ or sk_live_.",
            )
        try:
            tenant = await self._s.auth.authenticate(f"Bearer {key}")
        except AuthenticationFailed as exc:
            return await self._login_page(req, status=401, message=f"Refused: {exc.message}.")
        if tenant.restricted:
            return await self._login_page(
                req,
                status=403,
                key_kind="restricted",
                message="A restricted key cannot log in; use a secret key.",
            )
        if not self._limiter.take(tenant.key_id):
            await self._limiter.acquire(tenant)
        session = await self._sessions().create(hash_key(key), key_hint(key), now_s())
        return Answer.redirect(
            f"{PREFIX}/subscriptions",
            headers=[
                cookie(req.scope, SESSION_COOKIE, session.id, max_age=SESSION_TTL_S),
                expired_cookie(req.scope, LOGIN_COOKIE),
            ],
        )

    async def _logout(self, req: Req, receive: Receive) -> Answer:
        try:
            authenticated = await self._authenticate(req)
        except AuthenticationFailed:
            authenticated = False  # ended already
        if not authenticated:
            return Answer.redirect(f"{PREFIX}/login", headers=req.headers)
        await self._checked_form(req, receive)
        if req.session is not None:
            await self._sessions().end(req.session.id)
        return Answer.redirect(
            f"{PREFIX}/login?logged_out=1", headers=[expired_cookie(req.scope, SESSION_COOKIE)]
        )


_ENDED = "Your session has ended; log in again."


def _not_allowed(allow: str) -> Answer:
    raise _MethodNotAllowed(allow)


class _MethodNotAllowed(InvalidRequest):
    status = 405
    default_code = "method_not_allowed"

    def __init__(self, allow: str) -> None:
        super().__init__(f"this page answers {allow} only")
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow}


def _query(scope: Scope) -> dict[str, str]:
    """The query string's parameters, each once (the first counts); 400 for what no page
    takes (invalid UTF-8, NUL, overlong values)."""
    raw = scope.get("query_string", b"")
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"), keep_blank_values=False, max_num_fields=20, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest(
            "the query string is not valid UTF-8", code="parameter_invalid"
        ) from None
    query: dict[str, str] = {}
    for name, value in pairs:
        if "\x00" in value or len(value) > _MAX_QUERY_VALUE:
            raise InvalidRequest(
                f"the parameter {name[:40]!r} is too long or contains NUL", param=name[:40]
            )
        query.setdefault(name, value)
    return query
