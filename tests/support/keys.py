"""Another API key for an existing account, written straight into ``api_keys`` the way
``domain.accounts.create_account`` writes its keys: for tests that need two keys of one
account and mode."""

from __future__ import annotations

import asyncpg

from domain.accounts import hash_key
from domain.clock import now_s
from infra.ids import new_secret


async def add_key(pool: asyncpg.Pool, account_id: str, *, livemode: bool = False) -> str:
    key = new_secret("sk_live" if livemode else "sk_test")
    await pool.execute(
        "INSERT INTO api_keys (key_hash, account_id, livemode, hint, created)"
        " VALUES ($1, $2, $3, $4, $5)",
        hash_key(key),
        account_id,
        livemode,
        f"{key[:8]}…{key[-4:]}",
        now_s(),
    )
    return key
