"""The typed models make a type checker catch what the API would refuse: mypy runs on a
snippet that uses the SDK as the guide does, then on one with the usual mistakes."""

from __future__ import annotations

from pathlib import Path

from mypy import api

GOOD = '''
from typing import cast
from vinr.sdk import Vinr
from vinr.sdk.types import Price

vinr = Vinr("sk_test_x")
price = cast(Price, vinr.prices.create(
    product="prod_1", currency="EUR", billingScheme="usage", unitAmountDecimal="0.2",
    recurring={"interval": "month", "usageType": "metered", "aggregateUsage": "sum"}))
unit: str | None = price["unitAmountDecimal"]
vinr.subscriptions.create(customer="cust_8aZ2", items=[{"price": price["id"]}])
vinr.usage_records.create(subscriptionItem="si_4Kp1", quantity=5, action="increment",
                          idempotency_key="usage-1")
vinr.usage_records.create_batch(subscriptionItem="si_4Kp1", records=[
    {"quantity": 1200, "timestamp": 1748390400, "action": "increment"}])
vinr.webhook_endpoints.update("we_1", status="disabled")
'''

BAD = '''
from vinr.sdk import Vinr

vinr = Vinr("sk_test_x")
vinr.prices.create(product="prod_1", currency="EUR", unitAmountDecimall="0.2",
                   recurring={"interval": "monthly"})
vinr.usage_records.create(subscriptionItem="si_1", quantity="5", action="add")
vinr.webhook_endpoints.update("we_1", status="failing")
'''


def _mypy(tmp_path: Path, source: str) -> tuple[str, int]:
    path = tmp_path / "snippet.py"
    path.write_text(source)
    out, _, code = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null",
                            "--no-error-summary", str(path)])
    return out, code


def test_correct_calls_type_check(tmp_path: Path) -> None:
    out, code = _mypy(tmp_path, GOOD)
    assert (out, code) == ("", 0)


def test_mistakes_are_caught(tmp_path: Path) -> None:
    out, code = _mypy(tmp_path, BAD)
    assert code == 1
    for expected in ('Unexpected keyword argument "unitAmountDecimall"',
                     "\"Literal['monthly']\"", 'Argument "quantity"',
                     "\"Literal['add']\"", "\"Literal['failing']\""):
        assert expected in out, out
