"""How every control-plane operation is routed: its JSON body read strictly, and every
status it can answer documented in the OpenAPI document with the one error body.

A router gets both with one line, ``router = api_router("tag")``: its routes are
``ApiRoute``s, which add ``operation_errors`` to what each route declares itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.responses import Response

from domain.idempotency import MAX_KEY_LENGTH
from infra.errors import error_types

__all__ = [
    "ERROR_SCHEMA_REF",
    "MAX_JSON_DEPTH",
    "ApiError",
    "ApiErrorDetail",
    "ApiRoute",
    "api_router",
    "error_responses",
    "idempotency_key_parameter",
    "operation_errors",
    "parse_json_body",
    "replayed_header",
]

# No request body nests deeper than 3 levels (a price's tiers); a body nesting deeper than
# this is refused before any handler sees it, so no recursion can run out of stack on it.
MAX_JSON_DEPTH = 16
ERROR_SCHEMA_REF = "#/components/schemas/ApiError"

_TYPES = error_types()

_DESCRIPTIONS = {
    400: "Invalid request: a parameter is missing, unknown or invalid (`param` names it),"
    " or the Idempotency-Key was used with another request (`idempotency_error`)",
    401: "No API key, or an unknown or revoked one",
    403: "The API key may not do this (a restricted key)",
    404: "No such object in this account and mode (`param` names the id)",
    409: "A request with this Idempotency-Key is still in flight (`idempotency_error`), or the"
    " object already exists or is being changed",
    413: "The request body is larger than the API accepts (VINR_MAX_BODY_BYTES)",
    429: "Too many requests for this key or this API process; retry after `Retry-After`",
    503: "A dependency is unavailable and nothing was recorded; retry after `Retry-After`"
    " (with the same Idempotency-Key)",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}


class ApiErrorDetail(BaseModel):
    type: str = Field(json_schema_extra={"enum": list(sorted(set().union(*_TYPES.values())))})
    code: str = Field(description="A machine-readable reason, e.g. `parameter_invalid`")
    message: str = Field(description="What went wrong and how to fix it")
    param: str | None = Field(description="The parameter at fault, e.g. `records[3].quantity`")


class ApiError(BaseModel):
    """The body of every error answer: ``infra.errors.VinrError.body``."""

    error: ApiErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these error statuses: the ``ApiError`` body (``components``
    gets it from ``control.app``), and ``Retry-After`` on 429 and 503."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        if status not in _TYPES:
            raise ValueError(f"the API never answers {status} with an error body")
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}},
        }
        if status in (429, 503):
            response["headers"] = dict(_RETRY_AFTER)
        out[status] = response
    return out


def operation_errors(method: str, path: str) -> list[int]:
    """The error statuses an authenticated operation can answer: every one 400 (a bad
    parameter, query or id), 401, 403, 429 and 503; a POST also 409 and 413 (its body and
    Idempotency-Key); one with an id in its path 404."""
    statuses = [400, 401, 403, 429, 503]
    if method.upper() == "POST":
        statuses += [409, 413]
    if "{" in path:
        statuses.append(404)
    return statuses


def idempotency_key_parameter() -> dict[str, Any]:
    """The header every POST takes (control plane and usage alike)."""
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Makes a retry safe: the same key with the same request replays the"
        " first answer (kept 24 h); with another request it is refused",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    }


def replayed_header() -> dict[str, Any]:
    """The header of a POST's 2xx answer replayed for a repeated Idempotency-Key."""
    return {
        "Idempotent-Replayed": {
            "description": "`true` when this is the stored answer of an earlier request with"
            " the same Idempotency-Key",
            "schema": {"type": "string", "enum": ["true"]},
        }
    }


def parse_json_body(body: bytes) -> Any:
    """A request body as JSON, strictly: UTF-8, no NaN or Infinity, numbers of at most 4300
    digits, nesting at most ``MAX_JSON_DEPTH`` deep.

    Raises json.JSONDecodeError, whose message says what to fix (FastAPI answers it as a
    ``json_invalid`` validation error, which ``control.app`` turns into a 400)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(
            f"the body is not valid UTF-8 (byte {exc.start}); send it UTF-8 encoded", "", 0
        ) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # an integer beyond Python's 4300-digit conversion limit
        raise json.JSONDecodeError(f"a number is too long: {exc}", "", 0) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise _too_deep()
    return value


def _refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number", "", 0)


def _too_deep() -> json.JSONDecodeError:
    return json.JSONDecodeError(
        f"the body nests deeper than {MAX_JSON_DEPTH} levels of arrays and objects", "", 0
    )


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in ``value`` (iteratively: no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class ApiRoute(APIRoute):
    """A control-plane route: its body parsed by ``parse_json_body``; in the OpenAPI
    document, the error statuses of ``operation_errors`` (plus those the route declares),
    and on a POST the Idempotency-Key header and the replay header of its 2xx answer."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = kwargs.get("methods") or ["GET"]
        errors = [s for m in methods for s in operation_errors(m, path)]
        declared = kwargs.get("responses") or {}
        responses = {**error_responses(*errors), **declared}
        extra = dict(kwargs.get("openapi_extra") or {})
        if "POST" in {m.upper() for m in methods}:
            status = kwargs.get("status_code") or 200
            responses[status] = {"headers": replayed_header(), **responses.get(status, {})}
            given = list(extra.get("parameters", []))
            if all(p.get("name") != "Idempotency-Key" for p in given):
                extra["parameters"] = [idempotency_key_parameter(), *given]
        kwargs["responses"] = responses
        kwargs["openapi_extra"] = extra or None
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict


def api_router(tag: str) -> APIRouter:
    """The router of one family of control-plane operations (``tag`` in the document)."""
    return APIRouter(tags=[tag], route_class=ApiRoute)
