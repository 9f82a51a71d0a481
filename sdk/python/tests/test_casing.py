"""The one naming rule: snake_case in Python, camelCase on the wire."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vinr_sdk._casing import camelize, to_camel, to_snake

SERVER_PACKAGES = (
    "vinr",
    "ingest",
    "aggregator",
    "invoicer",
    "control",
    "domain",
    "infra",
    "dispatcher",
    "fastapi",
    "asyncpg",
    "aiokafka",
    "redis",
    "pydantic",
)


@pytest.mark.parametrize(
    ("snake", "camel"),
    [
        ("subscription_item", "subscriptionItem"),
        ("unit_amount_decimal", "unitAmountDecimal"),
        ("cancel_at_period_end", "cancelAtPeriodEnd"),
        ("up_to", "upTo"),
        ("duration_ms", "durationMs"),
        ("id", "id"),
        ("livemode", "livemode"),
    ],
)
def test_names_map_both_ways(snake: str, camel: str) -> None:
    assert to_camel(snake) == camel
    assert to_snake(camel) == snake


@pytest.mark.parametrize("name", ["_private", "__deepcopy__", "totalUsage"])
def test_private_special_and_camel_names_are_left_alone(name: str) -> None:
    assert to_camel(name) == name


words = st.lists(st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True), min_size=1, max_size=4)


@given(words)
def test_snake_to_camel_round_trips(parts: list[str]) -> None:
    snake = "_".join(parts)
    assert to_snake(to_camel(snake)) == snake


def test_camelize_converts_keys_at_every_depth_but_not_values_or_metadata() -> None:
    params = {
        "recurring": {
            "interval": "month",
            "usage_type": "metered",
            "aggregate_usage": "last_during_period",
        },
        "tiers": ({"up_to": 5, "unit_amount": 1},),
        "metadata": {"plan_tier": "gold", "nested_key": {"inner_key": 1}},
        "billing_scheme": "per_unit",
    }
    assert camelize(params) == {
        "recurring": {
            "interval": "month",
            "usageType": "metered",
            "aggregateUsage": "last_during_period",
        },
        "tiers": [{"upTo": 5, "unitAmount": 1}],
        "metadata": {"plan_tier": "gold", "nested_key": {"inner_key": 1}},
        "billingScheme": "per_unit",
    }


def test_importing_the_sdk_loads_nothing_of_the_server() -> None:
    code = (
        "import sys, vinr_sdk, vinr_sdk.reporter, vinr_sdk.types, vinr_sdk.webhooks; "
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    assert "vinr_sdk" in loaded and "httpx" in loaded
    assert loaded.isdisjoint(SERVER_PACKAGES), sorted(loaded & set(SERVER_PACKAGES))
