"""Who a request acts for. Every object belongs to one account and one mode, and every
lookup is scoped by both (``domain.store.owned``); the key a request came through decides
them (``domain.accounts.KeyAuthenticator``)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Tenant"]


@dataclass(frozen=True, slots=True)
class Tenant:
    """An account in one mode, through one key."""

    account_id: str
    livemode: bool
    key_id: str = ""
    restricted: bool = False
    # What a restricted key may do (``domain.permissions``); a secret key may do everything.
    permissions: frozenset[str] = field(default_factory=frozenset)
