"""The ``vinr api`` ASGI application.

    request ─► Router ─┬─ POST /v1/usage_records[/batch] ─► UsageEndpoint (raw ASGI hot path)
                       └─ everything else ─► ControlMiddleware (auth, idempotency)
                                              └─► FastAPI control plane (OpenAPI at /openapi.json)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ingest.asgi import Receive, Scope, Send
from ingest.control import billing, catalog, customers, dead_letters, subscriptions, webhooks
from ingest.control.common import Json
from ingest.middleware import ControlMiddleware
from ingest.services import Services
from ingest.usage import UsageBatchIn, UsageEndpoint, UsageRecordIn, validation_error
from vinr.errors import DependencyUnavailable, InvalidRequest, NotFound, VinrError
from vinr.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_FAST_PATHS = frozenset({"/v1/usage_records", "/v1/usage_records/batch"})


def _error(exc: VinrError) -> Json:
    return Json(exc.body(), status_code=exc.status, headers=exc.headers())


def _control_plane(services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    api = FastAPI(title="vinr", version="1", lifespan=lifespan, redoc_url=None,
                  description="Usage-based billing: metered prices, usage records, invoices.")
    api.state.services = services
    for module in (catalog, customers, subscriptions, billing, webhooks, dead_letters):
        api.include_router(module.router)

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
        return Json({"status": "ready" if ready else "unavailable", "checks": checks},
                    status_code=200 if ready else 503)

    @api.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=api.title, version=api.version,
                                 description=api.description, routes=api.routes)
            _add_usage_paths(schema)
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api


def _add_usage_paths(schema: dict[str, Any]) -> None:
    """Document the raw-ASGI usage routes, whose bodies are the pydantic models they parse."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, model in (("/v1/usage_records", UsageRecordIn),
                        ("/v1/usage_records/batch", UsageBatchIn)):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
        schema["paths"][path] = {"post": {
            "summary": "Report a batch of up to 1000 usage records" if "batch" in path
            else "Report one usage record",
            "tags": ["usage"],
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "maxLength": 255}}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}},
            "responses": {"200": {"description": "accepted (after Kafka acknowledged it)"},
                          "400": {"description": "invalid request"},
                          "503": {"description": "a dependency is down; retry"}},
        }}


class _Router:
    def __init__(self, control: ControlMiddleware, usage: UsageEndpoint) -> None:
        self._control = control
        self._usage = usage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in _FAST_PATHS:
            await self._usage(scope, receive, send)
        else:
            await self._control(scope, receive, send)


def create_app(settings: Settings) -> _Router:
    services = Services(settings)
    return _Router(ControlMiddleware(_control_plane(services), services), UsageEndpoint(services))

