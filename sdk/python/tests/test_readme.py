"""The README's "Billing meters" example type-checks under ``mypy --strict`` and runs,
unchanged, against a scripted transport that answers as the API would (no server)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import vinr_sdk

from ._mock import API_BASE, SECRET_KEY, Script, respond
from .test_types import _mypy

README = Path(__file__).resolve().parents[1] / "README.md"


def meters_example() -> str:
    section = README.read_text(encoding="utf-8").split("\n## Billing meters\n")[1]
    match = re.search(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert match is not None, "the Billing meters section has a python block"
    return match.group(1)


def _answer(request: httpx.Request) -> httpx.Response:
    body: dict[str, Any] = json.loads(request.content) if request.content else {}
    base = {"created": 1764000000, "livemode": False}
    route = f"{request.method} {request.url.path}"
    answers: dict[str, dict[str, Any]] = {
        "POST /v1/billing/meters": {"id": "mtr_1", "object": "billing.meter", **body},
        "POST /v1/products": {"id": "prod_1", "object": "product", **body},
        "POST /v1/prices": {"id": "price_1", "object": "price", **body},
        "POST /v1/subscriptions": {"id": "sub_1", "object": "subscription", **body},
        "POST /v1/billing/meter_events": {"object": "billing.meter_event", **body},
        "POST /v1/billing/meter_events/batch": {
            "object": "billing.meter_event_batch",
            "count": len(body.get("events", [])),
            "duplicates": 0,
            "data": body.get("events", []),
        },
        "POST /v1/billing/meter_event_adjustments": {
            "id": "mtradj_1",
            "object": "billing.meter_event_adjustment",
            "status": "complete",
            **body,
        },
        "GET /v1/billing/meters/mtr_1/event_summaries": {
            "object": "list",
            "hasMore": False,
            "data": [
                {"id": "mtrsum_a", "aggregatedValue": 1200, "aggregatedValueDecimal": "1200"},
                {"id": "mtrsum_b", "aggregatedValue": 0, "aggregatedValueDecimal": "0"},
                {"id": "mtrsum_c", "aggregatedValue": 350.5, "aggregatedValueDecimal": "350.5"},
            ],
        },
        "POST /v1/billing/alerts": {"id": "alrt_1", "object": "billing.alert", **body},
        "GET /v1/invoices/upcoming": {
            "id": None,
            "object": "invoice",
            "status": "draft",
            "total": 62,
            "lines": {"data": [{"quantity": 1550.5, "quantityDecimal": "1550.5"}]},
        },
    }
    if route not in answers:
        return respond(404, {"error": {"type": "invalid_request_error", "message": route}})
    return respond(200, base | answers[route])


def test_the_example_type_checks(tmp_path: Path) -> None:
    assert _mypy(tmp_path, meters_example()) == ("", 0)


def test_the_example_runs_making_the_calls_it_describes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script()
    monkeypatch.setenv("VINR_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("VINR_API_BASE", API_BASE)

    def handler(request: httpx.Request) -> httpx.Response:
        script(request)
        return _answer(request)

    real = vinr_sdk.Vinr

    def client(*args: Any, **kwargs: Any) -> vinr_sdk.Vinr:
        return real(*args, transport=httpx.MockTransport(handler), **kwargs)

    monkeypatch.setattr(vinr_sdk, "Vinr", client)
    exec(compile(meters_example(), "README.md", "exec"), {"__name__": "readme"})

    routes = [f"{r.method} {r.url.path}" for r in script.requests]
    assert routes == [
        "POST /v1/billing/meters",
        "POST /v1/products",
        "POST /v1/prices",
        "POST /v1/subscriptions",
        "POST /v1/billing/meter_events",
        "POST /v1/billing/meter_events/batch",
        "POST /v1/billing/meter_event_adjustments",
        "GET /v1/billing/meters/mtr_1/event_summaries",
        "POST /v1/billing/alerts",
        "GET /v1/invoices/upcoming",
    ]
    assert script.json(0) == {
        "displayName": "LLM tokens",
        "eventName": "llm.tokens",
        "defaultAggregation": {"formula": "sum"},
        "valueSettings": {"eventPayloadKey": "tokens"},
    }
    assert script.json(2)["recurring"] == {
        "interval": "month",
        "usageType": "metered",
        "meter": "mtr_1",
    }
    assert script.json(5)["events"][0] == {
        "eventName": "llm.tokens",
        "payload": {"customer": "cust_8aZ2", "tokens": "350.5"},
        "identifier": "req_7Hq3",
    }
    assert script.json(6) == {
        "eventName": "llm.tokens",
        "type": "cancel",
        "cancel": {"identifier": "req_7Hq4"},
    }
    query = parse_qs(script.requests[7].url.query.decode())
    start, end = int(query["startTime"][0]), int(query["endTime"][0])
    assert start % 86_400 == 0 and end == start + 86_400
    assert query["customer"] == ["cust_8aZ2"] and query["valueGroupingWindow"] == ["hour"]
    assert script.requests[9].url.query == b"subscription=sub_1"
    assert capsys.readouterr().out == "1550.5 tokens today\n62 1550.5\n"
