"""API keys of the caller's account, in the caller's mode: create, list, read, roll, revoke.

Only a secret key may call these routes (a restricted key's permissions allow none of them:
``domain.permissions``). A key's secret is in the answer of the call that created it and
nowhere else: not on reads, not in lists, and not in an idempotent replay, which answers
the same key with ``"secret": null`` (a lost secret cannot be recovered: revoke that key
and create another). Through the API an account cannot lock itself out: revoking the last
secret key of a mode that does not expire is refused (409); operators can still do it with
``vinr key revoke``.
"""

from __future__ import annotations

import orjson
from fastapi import Request
from pydantic import Field

from control.common import ApiModel, Json, Limit, StartingAfter, Text, services, tenant
from control.middleware import REPLAY_BODY
from control.routing import api_router
from control.schemas import ApiKey as ApiKeyShape
from control.schemas import ApiKeyList, ApiKeyWithSecret
from domain import accounts
from domain.accounts import MAX_NAME_LENGTH, MAX_ROLL_EXPIRY_S, ApiKey, NewKey
from domain.objects import render_api_key
from domain.store.owned import found
from infra.errors import NotFound

__all__ = ["router"]

router = api_router("api keys")


class ApiKeyCreate(ApiModel):
    restricted: bool = Field(default=False, strict=True)
    name: Text | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)


class ApiKeyRoll(ApiModel):
    expiresIn: int = Field(default=0, ge=0, le=MAX_ROLL_EXPIRY_S, strict=True)


def _created(request: Request, new: NewKey) -> Json:
    """The new key with its secret; an idempotent replay of this call answers it without."""
    request.scope["state"][REPLAY_BODY] = orjson.dumps(render_api_key(new.key) | {"secret": None})
    return Json(render_api_key(new.key, secret=new.secret))


def _key_id(key_id: str) -> str:
    """Keys are named by their id in URLs: a key itself is never looked up from one (nor
    repeated in the answer)."""
    if not key_id.startswith("key_"):
        raise NotFound(f"no such API key: '{accounts.shown(key_id)}'", param="id")
    return key_id


@router.post("/v1/api_keys", response_model=ApiKeyWithSecret)
async def create_api_key(request: Request, body: ApiKeyCreate | None = None) -> Json:
    """A new key in the caller's mode: secret, or restricted to ``usage_records: write``."""
    t, s = tenant(request), services(request)
    body = body or ApiKeyCreate()
    async with s.pool.acquire() as conn:
        new = await accounts.create_key(
            conn, t.account_id, livemode=t.livemode, restricted=body.restricted, name=body.name
        )
    return _created(request, new)


@router.get("/v1/api_keys", response_model=ApiKeyList)
async def list_api_keys(
    request: Request, limit: Limit = 10, starting_after: StartingAfter = None
) -> Json:
    """The keys of the caller's account and mode, newest first, revoked and expired ones
    included (``status`` tells them apart)."""
    t, s = tenant(request), services(request)
    return Json(
        await accounts.key_page(
            s.pool, t, limit=limit, starting_after=starting_after, render=render_api_key
        )
    )


@router.get("/v1/api_keys/{key_id}", response_model=ApiKeyShape)
async def get_api_key(key_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    key: ApiKey = found(
        await accounts.get_key(s.pool, t, _key_id(key_id)), what="API key", ident=key_id
    )
    return Json(render_api_key(key))


@router.post("/v1/api_keys/{key_id}/roll", response_model=ApiKeyWithSecret)
async def roll_api_key(key_id: str, request: Request, body: ApiKeyRoll | None = None) -> Json:
    """A new key of the same type, permissions and name; the rolled one keeps working for
    ``expiresIn`` seconds (default 0: it stops now; at most 30 days)."""
    t, s = tenant(request), services(request)
    body = body or ApiKeyRoll()
    async with s.pool.acquire() as conn:
        new, _ = await accounts.roll_key(conn, _key_id(key_id), expire_in_s=body.expiresIn, scope=t)
    return _created(request, new)


@router.delete("/v1/api_keys/{key_id}", response_model=ApiKeyShape)
async def revoke_api_key(key_id: str, request: Request) -> Json:
    """Revoke a key: every API process refuses it within 2 s. Revoking a revoked key
    answers it unchanged."""
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn:
        key = await accounts.revoke_key(conn, _key_id(key_id), scope=t, keep_one=True)
    return Json(render_api_key(key))
