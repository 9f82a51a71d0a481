"""What every control-plane route shares: the request model base, tenant and services
lookup, JSON responses, list pagination and "fetch or 404"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from fastapi import Query, Request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    ValidationError,
)
from starlette.responses import Response

from domain.accounts import Tenant
from domain.services import Services

__all__ = [
    "ApiModel",
    "HttpUrlAsWritten",
    "Json",
    "StartingAfter",
    "services",
    "tenant",
]


StartingAfter = Annotated[str | None, Query(alias="startingAfter")]


class ApiModel(BaseModel):
    """Request bodies: camelCase as the guide writes them; unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")


_HTTP_URL = TypeAdapter(HttpUrl)


def _checked_url(value: str) -> str:
    try:
        _HTTP_URL.validate_python(value)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None
    return value


# An http(s) URL kept as the caller wrote it (pydantic's HttpUrl would add a "/" and lowercase
# the host), so it reads back, and is called, exactly as given.
HttpUrlAsWritten = Annotated[str, Field(max_length=2083), AfterValidator(_checked_url)]


class Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def tenant(request: Request) -> Tenant:
    value: Tenant = request.scope["state"]["tenant"]
    return value


def services(request: Request) -> Services:
    value: Services = request.app.state.services
    return value


def pick(row: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: row[k] for k in keys}
