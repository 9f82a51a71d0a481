"""The error tree, and the one table that maps it to HTTP status and API error ``type``.

    VinrError
    ├── InvalidRequest          400  invalid_request_error  (param names the field)
    │   ├── NotFound            404
    │   └── PayloadTooLarge     413
    ├── IdempotencyMismatch     400  idempotency_error
    ├── IdempotencyInFlight     409  idempotency_error
    ├── Conflict                409  invalid_request_error
    ├── AuthenticationFailed    401  authentication_error
    ├── PermissionDenied        403  permission_error
    ├── RateLimited             429  rate_limit_error
    └── DependencyUnavailable   503  api_error  (+ Retry-After)

A body that fails validation is a 400 like any other invalid parameter (never a 422), so
these statuses are every one the API answers; ``error_types`` is the table the OpenAPI
document and the fuzzing tests read.

Library errors (Redis, Kafka, Postgres) are translated to ``DependencyUnavailable`` at the
edge so the API answers 503 with ``Retry-After`` instead of accepting what it cannot keep —
except a value Postgres refuses (``refused_value``), which is a 400: retrying cannot help.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationFailed",
    "Conflict",
    "DependencyUnavailable",
    "IdempotencyInFlight",
    "IdempotencyMismatch",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "VinrError",
    "error_types",
    "refused_value",
]


class VinrError(Exception):
    status: ClassVar[int] = 400
    type: ClassVar[str] = "invalid_request_error"
    default_code: ClassVar[str] = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
            }
        }

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(VinrError):
    pass


class NotFound(InvalidRequest):
    status = 404
    default_code = "resource_missing"


class PayloadTooLarge(InvalidRequest):
    status = 413
    default_code = "payload_too_large"


class Conflict(VinrError):
    status = 409
    default_code = "conflict"


class IdempotencyMismatch(VinrError):
    type = "idempotency_error"
    default_code = "idempotency_key_reused"


class IdempotencyInFlight(VinrError):
    status = 409
    type = "idempotency_error"
    default_code = "idempotency_key_in_use"


class AuthenticationFailed(VinrError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(VinrError):
    status = 403
    type = "permission_error"
    default_code = "permission_denied"


class RateLimited(VinrError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: int = 1,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class DependencyUnavailable(VinrError):
    status = 503
    type = "api_error"
    default_code = "service_unavailable"

    def __init__(self, dependency: str, detail: str = "", *, retry_after_s: int = 1) -> None:
        super().__init__(f"{dependency} is unavailable; nothing was recorded, retry later")
        self.dependency = dependency
        self.detail = detail
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


def refused_value(exc: Exception) -> InvalidRequest:
    """The 400 for a value the database refused (``asyncpg.DataError``: a text it cannot
    encode, a number out of range): the request's fault, never a reason to retry."""
    return InvalidRequest(
        f"a value of this request cannot be stored: {exc}; correct it and send the request again",
        code="invalid_value",
    )


def error_types() -> dict[int, frozenset[str]]:
    """Every error status the API answers → the error ``type`` values it comes with, read
    from the tree above (so a new kind of error is documented by being defined)."""
    table: dict[int, set[str]] = {}
    pending: list[type[VinrError]] = [VinrError]
    while pending:
        kind = pending.pop()
        pending.extend(kind.__subclasses__())
        if kind is not VinrError:
            table.setdefault(kind.status, set()).add(kind.type)
    return {status: frozenset(types) for status, types in sorted(table.items())}
