"""Webhook signatures: ``x-vinr-signature: t=UNIX,v1=HEX``, HEX = HMAC-SHA256(secret, "{t}.{body}").

The server only signs (the dispatcher); verifying is the SDKs' job (``vinr_sdk.webhooks``,
``@vinr/sdk``). Both SDKs and this signer are checked against the same cases,
``sdk/fixtures/signatures.json``, so the three agree without sharing code across
distributions.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "sign"]

SIGNATURE_HEADER = "x-vinr-signature"


def _hex(secret: str, timestamp: int, payload: bytes) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, payload: bytes, timestamp: int | None = None, *extra_secrets: str) -> str:
    """The header value; several ``v1`` entries while an old secret is still honoured."""
    ts = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={ts}"] + [f"v1={_hex(s, ts, payload)}" for s in (secret, *extra_secrets)]
    return ",".join(parts)
