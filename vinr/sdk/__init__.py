"""Python SDK for the vinr billing API.

    from vinr.sdk import Vinr

    vinr = Vinr()  # VINR_SECRET_KEY, VINR_API_BASE
    product = vinr.products.create(name="API access")
    price = vinr.prices.create(
        product=product.id, currency="EUR", billingScheme="usage", unitAmountDecimal="0.2",
        recurring={"interval": "month", "usageType": "metered", "aggregateUsage": "sum"},
    )

Keyword arguments are the API's camelCase fields, sent as they are and typed by the
``TypedDict`` models of ``vinr.sdk.types``; responses are ``VinrObject`` dicts that also
allow attribute access (``types`` describes their shapes too). ``AsyncVinr`` is the async
twin. ``UsageReporter`` batches usage for producer services; ``verify`` checks webhooks.
"""

from ._client import DEFAULT_API_BASE, AsyncVinr, Vinr
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
