"""Billing meters, meter events, adjustments, alerts and the upcoming invoice: what each call
sends (method, path, query, body, headers) and how its answer and errors are read, on both
clients."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

import httpx
import pytest
from vinr_sdk import AsyncVinr, IdempotencyError, InvalidRequestError, Vinr, VinrObject

from ._mock import Script, api_error, async_client, respond, sync_client

METER = {
    "id": "mtr_1",
    "object": "billing.meter",
    "created": 1764000000,
    "updated": 1764000600,
    "livemode": False,
    "displayName": "Tokens",
    "eventName": "tokens_used",
    "status": "inactive",
    "defaultAggregation": {"formula": "sum"},
    "customerMapping": {"type": "by_id", "eventPayloadKey": "customer_id"},
    "valueSettings": {"eventPayloadKey": "token_count"},
    "statusTransitions": {"deactivatedAt": 1764000600},
}

Call = Callable[[Any], Any]

# (call, method, path, query, body); every call works on either client.
ENDPOINTS: list[tuple[str, Call, str, str, str, Any]] = [
    (
        "meters.create",
        lambda c: c.billing.meters.create(
            display_name="Tokens",
            event_name="tokens_used",
            default_aggregation={"formula": "sum"},
            customer_mapping={"type": "by_id", "event_payload_key": "customer_id"},
            value_settings={"event_payload_key": "token_count"},
        ),
        "POST",
        "/v1/billing/meters",
        "",
        {
            "displayName": "Tokens",
            "eventName": "tokens_used",
            "defaultAggregation": {"formula": "sum"},
            "customerMapping": {"type": "by_id", "eventPayloadKey": "customer_id"},
            "valueSettings": {"eventPayloadKey": "token_count"},
        },
    ),
    (
        "meters.retrieve",
        lambda c: c.billing.meters.retrieve("mtr_1"),
        "GET",
        "/v1/billing/meters/mtr_1",
        "",
        None,
    ),
    (
        "meters.list",
        lambda c: c.billing.meters.list(status="active", limit=2, starting_after="mtr_9"),
        "GET",
        "/v1/billing/meters",
        "status=active&limit=2&startingAfter=mtr_9",
        None,
    ),
    (
        "meters.update",
        lambda c: c.billing.meters.update("mtr_1", display_name="Tokens (v2)"),
        "POST",
        "/v1/billing/meters/mtr_1",
        "",
        {"displayName": "Tokens (v2)"},
    ),
    (
        "meters.deactivate",
        lambda c: c.billing.meters.deactivate("mtr_1"),
        "POST",
        "/v1/billing/meters/mtr_1/deactivate",
        "",
        {},
    ),
    (
        "meters.reactivate",
        lambda c: c.billing.meters.reactivate("mtr_1"),
        "POST",
        "/v1/billing/meters/mtr_1/reactivate",
        "",
        {},
    ),
    (
        "meters.list_event_summaries",
        lambda c: c.billing.meters.list_event_summaries(
            "mtr_1",
            customer="cust_1",
            start_time=1764000000,
            end_time=1764086400,
            value_grouping_window="hour",
        ),
        "GET",
        "/v1/billing/meters/mtr_1/event_summaries",
        "customer=cust_1&startTime=1764000000&endTime=1764086400&valueGroupingWindow=hour",
        None,
    ),
    (
        "meters.list_event_summaries without a window",
        lambda c: c.billing.meters.list_event_summaries(
            "mtr_1", customer="cust_1", start_time=60, end_time=120
        ),
        "GET",
        "/v1/billing/meters/mtr_1/event_summaries",
        "customer=cust_1&startTime=60&endTime=120",
        None,
    ),
    (
        "meters.list_events",
        lambda c: c.billing.meters.list_events(
            "mtr_1", customer="cust_1", limit=50, starting_after="evt-9"
        ),
        "GET",
        "/v1/billing/meters/mtr_1/events",
        "customer=cust_1&limit=50&startingAfter=evt-9",
        None,
    ),
    (
        "meter_events.create",
        lambda c: c.billing.meter_events.create(
            event_name="tokens_used",
            payload={"customer_id": "cust_1", "token_count": "12.5"},
            identifier="req-42",
            timestamp=1764000030,
        ),
        "POST",
        "/v1/billing/meter_events",
        "",
        {
            "eventName": "tokens_used",
            "payload": {"customer_id": "cust_1", "token_count": "12.5"},
            "identifier": "req-42",
            "timestamp": 1764000030,
        },
    ),
    (
        "meter_events.create without identifier or timestamp",
        lambda c: c.billing.meter_events.create(
            event_name="api_calls", payload={"customer": "cust_1"}
        ),
        "POST",
        "/v1/billing/meter_events",
        "",
        {"eventName": "api_calls", "payload": {"customer": "cust_1"}},
    ),
    (
        "meter_events.create_batch",
        lambda c: c.billing.meter_events.create_batch(
            events=[
                {
                    "event_name": "tokens_used",
                    "payload": {"customer_id": "cust_1", "token_count": 7},
                    "identifier": "req-1",
                },
                {
                    "event_name": "tokens_used",
                    "payload": {"customer_id": "cust_2", "token_count": Decimal("0.25")},
                    "timestamp": 1764000031,
                },
            ]
        ),
        "POST",
        "/v1/billing/meter_events/batch",
        "",
        {
            "events": [
                {
                    "eventName": "tokens_used",
                    "payload": {"customer_id": "cust_1", "token_count": 7},
                    "identifier": "req-1",
                },
                {
                    "eventName": "tokens_used",
                    "payload": {"customer_id": "cust_2", "token_count": "0.25"},
                    "timestamp": 1764000031,
                },
            ]
        },
    ),
    (
        "meter_event_adjustments.create",
        lambda c: c.billing.meter_event_adjustments.create(
            event_name="tokens_used", type="cancel", cancel={"identifier": "req-42"}
        ),
        "POST",
        "/v1/billing/meter_event_adjustments",
        "",
        {"eventName": "tokens_used", "type": "cancel", "cancel": {"identifier": "req-42"}},
    ),
    (
        "alerts.create",
        lambda c: c.billing.alerts.create(
            title="1M tokens",
            alert_type="usage_threshold",
            usage_threshold={"meter": "mtr_1", "gte": 1_000_000, "recurrence": "one_time"},
            filter={"customer": "cust_1"},
        ),
        "POST",
        "/v1/billing/alerts",
        "",
        {
            "title": "1M tokens",
            "alertType": "usage_threshold",
            "usageThreshold": {"meter": "mtr_1", "gte": 1_000_000, "recurrence": "one_time"},
            "filter": {"customer": "cust_1"},
        },
    ),
    (
        "alerts.retrieve",
        lambda c: c.billing.alerts.retrieve("alrt_1"),
        "GET",
        "/v1/billing/alerts/alrt_1",
        "",
        None,
    ),
    (
        "alerts.list",
        lambda c: c.billing.alerts.list(limit=5),
        "GET",
        "/v1/billing/alerts",
        "limit=5",
        None,
    ),
    (
        "alerts.activate",
        lambda c: c.billing.alerts.activate("alrt_1"),
        "POST",
        "/v1/billing/alerts/alrt_1/activate",
        "",
        {},
    ),
    (
        "alerts.deactivate",
        lambda c: c.billing.alerts.deactivate("alrt_1"),
        "POST",
        "/v1/billing/alerts/alrt_1/deactivate",
        "",
        {},
    ),
    (
        "alerts.archive",
        lambda c: c.billing.alerts.archive("alrt_1"),
        "POST",
        "/v1/billing/alerts/alrt_1/archive",
        "",
        {},
    ),
    (
        "invoices.upcoming",
        lambda c: c.invoices.upcoming(subscription="sub_1"),
        "GET",
        "/v1/invoices/upcoming",
        "subscription=sub_1",
        None,
    ),
    (
        "prices.create on a meter",
        lambda c: c.prices.create(
            product="prod_1",
            currency="EUR",
            billing_scheme="per_unit",
            unit_amount_decimal="0.0004",
            recurring={"interval": "month", "usage_type": "metered", "meter": "mtr_1"},
        ),
        "POST",
        "/v1/prices",
        "",
        {
            "product": "prod_1",
            "currency": "EUR",
            "billingScheme": "per_unit",
            "unitAmountDecimal": "0.0004",
            "recurring": {"interval": "month", "usageType": "metered", "meter": "mtr_1"},
        },
    ),
]


def _check_request(request: httpx.Request, method: str, path: str, query: str, body: Any) -> None:
    assert (request.method, request.url.path, request.url.query.decode()) == (method, path, query)
    assert request.headers["authorization"].startswith("Bearer sk_test_")
    if method == "POST":
        assert request.headers["content-type"] == "application/json"
        key = request.headers["idempotency-key"]
        assert uuid.UUID(key).version == 4
        assert httpx.Response(200, content=request.content).json() == body
    else:
        assert "idempotency-key" not in request.headers
        assert request.content == b"" and body is None


@pytest.mark.parametrize(
    ("call", "method", "path", "query", "body"),
    [pytest.param(*row[1:], id=row[0]) for row in ENDPOINTS],
)
def test_sync_endpoints(call: Call, method: str, path: str, query: str, body: Any) -> None:
    script = Script()
    with sync_client(script) as client:
        result = call(client)
    assert isinstance(result, VinrObject) and result.id == "obj_1"
    assert len(script.requests) == 1
    _check_request(script.requests[0], method, path, query, body)


@pytest.mark.parametrize(
    ("call", "method", "path", "query", "body"),
    [pytest.param(*row[1:], id=row[0]) for row in ENDPOINTS],
)
async def test_async_endpoints(call: Call, method: str, path: str, query: str, body: Any) -> None:
    script = Script()
    async with async_client(script) as client:
        pending = call(client)
        assert isinstance(pending, Coroutine)
        result = await pending
    assert isinstance(result, VinrObject) and result.id == "obj_1"
    assert len(script.requests) == 1
    _check_request(script.requests[0], method, path, query, body)


def test_callers_idempotency_key_is_sent_on_every_billing_post() -> None:
    script = Script()
    with sync_client(script) as client:
        billing = client.billing
        billing.meters.create(
            display_name="d",
            event_name="e",
            default_aggregation={"formula": "count"},
            idempotency_key="k-1",
        )
        billing.meters.update("mtr_1", display_name="d2", idempotency_key="k-2")
        billing.meters.deactivate("mtr_1", idempotency_key="k-3")
        billing.meters.reactivate("mtr_1", idempotency_key="k-4")
        billing.meter_events.create(
            event_name="e", payload={"customer": "cust_1"}, idempotency_key="k-5"
        )
        billing.meter_events.create_batch(
            events=[{"event_name": "e", "payload": {"customer": "cust_1"}}],
            idempotency_key="k-6",
        )
        billing.meter_event_adjustments.create(
            event_name="e", type="cancel", cancel={"identifier": "x"}, idempotency_key="k-7"
        )
        billing.alerts.create(
            title="t",
            alert_type="usage_threshold",
            usage_threshold={"meter": "mtr_1", "gte": 1, "recurrence": "one_time"},
            idempotency_key="k-8",
        )
        billing.alerts.activate("alrt_1", idempotency_key="k-9")
        billing.alerts.deactivate("alrt_1", idempotency_key="k-10")
        billing.alerts.archive("alrt_1", idempotency_key="k-11")
    assert script.keys() == [f"k-{n}" for n in range(1, 12)]
    assert all("idempotencyKey" not in script.json(i) for i in range(11))


def test_a_retried_meter_event_batch_resends_the_same_key_and_bytes() -> None:
    script = Script(respond(503), api_error(409, "idempotency_error", "in flight"), respond(200))
    with sync_client(script) as client:
        client.billing.meter_events.create_batch(
            events=[{"event_name": "e", "payload": {"customer": "cust_1", "value": 3}}]
        )
    assert len(script.requests) == 3
    assert len(set(script.keys())) == 1
    assert len({r.content for r in script.requests}) == 1


def test_no_identifier_is_made_client_side() -> None:
    """The API makes a meter event's identifier when absent; two calls send two bodies
    without one (and two different Idempotency-Keys)."""
    script = Script()
    with sync_client(script) as client:
        for _ in range(2):
            client.billing.meter_events.create(event_name="e", payload={"customer": "cust_1"})
    assert [script.json(i) for i in range(2)] == [
        {"eventName": "e", "payload": {"customer": "cust_1"}}
    ] * 2
    first, second = script.keys()
    assert first != second


def test_payload_keys_and_values_are_sent_as_given() -> None:
    script = Script()
    with sync_client(script) as client:
        client.billing.meter_events.create(
            event_name="gpu_seconds",
            payload={"tenant_id": "cust_1", "gpuSeconds": Decimal("1.000000000001")},
        )
    assert script.json() == {
        "eventName": "gpu_seconds",
        "payload": {"tenant_id": "cust_1", "gpuSeconds": "1.000000000001"},
    }


def test_a_meter_reads_by_snake_case_attribute() -> None:
    script = Script(respond(200, METER))
    with sync_client(script) as client:
        meter = client.billing.meters.retrieve("mtr_1")
    assert meter.display_name == "Tokens" and meter.event_name == "tokens_used"
    assert meter.default_aggregation.formula == "sum"
    assert meter.customer_mapping.event_payload_key == "customer_id"
    assert meter.value_settings.event_payload_key == "token_count"
    assert meter.status_transitions.deactivated_at == 1764000600
    assert meter == METER


def test_event_summaries_read_with_their_exact_decimal() -> None:
    summaries = {
        "object": "list",
        "url": "/v1/billing/meters/mtr_1/event_summaries",
        "hasMore": False,
        "data": [
            {
                "id": "mtrsum_a",
                "object": "billing.meter_event_summary",
                "meter": "mtr_1",
                "customer": "cust_1",
                "livemode": False,
                "startTime": 1764000000,
                "endTime": 1764003600,
                "aggregatedValue": 0.30000000000000004,
                "aggregatedValueDecimal": "0.300000000000",
            },
            {
                "id": "mtrsum_b",
                "object": "billing.meter_event_summary",
                "meter": "mtr_1",
                "customer": "cust_1",
                "livemode": False,
                "startTime": 1764003600,
                "endTime": 1764007200,
                "aggregatedValue": 0,
                "aggregatedValueDecimal": "0",
            },
        ],
    }
    script = Script(respond(200, summaries))
    with sync_client(script) as client:
        page = client.billing.meters.list_event_summaries(
            "mtr_1",
            customer="cust_1",
            start_time=1764000000,
            end_time=1764007200,
            value_grouping_window="hour",
        )
    first, second = page.data
    assert Decimal(first.aggregated_value_decimal) == Decimal("0.3")
    assert first.aggregated_value == pytest.approx(0.3)
    assert (first.start_time, first.end_time, second.start_time) == (
        1764000000,
        1764003600,
        1764003600,
    )
    assert second.aggregated_value == 0 and second["aggregatedValueDecimal"] == "0"
    assert page.has_more is False


def test_meter_event_answers_keep_the_payload_keys() -> None:
    event = {
        "object": "billing.meter_event",
        "eventName": "tokens_used",
        "identifier": "mevt_9",
        "payload": {"customer_id": "cust_1", "token_count": "12.5"},
        "timestamp": 1764000030,
        "created": 1764000031,
        "livemode": False,
    }
    script = Script(respond(200, event, {"Idempotent-Replayed": "true"}))
    with sync_client(script) as client:
        answer = client.billing.meter_events.create(
            event_name="tokens_used", payload={"customer_id": "cust_1", "token_count": "12.5"}
        )
    assert answer.identifier == "mevt_9" and answer.event_name == "tokens_used"
    assert answer.payload.customer_id == "cust_1"
    assert answer.payload == {"customer_id": "cust_1", "token_count": "12.5"}


def test_batch_answers_count_duplicates() -> None:
    batch = {
        "object": "billing.meter_event_batch",
        "created": 1764000031,
        "livemode": False,
        "count": 2,
        "duplicates": 1,
        "data": [
            {"object": "billing.meter_event", "identifier": "a", "payload": {"customer": "c"}},
            {"object": "billing.meter_event", "identifier": "b", "payload": {"customer": "c"}},
        ],
    }
    script = Script(respond(200, batch))
    with sync_client(script) as client:
        answer = client.billing.meter_events.create_batch(
            events=[
                {"event_name": "e", "payload": {"customer": "c"}, "identifier": "a"},
                {"event_name": "e", "payload": {"customer": "c"}, "identifier": "b"},
            ]
        )
    assert (answer.count, answer.duplicates) == (2, 1)
    assert [e.identifier for e in answer.data] == ["a", "b"]


def test_upcoming_invoice_lines_carry_decimal_quantities() -> None:
    invoice = {
        "id": None,
        "object": "invoice",
        "status": "draft",
        "total": 5,
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": "il_1",
                    "quantity": 12345.5,
                    "quantityDecimal": "12345.5",
                    "price": {"id": "price_1", "recurring": {"meter": "mtr_1"}},
                    "amount": 5,
                }
            ],
        },
    }
    script = Script(respond(200, invoice))
    with sync_client(script) as client:
        upcoming = client.invoices.upcoming(subscription="sub_1")
    line = upcoming.lines.data[0]
    assert upcoming.id is None and upcoming.status == "draft"
    assert line.quantity_decimal == "12345.5" and line.quantity == 12345.5
    assert line.price.recurring.meter == "mtr_1"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (
            lambda c: c.billing.meter_events.create(
                event_name="nope", payload={"customer": "cust_1"}
            ),
            api_error(
                400,
                "invalid_request_error",
                "no active meter has event name nope",
                code="meter_not_found",
                param="eventName",
            ),
        ),
        (
            lambda c: c.billing.meter_events.create_batch(
                events=[{"event_name": "e", "payload": {"customer": "cust_1", "value": "x"}}]
            ),
            api_error(
                400,
                "invalid_request_error",
                "2 invalid events, nothing was recorded",
                code="parameter_invalid",
                param="events[0].payload.value",
            ),
        ),
        (
            lambda c: c.billing.meter_event_adjustments.create(
                event_name="e", type="cancel", cancel={"identifier": "old"}
            ),
            api_error(
                400,
                "invalid_request_error",
                "the event is in an invoiced period",
                code="event_in_invoiced_period",
                param="cancel.identifier",
            ),
        ),
        (
            lambda c: c.billing.meters.reactivate("mtr_1"),
            api_error(
                400,
                "invalid_request_error",
                "another active meter has this event name",
                param="eventName",
            ),
        ),
        (
            lambda c: c.billing.meters.list_event_summaries(
                "mtr_1", customer="cust_1", start_time=1, end_time=2
            ),
            api_error(
                400,
                "invalid_request_error",
                "startTime must be on a minute boundary",
                code="parameter_invalid",
                param="startTime",
            ),
        ),
        (
            lambda c: c.billing.alerts.retrieve("alrt_missing"),
            api_error(
                404, "invalid_request_error", "no such alert", code="resource_missing", param="id"
            ),
        ),
        (
            lambda c: c.invoices.upcoming(subscription="sub_gone"),
            api_error(
                404,
                "invalid_request_error",
                "no such subscription",
                code="resource_missing",
                param="subscription",
            ),
        ),
    ],
)
def test_refusals_raise_invalid_request_errors(call: Call, error: httpx.Response) -> None:
    expected = error.json()["error"]
    script = Script(error)
    with sync_client(script) as client, pytest.raises(InvalidRequestError) as info:
        call(client)
    assert len(script.requests) == 1  # a 4xx is final
    err = info.value
    assert (err.http_status, err.code, err.param, err.message) == (
        error.status_code,
        expected["code"],
        expected["param"],
        expected["message"],
    )


def test_an_identifier_reused_with_another_event_is_an_idempotency_error() -> None:
    script = Script(
        api_error(400, "idempotency_error", "identifier req-1 was sent with another event")
    )
    with sync_client(script) as client, pytest.raises(IdempotencyError) as info:
        client.billing.meter_events.create(
            event_name="e", payload={"customer": "cust_1", "value": 2}, identifier="req-1"
        )
    assert info.value.http_status == 400 and "req-1" in info.value.message


async def test_async_errors_are_raised_after_retries() -> None:
    script = Script(*[api_error(409, "idempotency_error", "in flight")] * 3)
    async with async_client(script) as client:
        with pytest.raises(IdempotencyError):
            await client.billing.meter_events.create(
                event_name="e", payload={"customer": "cust_1"}, identifier="req-1"
            )
    assert len(script.requests) == 3 and len(set(script.keys())) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.billing.meters.retrieve(""),
        lambda c: c.billing.meters.list_event_summaries(
            "", customer="c", start_time=0, end_time=60
        ),
        lambda c: c.billing.meters.list_events("", customer="c"),
        lambda c: c.billing.alerts.archive(""),
    ],
)
def test_empty_ids_are_refused_before_sending(call: Call) -> None:
    script = Script()
    with sync_client(script) as client, pytest.raises(ValueError, match="non-empty"):
        call(client)
    assert script.requests == []


def test_meter_ids_are_escaped() -> None:
    script = Script()
    with sync_client(script) as client:
        client.billing.meters.list_events("mtr/1?x", customer="cust_1")
    assert (
        script.requests[0].url.raw_path == b"/v1/billing/meters/mtr%2F1%3Fx/events?customer=cust_1"
    )


async def test_both_clients_expose_the_same_billing_resources() -> None:
    def names(client: Vinr | AsyncVinr) -> dict[str, list[str]]:
        billing = client.billing
        return {
            attr: sorted(m for m in dir(getattr(billing, attr)) if not m.startswith("_"))
            for attr in ("meters", "meter_events", "meter_event_adjustments", "alerts")
        }

    with sync_client(Script()) as sync:
        expected = names(sync)
    assert expected["meters"] == [
        "create",
        "deactivate",
        "list",
        "list_event_summaries",
        "list_events",
        "reactivate",
        "retrieve",
        "update",
    ]
    assert expected["meter_events"] == ["create", "create_batch"]
    assert expected["alerts"] == [
        "activate",
        "archive",
        "create",
        "deactivate",
        "list",
        "retrieve",
    ]
    async with async_client(Script()) as client:
        assert names(client) == expected
