"""Verify webhook deliveries and parse them into events.

    event = verify(await request.body(), request.headers.get("x-vinr-signature"))

The header is ``t=UNIX,v1=HEX`` with HEX = HMAC-SHA256(secret, "{t}.{raw body}"); during a
secret roll it carries one ``v1`` per valid secret. Verify the raw bytes as received: a
re-serialised body will not match.
"""

from __future__ import annotations

import os

import orjson

from vinr.signature import DEFAULT_TOLERANCE_S, SIGNATURE_HEADER, SignatureError, verify_header

from ._errors import SignatureVerificationError, VinrError
from ._object import VinrObject

__all__ = [
    "SIGNATURE_HEADER",
    "WEBHOOK_SECRET_ENV",
    "Webhooks",
    "construct_event",
    "verify",
]

WEBHOOK_SECRET_ENV = "VINR_WEBHOOK_SECRET"


def verify(
    payload: bytes | str,
    signature: str | None,
    secret: str | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> VinrObject:
    """Check ``signature`` (the ``x-vinr-signature`` header) and return the parsed event.

    Args:
        payload: the request body exactly as received.
        signature: the header's value; ``None`` when the header is absent.
        secret: the endpoint's ``whsec_…``; defaults to ``VINR_WEBHOOK_SECRET``.
        tolerance_s: the largest accepted age (or skew) of the signed timestamp; 0 disables.

    Raises:
        SignatureVerificationError: the header is missing or malformed, no signature matches,
            or the timestamp is outside the tolerance.
        VinrError: no secret was passed and ``VINR_WEBHOOK_SECRET`` is unset (a configuration
            error, deliberately not a signature failure), or a correctly signed payload is
            not a JSON object.
    """
    key = secret if secret is not None else os.environ.get(WEBHOOK_SECRET_ENV)
    if not key:
        raise VinrError(
            f"No webhook secret: pass secret='whsec_...' or set {WEBHOOK_SECRET_ENV}"
        )
    try:
        verify_header(payload, signature, key, tolerance_s)
    except SignatureError as exc:
        raise SignatureVerificationError(str(exc)) from exc
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise VinrError(f"webhook payload is not valid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise VinrError("webhook payload is not a JSON object")
    return VinrObject(event)


construct_event = verify


class Webhooks:
    """``client.webhooks``: the module's functions, reachable from a client."""

    def verify(
        self,
        payload: bytes | str,
        signature: str | None,
        secret: str | None = None,
        tolerance_s: int = DEFAULT_TOLERANCE_S,
    ) -> VinrObject:
        """See ``vinr.sdk.webhooks.verify``."""
        return verify(payload, signature, secret, tolerance_s)

    construct_event = verify
