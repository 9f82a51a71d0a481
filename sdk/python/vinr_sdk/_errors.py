"""The SDK's error tree.

    VinrError                      root; ``http_status``, ``type``, ``code``, ``param``, ``message``
    ├── InvalidRequestError        400/404/409/413/422 ``invalid_request_error``
    ├── IdempotencyError           400/409 ``idempotency_error``
    ├── AuthenticationError        401 ``authentication_error``, or no secret key configured
    ├── RateLimitError             429 ``rate_limit_error``
    ├── APIError                   5xx ``api_error`` (and any answer that is not the API's)
    ├── APIConnectionError         no answer: connection refused, reset, timed out
    └── SignatureVerificationError a webhook payload whose signature does not check out

Every error raised by a request carries what the API said (``type``, ``code``, ``param``,
``message``) plus ``http_status`` and the response ``headers``; transport failures keep the
underlying ``httpx`` exception as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "IdempotencyError",
    "InvalidRequestError",
    "RateLimitError",
    "SignatureVerificationError",
    "VinrError",
    "error_from_response",
]


class VinrError(Exception):
    """Root of every error the SDK raises."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.type = type
        self.code = code
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})
        self.body = body

    def __str__(self) -> str:
        parts = [self.message]
        details = ", ".join(
            f"{name}={value}"
            for name, value in (
                ("status", self.http_status),
                ("type", self.type),
                ("code", self.code),
                ("param", self.param),
            )
            if value is not None
        )
        if details:
            parts.append(f"({details})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, http_status={self.http_status!r},"
            f" type={self.type!r}, code={self.code!r}, param={self.param!r})"
        )


class InvalidRequestError(VinrError):
    """The request was refused as it stands (bad parameter, unknown object, conflict)."""


class IdempotencyError(VinrError):
    """The ``Idempotency-Key`` was reused with another body (400) or is still in flight (409)."""


class AuthenticationError(VinrError):
    """No secret key, or one the API does not know."""


class RateLimitError(VinrError):
    """Too many requests; raised once the retries are spent."""


class APIError(VinrError):
    """The API failed or is unavailable (5xx); raised once the retries are spent."""


class APIConnectionError(VinrError):
    """The API could not be reached, or did not answer in time."""


class SignatureVerificationError(VinrError):
    """A webhook payload's ``x-vinr-signature`` is missing, malformed, wrong or too old."""


_BY_TYPE: dict[str, type[VinrError]] = {
    "invalid_request_error": InvalidRequestError,
    "idempotency_error": IdempotencyError,
    "authentication_error": AuthenticationError,
    "rate_limit_error": RateLimitError,
    "api_error": APIError,
}


def _class_for_status(status: int) -> type[VinrError]:
    if status == 401:
        return AuthenticationError
    if status == 429:
        return RateLimitError
    if 400 <= status < 500:
        return InvalidRequestError
    return APIError


def error_from_response(status: int, headers: Mapping[str, str], body: Any) -> VinrError:
    """Build the error for a non-2xx answer; ``body`` is the decoded JSON, or raw text."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        text = body if isinstance(body, str) and body else f"HTTP {status} without an API error"
        return _class_for_status(status)(text[:500], http_status=status, headers=headers, body=body)
    err_type = error.get("type")
    cls = _BY_TYPE.get(err_type) if isinstance(err_type, str) else None
    message = error.get("message")
    return (cls or _class_for_status(status))(
        message if isinstance(message, str) else f"HTTP {status}",
        http_status=status,
        type=err_type if isinstance(err_type, str) else None,
        code=_str_or_none(error.get("code")),
        param=_str_or_none(error.get("param")),
        headers=headers,
        body=body,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
