"""The control plane's FastAPI application: products, prices, customers, subscriptions,
invoices, webhook endpoints, dead letters, API keys, billing meters and usage alerts, with
the API's error bodies and the health, readiness and metrics routes of the API process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from control import (
    api_keys,
    billing,
    catalog,
    customers,
    dead_letters,
    meters,
    subscriptions,
    webhooks,
)
from control.common import MAX_PARAM_LENGTH, Json, check_params
from control.routing import ApiError
from domain.services import Services
from infra.errors import (
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    VinrError,
    refused_value,
)
from infra.validation import validation_error

__all__ = ["create_control_plane"]

log = logging.getLogger(__name__)


def _error(exc: VinrError) -> Json:
    return Json(exc.body(), status_code=exc.status, headers=exc.headers())


def _document_errors(schema: dict[str, Any]) -> None:
    """The error body and the bearer key in the document. FastAPI lists a 422 for every
    operation with parameters, but a body or parameter that fails validation is answered
    400 (``on_validation``), so its 422 and their schemas go."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error = ApiError.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error.pop("$defs", {}))
    schemas["ApiError"] = error
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = {
        "secretKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: sk_test_… (sandbox) or sk_live_…",
        }
    }
    schema["security"] = [{"secretKey": []}]
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
            for parameter in operation.get("parameters", []):
                _cap_length(parameter.get("schema", {}))
                if parameter["in"] == "path":  # an empty id is another URL (no route)
                    parameter["schema"].setdefault("minLength", 1)


def _cap_length(schema: dict[str, Any]) -> None:
    """Every query parameter and id in a URL is at most ``MAX_PARAM_LENGTH`` characters
    (``check_params``): said on each string parameter that does not say less."""
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "string" and "maxLength" not in option:
            option["maxLength"] = MAX_PARAM_LENGTH


def create_control_plane(
    services: Services, *, extend_openapi: Callable[[dict[str, Any]], None] | None = None
) -> FastAPI:
    """The FastAPI application of the control plane; ``services`` start and stop with its
    lifespan. ``extend_openapi`` adds what other routes of the same process document (the
    usage hot path), so ``/openapi.json`` describes the whole API."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    api = FastAPI(
        title="vinr",
        version="1",
        lifespan=lifespan,
        redoc_url=None,
        description="Usage-based billing: metered prices, usage records, invoices.",
        dependencies=[Depends(check_params)],
        # "/v1/customers/" (an empty id) is no route: 404, not a redirect to the list or,
        # for a POST, to the create.
        redirect_slashes=False,
    )
    api.state.services = services
    for module in (catalog, customers, subscriptions, billing, webhooks, dead_letters, api_keys):
        api.include_router(module.router)
    api.include_router(meters.router)
    api.include_router(meters.alerts)

    @api.exception_handler(VinrError)
    async def on_vinr_error(_: Request, exc: VinrError) -> Response:
        return _error(exc)

    @api.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> Response:
        return _error(validation_error(list(exc.errors())))

    @api.exception_handler(HTTPException)
    async def on_http(_: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return _error(NotFound("unrecognized request URL; see /openapi.json for the API"))
        return _error(InvalidRequest(str(exc.detail), code=f"http_{exc.status_code}"))

    @api.exception_handler(asyncpg.DataError)
    async def on_data_error(_: Request, exc: asyncpg.DataError) -> Response:
        # A value Postgres cannot store or compare (a text it cannot encode, a number out
        # of range): the request's fault, and retrying it can never succeed.
        return _error(refused_value(exc))

    @api.exception_handler(asyncpg.PostgresConnectionError)
    @api.exception_handler(asyncpg.InterfaceError)
    @api.exception_handler(OSError)
    async def on_postgres_down(_: Request, exc: Exception) -> Response:
        return _error(DependencyUnavailable("postgres", str(exc)))

    @api.exception_handler(RedisError)
    async def on_redis_down(_: Request, exc: Exception) -> Response:
        return _error(DependencyUnavailable("redis", str(exc)))

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> Json:
        return Json({"status": "ok"})

    @api.get("/readyz", include_in_schema=False)
    async def readyz() -> Json:
        checks = await services.readiness()
        ready = all(v == "ok" for v in checks.values())
        return Json(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    @api.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=api.title, version=api.version, description=api.description, routes=api.routes
            )
            _document_errors(schema)
            if extend_openapi is not None:
                extend_openapi(schema)
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api
