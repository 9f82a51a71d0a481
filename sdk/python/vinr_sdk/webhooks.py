"""Verify webhook deliveries and parse them into events.

    event = verify(await request.body(), request.headers.get("x-vinr-signature"))

The header is ``t=UNIX,v1=HEX`` with HEX = lowercase hex HMAC-SHA256(secret,
"{t}.{raw body}"); during a secret roll it carries one ``v1`` per valid secret. Verify the
raw bytes as received: a re-serialised body will not match.

The rules are the TypeScript SDK's and the server's: parts split on ``,`` and trimmed,
unknown keys ignored, the last ``t`` counts and must be an integer, at least one ``v1`` must
match exactly (every candidate is compared in constant time), then ``|now - t|`` must not
exceed the tolerance when it is > 0. Both SDKs and the server check the same fixture file
(``sdk/fixtures/signatures.json`` in the repository), including the ``code`` of each
refusal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Iterable

from ._errors import SignatureVerificationError, VinrError
from ._object import VinrObject

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "WEBHOOK_SECRET_ENV",
    "Webhooks",
    "compute_signature",
    "construct_event",
    "generate_test_header",
    "verify",
    "verify_header",
]

SIGNATURE_HEADER = "x-vinr-signature"
WEBHOOK_SECRET_ENV = "VINR_WEBHOOK_SECRET"
DEFAULT_TOLERANCE_S = 300

_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")


def _bytes(payload: bytes | str) -> bytes:
    return payload.encode() if isinstance(payload, str) else bytes(payload)


def compute_signature(payload: bytes | str, secret: str, timestamp: int) -> str:
    """Lowercase hex HMAC-SHA256(secret, "{timestamp}.{payload}")."""
    signed = str(timestamp).encode() + b"." + _bytes(payload)
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def _refuse(message: str, code: str) -> SignatureVerificationError:
    return SignatureVerificationError(message, type="signature_verification_error", code=code)


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            if not _INTEGER.fullmatch(value):
                raise _refuse("signature header has a non-numeric timestamp", "malformed_header")
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise _refuse("signature header must look like t=UNIX,v1=HEX", "malformed_header")
    return timestamp, candidates


def verify_header(
    payload: bytes | str,
    signature: str | None,
    secret: str,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    *,
    now: int | None = None,
) -> int:
    """Check the header against the payload and secret; return the signed timestamp.

    Raises:
        SignatureVerificationError: with ``code`` ``missing_header``, ``malformed_header``,
            ``no_matching_signature`` or ``timestamp_outside_tolerance``.
    """
    if not signature or not signature.strip():
        raise _refuse(f"missing {SIGNATURE_HEADER} header", "missing_header")
    timestamp, candidates = _parse(signature)
    expected = compute_signature(payload, secret, timestamp).encode()
    matched = False
    for candidate in candidates:  # all of them, so timing does not tell which one matched
        matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise _refuse("no signature matches the payload and secret", "no_matching_signature")
    current = int(time.time()) if now is None else now
    if tolerance_s > 0 and abs(current - timestamp) > tolerance_s:
        raise _refuse(
            f"signature timestamp {timestamp} is outside the {tolerance_s}s"
            f" tolerance (now {current})",
            "timestamp_outside_tolerance",
        )
    return timestamp


def verify(
    payload: bytes | str,
    signature: str | None,
    secret: str | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    *,
    now: int | None = None,
) -> VinrObject:
    """Check ``signature`` (the ``x-vinr-signature`` header) and return the parsed event.

    Args:
        payload: the request body exactly as received.
        signature: the header's value; ``None`` when the header is absent.
        secret: the endpoint's ``whsec_…``; defaults to ``VINR_WEBHOOK_SECRET``.
        tolerance_s: the largest accepted age (or skew) of the signed timestamp; 0 disables.
        now: the verifier's clock in unix seconds (default: now), for tests and fixtures.

    Raises:
        SignatureVerificationError: the header is missing or malformed, no signature matches,
            or the timestamp is outside the tolerance (``code`` says which).
        VinrError: no secret was passed and ``VINR_WEBHOOK_SECRET`` is unset (``no_secret``:
            a configuration error, deliberately not a signature failure), or a correctly
            signed payload is not a JSON object (``invalid_json``).
    """
    key = secret if secret is not None else os.environ.get(WEBHOOK_SECRET_ENV)
    if not key:
        raise VinrError(
            f"No webhook secret: pass secret='whsec_...' or set {WEBHOOK_SECRET_ENV}",
            code="no_secret",
        )
    verify_header(payload, signature, key, tolerance_s, now=now)
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise VinrError(f"webhook payload is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(event, dict):
        raise VinrError("webhook payload is not a JSON object", code="invalid_json")
    return VinrObject(event)


construct_event = verify


def generate_test_header(
    payload: bytes | str,
    secret: str,
    timestamp: int | None = None,
    extra_secrets: Iterable[str] = (),
) -> str:
    """A valid ``x-vinr-signature`` value (one ``v1`` per secret), to test a handler."""
    ts = int(time.time()) if timestamp is None else timestamp
    parts = [f"v1={compute_signature(payload, s, ts)}" for s in (secret, *extra_secrets)]
    return ",".join([f"t={ts}", *parts])


class Webhooks:
    """``client.webhooks``: the module's functions, reachable from a client."""

    def verify(
        self,
        payload: bytes | str,
        signature: str | None,
        secret: str | None = None,
        tolerance_s: int = DEFAULT_TOLERANCE_S,
        *,
        now: int | None = None,
    ) -> VinrObject:
        """See ``vinr_sdk.webhooks.verify``."""
        return verify(payload, signature, secret, tolerance_s, now=now)

    construct_event = verify

    def generate_test_header(
        self,
        payload: bytes | str,
        secret: str,
        timestamp: int | None = None,
        extra_secrets: Iterable[str] = (),
    ) -> str:
        """See ``vinr_sdk.webhooks.generate_test_header``."""
        return generate_test_header(payload, secret, timestamp, extra_secrets)
