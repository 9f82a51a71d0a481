"""What every control-plane route shares: the request model base, the text types every
string of a request goes through, tenant and services lookup, JSON responses, list
pagination and "fetch or 404"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError
from starlette.responses import Response

from domain.amounts import MAX_DECIMAL_TEXT
from domain.services import Services
from domain.tenant import Tenant
from infra.errors import InvalidRequest

__all__ = [
    "MAX_METADATA_KEYS",
    "MAX_METADATA_KEY_LENGTH",
    "MAX_METADATA_VALUE_LENGTH",
    "MAX_PARAM_LENGTH",
    "ApiModel",
    "HttpUrlAsWritten",
    "Json",
    "Limit",
    "Metadata",
    "StartingAfter",
    "Text",
    "TextOrInt",
    "check_params",
    "services",
    "tenant",
    "text_problem",
]

# Limits on text (as Stripe's): metadata keys and values, and every query parameter and id
# in a URL (ids are at most ~70 characters).
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500
MAX_PARAM_LENGTH = 255

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


def _checked_metadata(value: Any) -> Any:
    """Metadata keys, checked before the values (so a value's refusal names a valid key)."""
    if not isinstance(value, dict):
        return value  # refused as not an object by the dict validation that follows
    if len(value) > MAX_METADATA_KEYS:
        raise PydanticCustomError("too_long", f"may have at most {MAX_METADATA_KEYS} keys")
    for key in value:
        problem = text_problem(key) if isinstance(key, str) else None
        if problem is not None:
            raise PydanticCustomError("text_invalid", f"a key {problem}")
        if isinstance(key, str) and not 0 < len(key) <= MAX_METADATA_KEY_LENGTH:
            raise PydanticCustomError(
                "text_invalid", f"keys must be 1 to {MAX_METADATA_KEY_LENGTH} characters"
            )
    return value


def _text_or_int(value: Any) -> Any:
    """A string or an integer; anything else is refused as one problem of the field, not
    one per union member."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PydanticCustomError(
            "text_or_int", "must be a decimal string such as '0.2' or an integer"
        )
    return value


# Every string of a request body: refused with a 400 naming the field before it can reach
# Postgres (which would otherwise fail the request with a 500).
Text = Annotated[str, AfterValidator(_checked_text)]
# A string or an integer (``unitAmountDecimal``): checked as a whole, so a refusal names the
# field alone rather than each member of the union.
TextOrInt = Annotated[
    str | int,
    BeforeValidator(_text_or_int),
    AfterValidator(_checked_text),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "maxLength": MAX_DECIMAL_TEXT,
                    "pattern": r"^[0-9]+(\.[0-9]+)?$",
                },
                {"type": "integer", "minimum": 0},
            ]
        }
    ),
]
# Metadata: at most 50 keys of 1 to 40 characters, checked first (a refused key is named by
# ``metadata``, not by itself); values as ``Text`` of at most 500 characters.
Metadata = Annotated[
    dict[
        str,
        Annotated[str, Field(max_length=MAX_METADATA_VALUE_LENGTH), AfterValidator(_checked_text)],
    ],
    BeforeValidator(_checked_metadata),
    Field(
        json_schema_extra={
            "maxProperties": MAX_METADATA_KEYS,
            "propertyNames": {"minLength": 1, "maxLength": MAX_METADATA_KEY_LENGTH},
        }
    ),
]

StartingAfter = Annotated[str | None, Query(alias="startingAfter")]
# A list's page size.
Limit = Annotated[int, Query(ge=1, le=100)]


_QUERY_NAMES: dict[int, tuple[APIRoute, frozenset[str]]] = {}


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters an operation takes (any other is refused, as in bodies);
    worked out once per route (routes are not hashable: keyed by identity)."""
    hit = _QUERY_NAMES.get(id(route))
    if hit is not None and hit[0] is route:
        return hit[1]
    names: set[str] = set()
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(p.alias for p in dependant.query_params)
        pending.extend(dependant.dependencies)
    _QUERY_NAMES[id(route)] = (route, frozenset(names))
    return frozenset(names)


def _param_problem(value: str) -> str | None:
    if len(value) > MAX_PARAM_LENGTH:
        return f"must be at most {MAX_PARAM_LENGTH} characters"
    return text_problem(value)


def check_params(request: Request) -> None:
    """Every query and path parameter, as ``Text`` checks body fields (and at most
    ``MAX_PARAM_LENGTH`` characters; each query parameter once, none takes a list; no
    parameter the operation does not take): a dependency of the whole control plane, so no
    id from a URL reaches SQL unchecked and no misspelt filter is silently ignored."""
    route = request.scope.get("route")
    known = _query_names(route) if isinstance(route, APIRoute) else None
    seen: set[str] = set()
    for name, value in request.query_params.multi_items():
        problem = _param_problem(value) or _param_problem(name)
        if problem is None and name in seen:
            problem = "is given more than once; give each parameter once"
        seen.add(name)
        if problem is not None:
            param = name if _param_problem(name) is None else "query"
            raise InvalidRequest(
                f"invalid {param}: {problem}", param=param, code="parameter_invalid"
            )
        if known is not None and name not in known:
            raise InvalidRequest(
                f"received unknown parameter: {name}"
                + (f" (this operation takes {', '.join(sorted(known))})" if known else ""),
                param=name or "query",
                code="parameter_unknown",
            )
    for value in request.path_params.values():
        if isinstance(value, str) and (problem := _param_problem(value)) is not None:
            raise InvalidRequest(
                f"invalid id in the URL: {problem}", param="id", code="parameter_invalid"
            )


class ApiModel(BaseModel):
    """Request bodies: camelCase as the guide writes them; unknown parameters are refused;
    JSON types are strict, as in usage bodies (``true``, ``1.0`` and ``"1"`` are no
    integers, ``1`` and ``"true"`` no booleans)."""

    model_config = ConfigDict(extra="forbid", strict=True)


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
