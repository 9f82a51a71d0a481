"""Webhook signatures: ``x-vinr-signature: t=UNIX,v1=HEX``, HEX = HMAC-SHA256(secret, "{t}.{body}").

Pure functions shared by the dispatcher (signing) and the SDK (verifying).
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["DEFAULT_TOLERANCE_S", "SIGNATURE_HEADER", "SignatureError", "sign", "verify_header"]

SIGNATURE_HEADER = "x-vinr-signature"
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """The payload's signature header is missing, malformed, wrong or too old."""


def _hex(secret: str, timestamp: int, payload: bytes) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, payload: bytes, timestamp: int | None = None, *extra_secrets: str) -> str:
    """The header value; several ``v1`` entries while an old secret is still honoured."""
    ts = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={ts}"] + [f"v1={_hex(s, ts, payload)}" for s in (secret, *extra_secrets)]
    return ",".join(parts)


def verify_header(
    payload: bytes | str,
    header: str | None,
    secret: str,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: int | None = None,
) -> int:
    """Check ``header`` against ``payload``; return the signed timestamp.

    Raises:
        SignatureError: no header, no ``t``/``v1``, no matching signature, or a timestamp
            more than ``tolerance_s`` away from ``now``.
    """
    if not header:
        raise SignatureError("missing signature header")
    body = payload.encode() if isinstance(payload, str) else payload
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("signature header has a non-numeric timestamp") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("signature header must look like t=UNIX,v1=HEX")
    expected = _hex(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("no signature matches the payload and secret")
    current = int(time.time()) if now is None else now
    if tolerance_s > 0 and abs(current - timestamp) > tolerance_s:
        raise SignatureError(f"signature timestamp is outside the {tolerance_s}s tolerance")
    return timestamp
