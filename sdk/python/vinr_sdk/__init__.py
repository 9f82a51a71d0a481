"""Python SDK for the vinr billing API.

    from vinr_sdk import Vinr

    vinr = Vinr()  # VINR_SECRET_KEY, VINR_API_BASE
    product = vinr.products.create(name="API access")
    price = vinr.prices.create(
        product=product.id, currency="EUR", billing_scheme="usage", unit_amount_decimal="0.2",
        recurring={"interval": "month", "usage_type": "metered", "aggregate_usage": "sum"},
    )
    price.unit_amount_decimal  # "0.2"

Keyword arguments are snake_case, typed by the ``TypedDict`` models of ``vinr_sdk.types``,
and go out in the API's camelCase (nested keys too; ``metadata`` keys as given). Responses
are ``VinrObject`` dicts with the API's keys that also allow snake_case attribute access
(``summary.data[0].total_usage``; ``summary["data"][0]["totalUsage"]`` reads the same).
``AsyncVinr`` is the async twin. ``vinr.billing`` holds meters, meter events and their
adjustments, and usage alerts. ``UsageReporter`` batches usage for producer services;
``verify`` checks webhooks.
"""

from ._client import DEFAULT_API_BASE, VERSION, AsyncVinr, Vinr
from ._errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    IdempotencyError,
    InvalidRequestError,
    RateLimitError,
    SignatureVerificationError,
    VinrError,
)
from ._object import VinrObject
from .reporter import UsageBatch, UsageReporter
from .webhooks import construct_event, generate_test_header, verify

__all__ = [
    "DEFAULT_API_BASE",
    "VERSION",
    "APIConnectionError",
    "APIError",
    "AsyncVinr",
    "AuthenticationError",
    "IdempotencyError",
    "InvalidRequestError",
    "RateLimitError",
    "SignatureVerificationError",
    "UsageBatch",
    "UsageReporter",
    "Vinr",
    "VinrError",
    "VinrObject",
    "construct_event",
    "generate_test_header",
    "verify",
]
