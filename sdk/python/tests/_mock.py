"""Scripted ``httpx.MockTransport`` handlers for SDK tests (no server needed)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from vinr_sdk import AsyncVinr, Vinr

API_BASE = "http://vinr.test"
SECRET_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"

Step = httpx.Response | Exception


def respond(
    status: int = 200, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    payload = {"id": "obj_1", "object": "thing"} if body is None else body
    return httpx.Response(
        status,
        content=json.dumps(payload).encode(),
        headers={
            "content-type": "application/json",
            **(headers or {}),
        },
    )


def api_error(
    status: int,
    type_: str,
    message: str = "nope",
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return respond(
        status,
        {"error": {"type": type_, "code": code, "message": message, "param": param}},
        headers,
    )


class Script:
    """Answers requests with the given steps in order, then with ``respond()``."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        step = self.steps.pop(0) if self.steps else respond()
        if isinstance(step, Exception):
            raise step
        return step

    def json(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def keys(self) -> list[str | None]:
        return [r.headers.get("idempotency-key") for r in self.requests]


class Sleeps:
    """An injectable ``sleep`` that records instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.calls.append(seconds)


def sync_client(script: Script, sleeps: Sleeps | None = None, **options: Any) -> Vinr:
    return Vinr(
        SECRET_KEY,
        api_base=API_BASE,
        transport=httpx.MockTransport(script),
        sleep=sleeps if sleeps is not None else Sleeps(),
        **options,
    )


def async_client(script: Any, sleeps: Sleeps | None = None, **options: Any) -> AsyncVinr:
    recorder = sleeps if sleeps is not None else Sleeps()
    return AsyncVinr(
        SECRET_KEY,
        api_base=API_BASE,
        transport=httpx.MockTransport(script),
        sleep=recorder.async_sleep,
        **options,
    )


class BatchServer:
    """An async handler for ``/v1/usage_records/batch`` that can be held and scripted."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.arrived = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(await request.aread())
        self.calls.append((request.headers["idempotency-key"], body))
        self.arrived.set()
        await self.gate.wait()
        step = (
            self.steps.pop(0)
            if self.steps
            else respond(
                200,
                {
                    "id": f"mbu_{len(self.calls)}",
                    "object": "usage_record_batch",
                    "subscriptionItem": body["subscriptionItem"],
                    "count": len(body["records"]),
                },
            )
        )
        if isinstance(step, Exception):
            raise step
        return step

    def items(self) -> list[str]:
        return [body["subscriptionItem"] for _, body in self.calls]

    def records(self, item: str) -> list[dict[str, Any]]:
        return [
            r for _, body in self.calls if body["subscriptionItem"] == item for r in body["records"]
        ]
