"""What every control-plane route shares: the request model base, the text types every
string of a request goes through, tenant and services lookup, JSON responses, list
pagination and "fetch or 404"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

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
from pydantic_core import PydanticCustomError
from starlette.responses import Response

from domain.accounts import Tenant
from domain.services import Services
from infra.errors import InvalidRequest

__all__ = [
    "ApiModel",
    "HttpUrlAsWritten",
    "Json",
    "Metadata",
    "StartingAfter",
    "Text",
    "TextOrInt",
    "check_params",
    "services",
    "tenant",
    "text_problem",
]

_V = TypeVar("_V")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as Postgres text, or None: NUL has no place in a
    Postgres string and a lone surrogate has no UTF-8 form."""
    if "\x00" in value:
        return "must not contain NUL characters (\\u0000); remove them"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return (
                "must be valid Unicode: a lone surrogate (\\ud800-\\udfff) has no UTF-8 form;"
                " send the character as a surrogate pair or remove it"
            )
    return None


def _checked_text(value: _V) -> _V:
    problem = text_problem(value) if isinstance(value, str) else None
    if problem is not None:
        raise PydanticCustomError("text_invalid", problem)
    return value


def _checked_metadata(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        problem = text_problem(key)
        if problem is not None:
            raise PydanticCustomError("text_invalid", f"a key {problem}")
    return value


# Every string of a request body: refused with a 400 naming the field before it can reach
# Postgres (which would otherwise fail the request with a 500).
Text = Annotated[str, AfterValidator(_checked_text)]
# A string or an integer (``unitAmountDecimal``): checked as a whole, so a refusal names the
# field alone rather than each member of the union.
TextOrInt = Annotated[str | int, AfterValidator(_checked_text)]
# Metadata: keys checked here (a refused key is named by ``metadata``, not by itself),
# values as ``Text``.
Metadata = Annotated[dict[str, Text], AfterValidator(_checked_metadata)]

StartingAfter = Annotated[str | None, Query(alias="startingAfter")]


def check_params(request: Request) -> None:
    """Every query and path parameter, as ``Text`` checks body fields: a dependency of the
    whole control plane, so no id from a URL reaches SQL unchecked."""
    for name, value in request.query_params.multi_items():
        problem = text_problem(value) or text_problem(name)
        if problem is not None:
            param = name if text_problem(name) is None else "query"
            raise InvalidRequest(
                f"invalid {param}: {problem}", param=param, code="parameter_invalid"
            )
    for value in request.path_params.values():
        if isinstance(value, str) and (problem := text_problem(value)) is not None:
            raise InvalidRequest(
                f"invalid id in the URL: {problem}", param="id", code="parameter_invalid"
            )


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
HttpUrlAsWritten = Annotated[Text, Field(max_length=2083), AfterValidator(_checked_url)]


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
