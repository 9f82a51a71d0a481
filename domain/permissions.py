"""What a restricted key may call: the one table of permissions and the routes each allows.

A secret key (``sk_…``) may call every operation. A restricted key (``rk_…``) may call
only the routes its permissions allow; anything else is a 403 ``permission_error`` that
names what the key holds and what it asked for. The control-plane middleware and the
usage hot path both ask ``check`` — neither keeps a list of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from infra.errors import PermissionDenied

__all__ = ["PERMISSIONS", "RESTRICTED_DEFAULT", "USAGE_RECORDS_WRITE", "check", "denial"]

USAGE_RECORDS_WRITE = "usage_records: write"

# permission → the (method, path) pairs it allows; paths are matched exactly.
PERMISSIONS: Mapping[str, frozenset[tuple[str, str]]] = {
    USAGE_RECORDS_WRITE: frozenset(
        {
            ("POST", "/v1/usage_records"),
            ("POST", "/v1/usage_records/batch"),
            ("GET", "/v1/usage_records/summaries"),
        }
    ),
}

# What a new restricted key holds: a producer service reports usage and reads its totals.
RESTRICTED_DEFAULT: frozenset[str] = frozenset({USAGE_RECORDS_WRITE})

_MAX_PATH_SHOWN = 200


class Holder(Protocol):
    """What a request's tenant tells about its key (``domain.tenant.Tenant``)."""

    @property
    def restricted(self) -> bool: ...

    @property
    def permissions(self) -> frozenset[str]: ...


def denial(holder: Holder, method: str, path: str) -> PermissionDenied | None:
    """The refusal of ``method path`` for this key, or None when it is allowed."""
    if not holder.restricted:
        return None
    route = (method, path)
    held = holder.permissions
    for permission in held:
        allowed = PERMISSIONS.get(permission)
        if allowed is not None and route in allowed:
            return None
    shown = path if len(path) <= _MAX_PATH_SHOWN else path[:_MAX_PATH_SHOWN] + "…"
    names = ", ".join(f"'{p}'" for p in sorted(held))
    if not held:
        what = "this restricted key holds no permission, which does not allow"
    elif len(held) == 1:
        what = f"this restricted key has the permission {names}, which does not allow"
    else:
        what = f"this restricted key has the permissions {names}, which do not allow"
    return PermissionDenied(f"{what} {method} {shown}; use a secret key")


def check(holder: Holder, method: str, path: str) -> None:
    """Raises PermissionDenied unless this key may call ``method path``."""
    refused = denial(holder, method, path)
    if refused is not None:
        raise refused
