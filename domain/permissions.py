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

# permission → the (method, path) pairs it allows. A path segment written ``{id}`` matches
# any one segment (an object id); every other segment is matched exactly.
PERMISSIONS: Mapping[str, frozenset[tuple[str, str]]] = {
    USAGE_RECORDS_WRITE: frozenset(
        {
            ("POST", "/v1/usage_records"),
            ("POST", "/v1/usage_records/batch"),
            ("GET", "/v1/usage_records/summaries"),
            ("POST", "/v1/billing/meter_events"),
            ("POST", "/v1/billing/meter_events/batch"),
            ("POST", "/v1/billing/meter_event_adjustments"),
            ("GET", "/v1/billing/meters/{id}/event_summaries"),
        }
    ),
}

_ANY = "{id}"

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
        if allowed is not None and (route in allowed or _matches(allowed, method, path)):
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


def _matches(allowed: frozenset[tuple[str, str]], method: str, path: str) -> bool:
    """Whether ``method path`` matches one of the templated routes in ``allowed``."""
    parts = path.split("/")
    for m, template in allowed:
        if m != method or _ANY not in template:
            continue
        pattern = template.split("/")
        if len(pattern) == len(parts) and all(
            want == got or (want == _ANY and got != "")
            for want, got in zip(pattern, parts, strict=True)
        ):
            return True
    return False


def check(holder: Holder, method: str, path: str) -> None:
    """Raises PermissionDenied unless this key may call ``method path``."""
    refused = denial(holder, method, path)
    if refused is not None:
        raise refused
