"""The ``vinr api`` ASGI application: one process serving three roles.

request ─► Router ─┬─ POST /v1/usage_records[/batch] ─► ingest.UsageEndpoint (raw ASGI hot path)
                   ├─ POST /v1/billing/meter_events[/batch] ─► ingest.MeterEventsEndpoint (same)
                   ├─ /dashboard… ─► dashboard.Dashboard (web pages; sessions, CSRF)
                   └─ everything else ─► control.ControlMiddleware (auth, idempotency)
                                          └─► FastAPI control plane (OpenAPI at /openapi.json)
"""

from __future__ import annotations

from typing import Any

from control.app import create_control_plane
from control.middleware import ControlMiddleware
from control.routing import (
    error_responses,
    idempotency_key_parameter,
    operation_errors,
    replayed_header,
)
from dashboard import PREFIX as DASHBOARD
from dashboard import Dashboard
from domain.services import Services
from infra.asgi import Message, Receive, Scope, Send
from infra.settings import Settings
from infra.telemetry import M
from ingest import (
    MeterEvent,
    MeterEventBatch,
    MeterEventBatchIn,
    MeterEventIn,
    MeterEventsEndpoint,
    UsageBatchIn,
    UsageEndpoint,
    UsageRecord,
    UsageRecordBatch,
    UsageRecordIn,
)

__all__ = ["create_app", "openapi_document"]

_FAST_PATHS = frozenset({"/v1/usage_records", "/v1/usage_records/batch"})
_METER_PATHS = frozenset({"/v1/billing/meter_events", "/v1/billing/meter_events/batch"})


def _add_usage_paths(schema: dict[str, Any]) -> None:
    """Document the raw-ASGI hot-path routes (usage records, meter events): their bodies are
    the pydantic models they parse, their answers the models of what they render, their
    errors the control plane's."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (
        UsageRecordIn,
        UsageBatchIn,
        UsageRecord,
        UsageRecordBatch,
        MeterEventIn,
        MeterEventBatchIn,
        MeterEvent,
        MeterEventBatch,
    ):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    # Usage answers 404 for an unknown subscription item; a meter event's unknown meter or
    # customer is a 400 naming the parameter.
    for path, body, answer, summary, tag, operation_id in (
        (
            "/v1/usage_records",
            UsageRecordIn,
            UsageRecord,
            "Report one usage record",
            "usage",
            "usageRecord_create",
        ),
        (
            "/v1/usage_records/batch",
            UsageBatchIn,
            UsageRecordBatch,
            "Report a batch of up to 1000 usage records",
            "usage",
            "usageRecordBatch_create",
        ),
        (
            "/v1/billing/meter_events",
            MeterEventIn,
            MeterEvent,
            "Send one meter event",
            "meters",
            "meterEvent_create",
        ),
        (
            "/v1/billing/meter_events/batch",
            MeterEventBatchIn,
            MeterEventBatch,
            "Send a batch of up to 1000 meter events",
            "meters",
            "meterEventBatch_create",
        ),
    ):
        accepted = {
            "description": "Accepted (after Kafka acknowledged it)",
            "headers": replayed_header(),
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{answer.__name__}"}}
            },
        }
        extra = (404,) if tag == "usage" else ()
        errors = error_responses(*operation_errors("POST", path), *extra)
        schema["paths"][path] = {
            "post": {
                "summary": summary,
                "operationId": operation_id,
                "tags": [tag],
                "parameters": [idempotency_key_parameter()],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{body.__name__}"}
                        }
                    },
                },
                "responses": {"200": accepted, **{str(k): v for k, v in errors.items()}},
            }
        }


_DASHBOARD_SUB = DASHBOARD + "/"


class _Router:
    def __init__(
        self,
        control: ControlMiddleware,
        usage: UsageEndpoint,
        meter_events: MeterEventsEndpoint,
        dashboard: Dashboard,
    ) -> None:
        self._control = control
        self._usage = usage
        self._meter_events = meter_events
        self._dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in _FAST_PATHS:
            await self._usage(scope, receive, send)  # counts its own, without a lock
        elif scope["type"] != "http":
            await self._control(scope, receive, send)
        elif scope["method"] == "POST" and scope["path"] in _METER_PATHS:
            await self._meter_events(scope, receive, send)  # counts its own, like usage
        elif scope["path"] == DASHBOARD or scope["path"].startswith(_DASHBOARD_SUB):
            await _counted("dashboard", self._dashboard, scope, receive, send)
        else:
            await _counted("control", self._control, scope, receive, send)


async def _counted(plane: str, app: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app``, counting its response's status in ``vinr_api_responses_total`` (an
    exception before any response is the 500 the server answers), for the 5xx alerts."""
    status: list[int] = []

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        await send(message)

    try:
        await app(scope, receive, sending)
    except Exception:
        M.api_responses.labels(plane, str(status[0]) if status else "500").inc()
        raise
    if status:
        M.api_responses.labels(plane, str(status[0])).inc()


def create_app(settings: Settings) -> _Router:
    services = Services(settings)
    control = create_control_plane(services, extend_openapi=_add_usage_paths)
    usage = UsageEndpoint(services)
    return _Router(
        ControlMiddleware(control, services),
        usage,
        MeterEventsEndpoint(services, usage.inflight),  # one in-flight bound for the process
        Dashboard(services),
    )


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The document ``/openapi.json`` serves, built without starting anything (the fuzzing
    tests generate their requests from it)."""
    services = Services(settings or Settings())
    return create_control_plane(services, extend_openapi=_add_usage_paths).openapi()
