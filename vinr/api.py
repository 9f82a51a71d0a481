"""The ``vinr api`` ASGI application: one process serving three roles.

request ─► Router ─┬─ POST /v1/usage_records[/batch] ─► ingest.UsageEndpoint (raw ASGI hot path)
                   ├─ /dashboard… ─► dashboard.Dashboard (web pages; sessions, CSRF)
                   └─ everything else ─► control.ControlMiddleware (auth, idempotency)
                                          └─► FastAPI control plane (OpenAPI at /openapi.json)
"""

from __future__ import annotations

from typing import Any

from control.app import create_control_plane
from control.middleware import ControlMiddleware
from dashboard import PREFIX as DASHBOARD
from dashboard import Dashboard
from domain.idempotency import MAX_KEY_LENGTH
from domain.services import Services
from infra.asgi import Receive, Scope, Send
from infra.settings import Settings
from ingest import UsageBatchIn, UsageEndpoint, UsageRecordIn

__all__ = ["create_app"]

_FAST_PATHS = frozenset({"/v1/usage_records", "/v1/usage_records/batch"})


def _add_usage_paths(schema: dict[str, Any]) -> None:
    """Document the raw-ASGI usage routes, whose bodies are the pydantic models they parse."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, model in (
        ("/v1/usage_records", UsageRecordIn),
        ("/v1/usage_records/batch", UsageBatchIn),
    ):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
        schema["paths"][path] = {
            "post": {
                "summary": "Report a batch of up to 1000 usage records"
                if "batch" in path
                else "Report one usage record",
                "tags": ["usage"],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": MAX_KEY_LENGTH},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                        }
                    },
                },
                "responses": {
                    "200": {"description": "accepted (after Kafka acknowledged it)"},
                    "400": {"description": "invalid request"},
                    "503": {"description": "a dependency is down; retry"},
                },
            }
        }


_DASHBOARD_SUB = DASHBOARD + "/"


class _Router:
    def __init__(
        self, control: ControlMiddleware, usage: UsageEndpoint, dashboard: Dashboard
    ) -> None:
        self._control = control
        self._usage = usage
        self._dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in _FAST_PATHS:
            await self._usage(scope, receive, send)
        elif scope["type"] == "http" and (
            scope["path"] == DASHBOARD or scope["path"].startswith(_DASHBOARD_SUB)
        ):
            await self._dashboard(scope, receive, send)
        else:
            await self._control(scope, receive, send)


def create_app(settings: Settings) -> _Router:
    services = Services(settings)
    control = create_control_plane(services, extend_openapi=_add_usage_paths)
    return _Router(
        ControlMiddleware(control, services), UsageEndpoint(services), Dashboard(services)
    )
