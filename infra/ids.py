"""Prefixed object ids (``prod_…``, ``mbu_…``) and ids derived from idempotency keys."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["PREFIXES", "derived_id", "new_id", "new_secret"]

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

PREFIXES = frozenset(
    {
        "acct",
        "prod",
        "price",
        "cust",
        "sub",
        "si",
        "mbu",
        "inv",
        "il",
        "evt",
        "we",
        "clock",
        "pm",
        "ch",
        "whd",
        "dl",
        "key",
    }
)


# Two base62 digits per step, least significant first (as one digit per step would give).
_PAIRS = tuple(_ALPHABET[n % 62] + _ALPHABET[n // 62] for n in range(62 * 62))


def _base62(raw: bytes, length: int) -> str:
    """``length`` base62 digits of ``raw`` (big-endian), least significant digit first."""
    number = int.from_bytes(raw, "big")
    pairs = _PAIRS
    if length == 24:  # every id: unrolled
        number, a = divmod(number, 3844)
        number, b = divmod(number, 3844)
        number, c = divmod(number, 3844)
        number, d = divmod(number, 3844)
        number, e = divmod(number, 3844)
        number, f = divmod(number, 3844)
        number, g = divmod(number, 3844)
        number, h = divmod(number, 3844)
        number, i = divmod(number, 3844)
        number, j = divmod(number, 3844)
        number, k = divmod(number, 3844)
        return "".join(
            (
                pairs[a],
                pairs[b],
                pairs[c],
                pairs[d],
                pairs[e],
                pairs[f],
                pairs[g],
                pairs[h],
                pairs[i],
                pairs[j],
                pairs[k],
                pairs[number % 3844],
            )
        )
    chars = []
    for _ in range(length // 2):
        number, rem = divmod(number, 3844)
        chars.append(pairs[rem])
    if length % 2:
        chars.append(_ALPHABET[number % 62])
    return "".join(chars)


def new_id(prefix: str) -> str:
    """A random id, 24 base62 characters (≈142 bits) after the prefix."""
    return f"{prefix}_{_base62(secrets.token_bytes(18), 24)}"


def derived_id(prefix: str, *parts: str) -> str:
    """A deterministic id: the same parts always give the same id.

    Usage record ids are derived from (account, mode, idempotency key, body digest) so a
    retry that slips past Redis still carries the id the ledger already holds.
    """
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=18).digest()
    return f"{prefix}_{_base62(digest, 24)}"


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"
