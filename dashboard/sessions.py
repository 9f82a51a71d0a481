"""Dashboard sessions, kept server-side in Redis.

The browser holds only a random session id (HttpOnly, SameSite=Strict cookie). Redis holds,
under the SHA-256 of that id (so its keys are no sessions to steal), the SHA-256 of the API
key that logged in — never the key — with the key's hint and the session's CSRF token.
Every request re-authenticates that hash through the process's key authenticator, so a
revoked or expired key ends its sessions as fast as it stops working on the API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from infra.errors import DependencyUnavailable
from infra.settings import Settings

__all__ = ["SESSION_COOKIE", "SESSION_TTL_S", "Session", "SessionStore", "new_token"]

SESSION_COOKIE = "vinr_session"
# A session lasts this long after its last request, and never longer than SESSION_MAX_S.
SESSION_TTL_S = 2 * 3600
SESSION_MAX_S = 12 * 3600
_ID_BYTES = 32
_MAX_ID_LENGTH = 64


def new_token() -> str:
    """A random token (session ids, CSRF tokens): 256 bits, URL-safe."""
    return secrets.token_urlsafe(_ID_BYTES)


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class Session:
    """What the server keeps for a logged-in browser."""

    id: str
    key_hash: bytes
    key_hint: str
    csrf: str
    created: int


class SessionStore:
    """Sessions in Redis, each under the deployment's prefix with a sliding expiry."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    def _key(self, session_id: str) -> str:
        digest = hashlib.sha256(session_id.encode()).hexdigest()
        return self._settings.key("dashboard", "session", digest)

    async def create(self, key_hash: bytes, key_hint: str, now: int) -> Session:
        session = Session(new_token(), key_hash, key_hint, new_token(), now)
        value = orjson.dumps(
            {"key": key_hash.hex(), "hint": key_hint, "csrf": session.csrf, "created": now}
        )
        try:
            await self._redis.set(self._key(session.id), value, ex=SESSION_TTL_S)
        except RedisError as exc:
            raise DependencyUnavailable("redis", str(exc)) from exc
        return session

    async def get(self, session_id: str | None, now: int) -> Session | None:
        """The live session of this id, its expiry pushed back; None when there is none
        (never was, logged out, expired)."""
        if not session_id or len(session_id) > _MAX_ID_LENGTH:
            return None
        key = self._key(session_id)
        try:
            raw = await self._redis.getex(key, ex=SESSION_TTL_S)
        except RedisError as exc:
            raise DependencyUnavailable("redis", str(exc)) from exc
        if raw is None:
            return None
        data = orjson.loads(raw)
        if now - int(data["created"]) > SESSION_MAX_S:
            await self.end(session_id)
            return None
        return Session(
            session_id, bytes.fromhex(data["key"]), data["hint"], data["csrf"], data["created"]
        )

    async def end(self, session_id: str) -> None:
        try:
            await self._redis.delete(self._key(session_id))
        except RedisError as exc:
            raise DependencyUnavailable("redis", str(exc)) from exc
