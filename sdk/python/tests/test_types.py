"""The typed models make a type checker catch what the API would refuse: mypy runs on a
snippet that uses the SDK as the guide does, then on one with the usual mistakes."""

from __future__ import annotations

from pathlib import Path

import vinr_sdk
from mypy import api

GOOD = """
from typing import cast
from vinr_sdk import Vinr
from vinr_sdk.types import BillingMeter, BillingMeterEventSummary, Price, UpcomingInvoice

vinr = Vinr("sk_test_x")
price = cast(Price, vinr.prices.create(
    product="prod_1", currency="EUR", billing_scheme="usage", unit_amount_decimal="0.2",
    recurring={"interval": "month", "usage_type": "metered", "aggregate_usage": "sum"}))
unit: str | None = price["unitAmountDecimal"]
vinr.prices.create(
    product="prod_1", currency="EUR", billing_scheme="tiered", tiers_mode="graduated",
    recurring={"interval": "month", "usage_type": "metered"},
    tiers=[{"up_to": 1000, "unit_amount_decimal": "0.5"}, {"up_to": "inf", "flat_amount": 1}],
    transform_quantity={"divide_by": 1000, "round": "up"})
vinr.subscriptions.create(customer="cust_8aZ2", items=[{"price": price["id"]}],
                          cancel_at_period_end=True)
vinr.usage_records.create(subscription_item="si_4Kp1", quantity=5, action="increment",
                          idempotency_key="usage-1")
vinr.usage_records.create_batch(subscription_item="si_4Kp1", records=[
    {"quantity": 1200, "timestamp": 1748390400, "action": "increment"}])
vinr.webhook_endpoints.update("we_1", status="disabled", enabled_events=["invoice.paid"])
vinr.test_helpers.test_clocks.advance("clock_1", frozen_time=1766592000)
meter = cast(BillingMeter, vinr.billing.meters.create(
    display_name="Tokens", event_name="tokens_used", default_aggregation={"formula": "sum"},
    customer_mapping={"type": "by_id", "event_payload_key": "customer_id"},
    value_settings={"event_payload_key": "token_count"}))
vinr.prices.create(product="prod_1", currency="EUR", unit_amount_decimal="0.0004",
                   recurring={"interval": "month", "usage_type": "metered", "meter": meter["id"]})
vinr.billing.meter_events.create(event_name="tokens_used", identifier="req-1",
                                 payload={"customer_id": "cust_1", "token_count": "12.5"})
vinr.billing.meter_events.create_batch(events=[
    {"event_name": "tokens_used", "payload": {"customer_id": "cust_1", "token_count": 3},
     "timestamp": 1764000000}])
vinr.billing.meter_event_adjustments.create(event_name="tokens_used", type="cancel",
                                            cancel={"identifier": "req-1"})
summaries = vinr.billing.meters.list_event_summaries(
    meter["id"], customer="cust_1", start_time=1764000000, end_time=1764086400,
    value_grouping_window="day")
summary = cast(BillingMeterEventSummary, summaries.data[0])
exact: str = summary["aggregatedValueDecimal"]
vinr.billing.alerts.create(title="1M", alert_type="usage_threshold",
                           usage_threshold={"meter": meter["id"], "gte": 10**6,
                                            "recurrence": "one_time"},
                           filter={"customer": "cust_1"})
upcoming = cast(UpcomingInvoice, vinr.invoices.upcoming(subscription="sub_1"))
no_id: None = upcoming["id"]
"""

BAD = """
from vinr_sdk import Vinr

vinr = Vinr("sk_test_x")
vinr.prices.create(product="prod_1", currency="EUR", unit_amount_decimall="0.2",
                   recurring={"interval": "monthly"})
vinr.prices.create(product="prod_1", currency="EUR", unitAmountDecimal="0.2",
                   recurring={"interval": "month", "usageType": "metered"})
vinr.usage_records.create(subscription_item="si_1", quantity="5", action="add")
vinr.webhook_endpoints.update("we_1", status="failing")
vinr.billing.meters.create(display_name="T", event_name="t",
                           default_aggregation={"formula": "average"})
vinr.billing.meter_events.create(eventName="t", payload={"customer": "cust_1"})
vinr.billing.meter_event_adjustments.create(event_name="t", type="undo",
                                            cancel={"identifier": "x"})
vinr.billing.meters.list_event_summaries("mtr_1", customer="cust_1", start_time=0)
vinr.billing.alerts.create(title="x", alert_type="usage_threshold",
                           usage_threshold={"meter": "mtr_1", "gte": "10",
                                            "recurrence": "one_time"})
vinr.invoices.upcoming(customer="cust_1")
"""


def _mypy(tmp_path: Path, source: str) -> tuple[str, int]:
    path = tmp_path / "snippet.py"
    path.write_text(source)
    config = tmp_path / "mypy.ini"
    package_root = Path(vinr_sdk.__file__).resolve().parents[1]
    config.write_text(f"[mypy]\nmypy_path = {package_root}\n")
    out, _, code = api.run(
        [
            "--config-file",
            str(config),
            "--strict",
            "--no-incremental",
            "--cache-dir=/dev/null",
            "--no-error-summary",
            str(path),
        ]
    )
    return out, code


def test_correct_calls_type_check(tmp_path: Path) -> None:
    out, code = _mypy(tmp_path, GOOD)
    assert (out, code) == ("", 0)


def test_mistakes_are_caught(tmp_path: Path) -> None:
    out, code = _mypy(tmp_path, BAD)
    assert code == 1
    for expected in (
        'Unexpected keyword argument "unit_amount_decimall"',
        "\"Literal['monthly']\"",
        'Unexpected keyword argument "unitAmountDecimal"',
        '"usageType"',
        'Argument "quantity"',
        "\"Literal['add']\"",
        "\"Literal['failing']\"",
        "\"Literal['average']\"",
        'Unexpected keyword argument "eventName"',
        "\"Literal['undo']\"",
        'Missing named argument "end_time"',
        'TypedDict item "gte" has type "int"',
        'Unexpected keyword argument "customer" for "upcoming"',
    ):
        assert expected in out, out
