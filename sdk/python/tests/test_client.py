"""The sync client's transport: idempotency keys, retries, errors, bodies, paths."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from vinr_sdk import (
    DEFAULT_API_BASE,
    APIConnectionError,
    APIError,
    AuthenticationError,
    IdempotencyError,
    InvalidRequestError,
    RateLimitError,
    Vinr,
    VinrError,
    VinrObject,
)
from vinr_sdk._client import BACKOFF_BASE_S, BACKOFF_CAP_S, _delay_s

from ._mock import SECRET_KEY, Script, Sleeps, api_error, respond, sync_client


def test_idempotency_key_is_reused_across_retries() -> None:
    script, sleeps = Script(respond(503), respond(503), respond(200)), Sleeps()
    with sync_client(script, sleeps) as client:
        product = client.products.create(name="API access")
    assert product.id == "obj_1"
    keys = script.keys()
    assert len(keys) == 3 and len(set(keys)) == 1
    assert keys[0] is not None and uuid.UUID(keys[0]).version == 4
    assert {r.content for r in script.requests} == {b'{"name":"API access"}'}
    assert len(sleeps.calls) == 2


def test_callers_idempotency_key_is_sent_and_reused() -> None:
    script = Script(respond(500), respond(200))
    with sync_client(script) as client:
        client.usage_records.create(
            subscription_item="si_1", quantity=3, idempotency_key="usage-req-42"
        )
    assert script.keys() == ["usage-req-42", "usage-req-42"]
    assert "idempotency_key" not in script.json()


def test_each_logical_call_gets_its_own_key() -> None:
    script = Script()
    with sync_client(script) as client:
        client.products.create(name="a")
        client.products.create(name="a")
    first, second = script.keys()
    assert first != second


def test_gets_and_deletes_carry_no_idempotency_key() -> None:
    script = Script()
    with sync_client(script) as client:
        client.products.retrieve("prod_1")
        client.subscriptions.cancel("sub_1")
    assert script.keys() == [None, None]
    assert all(r.content == b"" for r in script.requests)


def test_retry_after_is_honoured() -> None:
    script = Script(
        api_error(429, "rate_limit_error", headers={"Retry-After": "3"}),
        api_error(503, "api_error", headers={"Retry-After": "0.5"}),
        respond(200),
    )
    sleeps = Sleeps()
    with sync_client(script, sleeps) as client:
        client.customers.create(name="Ada")
    assert sleeps.calls == [3.0, 0.5]


def test_unparseable_retry_after_falls_back_to_backoff() -> None:
    script = Script(api_error(503, "api_error", headers={"Retry-After": "soon"}), respond())
    sleeps = Sleeps()
    with sync_client(script, sleeps) as client:
        client.products.list()
    assert len(sleeps.calls) == 1 and 0 <= sleeps.calls[0] <= BACKOFF_BASE_S


def test_backoff_is_full_jitter_within_the_exponential_bound() -> None:
    script = Script(*[respond(502)] * 5, respond(200))
    sleeps = Sleeps()
    with sync_client(script, sleeps, max_retries=5) as client:
        client.events.list()
    assert len(sleeps.calls) == 5
    for attempt, delay in enumerate(sleeps.calls):
        assert 0 <= delay <= min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)


@given(st.integers(min_value=0, max_value=200))
def test_delay_never_exceeds_the_cap(attempt: int) -> None:
    assert 0 <= _delay_s(attempt, None) <= min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)


def test_retries_are_bounded_then_the_error_is_raised() -> None:
    script = Script(*[api_error(503, "api_error", "kafka down")] * 5)
    sleeps = Sleeps()
    with sync_client(script, sleeps, max_retries=2) as client, pytest.raises(APIError) as info:
        client.products.create(name="x")
    assert len(script.requests) == 3 and len(sleeps.calls) == 2
    assert info.value.http_status == 503 and info.value.type == "api_error"
    assert info.value.message == "kafka down"


def test_max_retries_zero_sends_once() -> None:
    script = Script(respond(503))
    with sync_client(script, max_retries=0) as client, pytest.raises(APIError):
        client.products.list()
    assert len(script.requests) == 1


def test_transport_errors_are_retried() -> None:
    script = Script(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), respond(200))
    with sync_client(script) as client:
        assert client.products.create(name="x").id == "obj_1"
    assert len(set(script.keys())) == 1 and len(script.requests) == 3


def test_connection_error_after_the_last_retry() -> None:
    script = Script(*[httpx.ConnectError("refused")] * 3)
    with sync_client(script) as client, pytest.raises(APIConnectionError) as info:
        client.products.list()
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert info.value.http_status is None


@pytest.mark.parametrize(
    ("response", "error_class", "status", "err_type"),
    [
        (
            api_error(
                400,
                "invalid_request_error",
                "timestamp is before the current period",
                code="timestamp_out_of_period",
                param="timestamp",
            ),
            InvalidRequestError,
            400,
            "invalid_request_error",
        ),
        (
            api_error(401, "authentication_error", "unknown key", code="invalid_api_key"),
            AuthenticationError,
            401,
            "authentication_error",
        ),
        (
            api_error(
                404, "invalid_request_error", "no such price", code="resource_missing", param="id"
            ),
            InvalidRequestError,
            404,
            "invalid_request_error",
        ),
        (
            api_error(409, "idempotency_error", "still in flight", code="idempotency_in_flight"),
            IdempotencyError,
            409,
            "idempotency_error",
        ),
        (
            api_error(400, "idempotency_error", "other body", code="idempotency_key_reused"),
            IdempotencyError,
            400,
            "idempotency_error",
        ),
        (
            api_error(429, "rate_limit_error", "slow down", code="rate_limited"),
            RateLimitError,
            429,
            "rate_limit_error",
        ),
        (
            api_error(422, "invalid_request_error", "bad tiers"),
            InvalidRequestError,
            422,
            "invalid_request_error",
        ),
    ],
)
def test_error_mapping(
    response: httpx.Response, error_class: type[VinrError], status: int, err_type: str
) -> None:
    body = response.json()["error"]
    script = Script(response)
    with sync_client(script, max_retries=0) as client, pytest.raises(error_class) as info:
        client.usage_records.create(subscription_item="si_1", quantity=1)
    err = info.value
    assert (err.http_status, err.type, err.code, err.param, err.message) == (
        status,
        err_type,
        body["code"],
        body["param"],
        body["message"],
    )
    assert isinstance(err, VinrError)
    assert body["message"] in str(err)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (404, InvalidRequestError),
        (429, RateLimitError),
        (500, APIError),
        (502, APIError),
    ],
)
def test_errors_without_an_api_body_map_by_status(
    status: int, error_class: type[VinrError]
) -> None:
    script = Script(httpx.Response(status, text="<html>proxy error</html>"))
    with sync_client(script, max_retries=0) as client, pytest.raises(error_class) as info:
        client.products.list()
    assert info.value.http_status == status and "proxy error" in info.value.message


def test_client_errors_are_not_retried() -> None:
    script = Script(api_error(400, "invalid_request_error"), respond())
    with sync_client(script) as client, pytest.raises(InvalidRequestError):
        client.customers.create(name="Ada")
    assert len(script.requests) == 1


def test_snake_case_arguments_go_out_in_camel_case_nested_ones_too() -> None:
    script = Script()
    with sync_client(script) as client:
        client.prices.create(
            product="prod_1",
            currency="EUR",
            billing_scheme="tiered",
            tiers_mode="graduated",
            recurring={
                "interval": "month",
                "usage_type": "metered",
                "aggregate_usage": "last_during_period",
            },
            tiers=[
                {"up_to": 1000, "unit_amount_decimal": "0.5"},
                {"up_to": "inf", "flat_amount": 10},
            ],
            transform_quantity={"divide_by": 1000, "round": "up"},
        )
    request = script.requests[0]
    assert (request.method, request.url.path) == ("POST", "/v1/prices")
    assert script.json() == {
        "product": "prod_1",
        "currency": "EUR",
        "billingScheme": "tiered",
        "tiersMode": "graduated",
        "recurring": {
            "interval": "month",
            "usageType": "metered",
            "aggregateUsage": "last_during_period",
        },
        "tiers": [{"upTo": 1000, "unitAmountDecimal": "0.5"}, {"upTo": "inf", "flatAmount": 10}],
        "transformQuantity": {"divideBy": 1000, "round": "up"},
    }
    assert request.headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert request.headers["content-type"] == "application/json"


def test_metadata_keys_are_sent_as_given() -> None:
    script = Script()
    with sync_client(script) as client:
        client.subscriptions.create(
            customer="cust_1",
            items=[{"price": "price_1", "quantity": 2}],
            test_clock="clock_1",
            cancel_at_period_end=False,
            metadata={"plan_tier": "gold", "teamId": "t_1"},
        )
    assert script.json() == {
        "customer": "cust_1",
        "items": [{"price": "price_1", "quantity": 2}],
        "testClock": "clock_1",
        "cancelAtPeriodEnd": False,
        "metadata": {"plan_tier": "gold", "teamId": "t_1"},
    }


def test_none_is_sent_as_null() -> None:
    script = Script()
    with sync_client(script) as client:
        client.webhook_endpoints.update("we_1", description=None)
    assert script.json() == {"description": None}


Call = Callable[[Vinr], Any]


@pytest.mark.parametrize(
    ("call", "method", "path", "query", "body"),
    [
        (
            lambda c: c.products.list(limit=10, starting_after="prod_9"),
            "GET",
            "/v1/products",
            "limit=10&startingAfter=prod_9",
            None,
        ),
        (lambda c: c.prices.retrieve("price_1"), "GET", "/v1/prices/price_1", "", None),
        (
            lambda c: c.customers.create(id="cust_8aZ2", payment_method="pm_card_visa"),
            "POST",
            "/v1/customers",
            "",
            {"id": "cust_8aZ2", "paymentMethod": "pm_card_visa"},
        ),
        (
            lambda c: c.customers.update("cust_1", email="a@b.c"),
            "POST",
            "/v1/customers/cust_1",
            "",
            {"email": "a@b.c"},
        ),
        (lambda c: c.customers.list(), "GET", "/v1/customers", "", None),
        (
            lambda c: c.subscriptions.create(customer="cust_1", items=[{"price": "price_1"}]),
            "POST",
            "/v1/subscriptions",
            "",
            {"customer": "cust_1", "items": [{"price": "price_1"}]},
        ),
        (
            lambda c: c.subscriptions.update("sub_1", cancel_at_period_end=True),
            "POST",
            "/v1/subscriptions/sub_1",
            "",
            {"cancelAtPeriodEnd": True},
        ),
        (lambda c: c.subscriptions.cancel("sub_1"), "DELETE", "/v1/subscriptions/sub_1", "", None),
        (
            lambda c: c.subscriptions.list(customer="cust_1"),
            "GET",
            "/v1/subscriptions",
            "customer=cust_1",
            None,
        ),
        (
            lambda c: c.usage_records.create_batch(
                subscription_item="si_1", records=[{"quantity": 1200, "timestamp": 5}]
            ),
            "POST",
            "/v1/usage_records/batch",
            "",
            {"subscriptionItem": "si_1", "records": [{"quantity": 1200, "timestamp": 5}]},
        ),
        (
            lambda c: c.usage_records.summaries(subscription_item="si_4Kp1"),
            "GET",
            "/v1/usage_records/summaries",
            "subscriptionItem=si_4Kp1",
            None,
        ),
        (
            lambda c: c.invoices.list(subscription="sub_1", limit=3),
            "GET",
            "/v1/invoices",
            "subscription=sub_1&limit=3",
            None,
        ),
        (lambda c: c.invoices.retrieve("inv_1"), "GET", "/v1/invoices/inv_1", "", None),
        (lambda c: c.invoices.pay("inv_1"), "POST", "/v1/invoices/inv_1/pay", "", {}),
        (lambda c: c.charges.list(invoice="inv_1"), "GET", "/v1/charges", "invoice=inv_1", None),
        (
            lambda c: c.webhook_endpoints.create(url="https://x.test/h", enabled_events=["*"]),
            "POST",
            "/v1/webhook_endpoints",
            "",
            {"url": "https://x.test/h", "enabledEvents": ["*"]},
        ),
        (lambda c: c.webhook_endpoints.list(), "GET", "/v1/webhook_endpoints", "", None),
        (
            lambda c: c.webhook_endpoints.retrieve("we_1"),
            "GET",
            "/v1/webhook_endpoints/we_1",
            "",
            None,
        ),
        (
            lambda c: c.webhook_endpoints.update("we_1", enabled_events=["invoice.paid"]),
            "POST",
            "/v1/webhook_endpoints/we_1",
            "",
            {"enabledEvents": ["invoice.paid"]},
        ),
        (
            lambda c: c.webhook_endpoints.delete("we_1"),
            "DELETE",
            "/v1/webhook_endpoints/we_1",
            "",
            None,
        ),
        (lambda c: c.events.list(limit=2), "GET", "/v1/events", "limit=2", None),
        (
            lambda c: c.webhook_endpoints.roll_secret("we_1"),
            "POST",
            "/v1/webhook_endpoints/we_1/roll_secret",
            "",
            {},
        ),
        (lambda c: c.events.retrieve("evt_1"), "GET", "/v1/events/evt_1", "", None),
        (
            lambda c: c.events.deliveries("evt_1", webhook_endpoint="we_1"),
            "GET",
            "/v1/events/evt_1/deliveries",
            "webhookEndpoint=we_1",
            None,
        ),
        (lambda c: c.events.resend("evt_1"), "POST", "/v1/events/evt_1/resend", "", {}),
        (
            lambda c: c.events.resend("evt_1", webhook_endpoint="we_1"),
            "POST",
            "/v1/events/evt_1/resend",
            "",
            {"webhookEndpoint": "we_1"},
        ),
        (
            lambda c: c.test_helpers.subscriptions.advance_period("sub_1"),
            "POST",
            "/v1/test_helpers/subscriptions/sub_1/advance_period",
            "",
            {},
        ),
        (
            lambda c: c.test_helpers.test_clocks.create(frozen_time=1764000000, name="c"),
            "POST",
            "/v1/test_helpers/test_clocks",
            "",
            {"frozenTime": 1764000000, "name": "c"},
        ),
        (
            lambda c: c.test_helpers.test_clocks.retrieve("clock_1"),
            "GET",
            "/v1/test_helpers/test_clocks/clock_1",
            "",
            None,
        ),
        (
            lambda c: c.test_helpers.test_clocks.advance("clock_1", frozen_time=1766592000),
            "POST",
            "/v1/test_helpers/test_clocks/clock_1/advance",
            "",
            {"frozenTime": 1766592000},
        ),
    ],
)
def test_endpoints(call: Call, method: str, path: str, query: str, body: Any) -> None:
    script = Script()
    with sync_client(script) as client:
        call(client)
    request = script.requests[0]
    assert (request.method, request.url.path, request.url.query.decode()) == (method, path, query)
    assert (script.json() if request.content else None) == body


def test_decimals_are_sent_as_strings() -> None:
    script = Script()
    with sync_client(script) as client:
        client.prices.create(
            product="prod_1",
            currency="EUR",
            recurring={"interval": "month"},
            unit_amount_decimal=Decimal("0.002"),
        )
        with pytest.raises(TypeError):
            client.prices.create(
                product="prod_1",
                currency="EUR",
                recurring={"interval": "month"},
                unit_amount_decimal=object(),  # type: ignore[arg-type]
            )
    assert script.json() == {
        "product": "prod_1",
        "currency": "EUR",
        "recurring": {"interval": "month"},
        "unitAmountDecimal": "0.002",
    }
    assert len(script.requests) == 1


def test_query_booleans_are_lowercase_and_none_is_dropped() -> None:
    script = Script()
    with sync_client(script) as client:
        client.prices.list(active=False, limit=None)
    assert script.requests[0].url.query == b"active=false"


def test_ids_are_escaped_and_must_not_be_empty() -> None:
    script = Script()
    with sync_client(script) as client:
        client.products.retrieve("a/b?c")
        with pytest.raises(ValueError, match="non-empty"):
            client.products.retrieve("")
    assert script.requests[0].url.raw_path == b"/v1/products/a%2Fb%3Fc"


def test_responses_allow_attribute_access() -> None:
    script = Script(
        respond(
            200,
            {
                "object": "list",
                "hasMore": False,
                "data": [
                    {
                        "id": "sis_1",
                        "totalUsage": 18420,
                        "period": {"start": 1, "end": 2},
                        "invoice": None,
                    }
                ],
            },
        )
    )
    with sync_client(script) as client:
        summary = client.usage_records.summaries(subscription_item="si_4Kp1")
    assert isinstance(summary, VinrObject) and isinstance(summary, dict)
    assert summary.data[0].total_usage == 18420
    assert summary.data[0].period.end == 2
    assert summary["data"][0]["period"]["start"] == 1
    assert summary["data"][0]["totalUsage"] == 18420
    assert summary.has_more is False and summary.data[0].invoice is None


def test_a_non_object_success_body_is_an_api_error() -> None:
    script = Script(httpx.Response(200, text="[1, 2]"))
    with sync_client(script) as client, pytest.raises(APIError):
        client.products.list()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VINR_SECRET_KEY", "sk_test_fromenv")
    monkeypatch.setenv("VINR_API_BASE", "http://env.test:9000/")
    script = Script()
    with Vinr(transport=httpx.MockTransport(script)) as client:
        client.products.list()
    request = script.requests[0]
    assert str(request.url) == "http://env.test:9000/v1/products"
    assert request.headers["authorization"] == "Bearer sk_test_fromenv"


def test_default_api_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VINR_API_BASE", raising=False)
    with Vinr("sk_test_x") as client:
        assert client.api_base == DEFAULT_API_BASE == "http://127.0.0.1:8080"


def test_a_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VINR_SECRET_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="VINR_SECRET_KEY"):
        Vinr()


@pytest.mark.parametrize(
    "options",
    [
        {"api_base": "ftp://x"},
        {"max_retries": -1},
        {"timeout_s": 0},
        {"max_retries": True},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Vinr("sk_test_x", **options)


def test_repr_masks_the_key() -> None:
    with Vinr(SECRET_KEY) as client:
        text = repr(client)
    assert SECRET_KEY not in text and "sk_test_***" in text
    restricted = "rk_live_" + SECRET_KEY.removeprefix("sk_test_")
    with Vinr(restricted) as client:
        text = repr(client)
    assert restricted not in text and restricted[8:] not in text and "rk_live_***" in text


def test_closed_client_refuses_requests() -> None:
    client = sync_client(Script())
    client.close()
    with pytest.raises(RuntimeError):
        client.products.list()
