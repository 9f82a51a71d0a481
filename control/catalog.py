"""Products and prices."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
from fastapi import Request
from pydantic import Field, WithJsonSchema

from control.common import (
    ApiModel,
    Json,
    Limit,
    Metadata,
    StartingAfter,
    Text,
    TextOrInt,
    services,
    tenant,
)
from control.routing import api_router
from control.schemas import Price, PriceList, Product, ProductList
from domain.amounts import MAX_AMOUNT, MAX_DECIMAL_TEXT
from domain.objects import render_price, render_product
from domain.pricing import (
    MAX_QUANTITY,
    MAX_TIERS,
    PriceDefinitionError,
    parse_price_terms,
    terms_to_json,
)
from domain.store import catalog, meters
from domain.store.owned import fetch_owned, found, page
from domain.tenant import Tenant
from infra.errors import InvalidRequest

__all__ = ["router"]

router = api_router("catalog")

# Tiers and transformQuantity are validated by ``domain.pricing`` (which names the field at
# fault); these schemas document the shape it accepts.
_WHOLE_AMOUNT = {"type": "integer", "minimum": 0, "exclusiveMaximum": MAX_AMOUNT}
_DECIMAL_AMOUNT = {
    "anyOf": [
        {
            "type": "string",
            "maxLength": MAX_DECIMAL_TEXT,
            "pattern": r"^[0-9]{1,12}(\.[0-9]{1,12})?$",
        },
        _WHOLE_AMOUNT,
    ]
}
_TIER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["upTo"],
    "properties": {
        "upTo": {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
                {"type": "string", "enum": ["inf"]},
            ]
        },
        "unitAmount": _WHOLE_AMOUNT,
        "unitAmountDecimal": _DECIMAL_AMOUNT,
        "flatAmount": _WHOLE_AMOUNT,
        "flatAmountDecimal": _DECIMAL_AMOUNT,
    },
}
_TRANSFORM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["divideBy", "round"],
    "properties": {
        "divideBy": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
        "round": {"type": "string", "enum": ["up", "down"]},
    },
}

_MAX_INTERVAL_COUNT = {"day": 1095, "week": 156, "month": 36, "year": 3}


class ProductCreate(ApiModel):
    name: Text = Field(min_length=1, max_length=500)
    description: Text | None = Field(default=None, max_length=5000)
    metadata: Metadata = Field(default_factory=dict)


class RecurringIn(ApiModel):
    interval: Literal["day", "week", "month", "year"]
    intervalCount: int = Field(default=1, ge=1, le=max(_MAX_INTERVAL_COUNT.values()))
    usageType: Literal["licensed", "metered"] | None = None
    aggregateUsage: Literal["sum", "last_during_period", "last_ever", "max"] | None = None
    meter: Text | None = Field(default=None, min_length=1, max_length=255)


class PriceCreate(ApiModel):
    product: Text = Field(min_length=1, max_length=255)
    currency: Text = Field(min_length=3, max_length=3)
    recurring: RecurringIn
    billingScheme: Literal["per_unit", "tiered", "usage"] = "per_unit"
    unitAmount: int | None = Field(
        default=None, json_schema_extra={"minimum": 0, "exclusiveMaximum": MAX_AMOUNT}
    )
    unitAmountDecimal: TextOrInt | None = None
    tiers: list[Annotated[dict[str, Any], WithJsonSchema(_TIER)]] | None = Field(
        default=None, max_length=MAX_TIERS
    )
    tiersMode: Literal["graduated", "volume"] | None = None
    transformQuantity: Annotated[dict[str, Any], WithJsonSchema(_TRANSFORM)] | None = None
    nickname: Text | None = Field(default=None, max_length=500)
    metadata: Metadata = Field(default_factory=dict)


@router.post("/v1/products", response_model=Product)
async def create_product(body: ProductCreate, request: Request) -> Json:
    t, s = tenant(request), services(request)
    row = await catalog.insert_product(
        s.pool, t, name=body.name, description=body.description, metadata=body.metadata
    )
    return Json(render_product(row))


@router.get("/v1/products/{product_id}", response_model=Product)
async def get_product(product_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    row = await fetch_owned(s.pool, "products", t, product_id, what="product")
    return Json(render_product(row))


@router.get("/v1/products", response_model=ProductList)
async def list_products(
    request: Request,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
) -> Json:
    t, s = tenant(request), services(request)
    return Json(
        await page(
            s.pool,
            table="products",
            t=t,
            limit=limit,
            starting_after=starting_after,
            url="/v1/products",
            render=render_product,
        )
    )


def _usage(body: PriceCreate) -> tuple[str, str | None]:
    recurring = body.recurring
    usage_type = recurring.usageType or ("metered" if body.billingScheme == "usage" else "licensed")
    if body.billingScheme == "usage" and usage_type != "metered":
        raise InvalidRequest(
            "billingScheme 'usage' is a metered price: recurring.usageType must"
            " be 'metered' or omitted",
            param="recurring.usageType",
        )
    if recurring.meter is not None:
        if usage_type != "metered":
            raise InvalidRequest(
                "a price billing a meter is metered: set recurring.usageType = 'metered'",
                param="recurring.usageType",
            )
        if recurring.aggregateUsage is not None:
            raise InvalidRequest(
                "recurring.aggregateUsage does not apply to a price billing a meter: the"
                " meter's formula (defaultAggregation) aggregates its usage; remove"
                " recurring.aggregateUsage",
                param="recurring.aggregateUsage",
            )
        return usage_type, None
    if usage_type == "licensed":
        if recurring.aggregateUsage is not None:
            raise InvalidRequest(
                "recurring.aggregateUsage applies to metered prices only; set"
                " recurring.usageType = 'metered'",
                param="recurring.aggregateUsage",
            )
        return usage_type, None
    return usage_type, recurring.aggregateUsage or "sum"


@router.post("/v1/prices", response_model=Price)
async def create_price(body: PriceCreate, request: Request) -> Json:
    t, s = tenant(request), services(request)
    usage_type, aggregate = _usage(body)
    limit = _MAX_INTERVAL_COUNT[body.recurring.interval]
    if body.recurring.intervalCount > limit:
        raise InvalidRequest(
            f"recurring.intervalCount can be at most {limit} for"
            f" '{body.recurring.interval}' (three years)",
            param="recurring.intervalCount",
        )
    try:
        terms = parse_price_terms(body.model_dump(exclude_none=True))
    except PriceDefinitionError as exc:
        raise InvalidRequest(exc.message, param=exc.param) from None
    if not await catalog.product_exists(s.pool, t, body.product):
        raise InvalidRequest(
            f"no such product: '{body.product}'", param="product", code="resource_missing"
        )
    meter_pk = None if body.recurring.meter is None else await _meter_pk(s.pool, t, body)
    row = await catalog.insert_price(
        s.pool,
        t,
        product_id=body.product,
        currency=terms.currency,
        terms=terms_to_json(terms),
        interval=body.recurring.interval,
        interval_count=body.recurring.intervalCount,
        usage_type=usage_type,
        aggregate_usage=aggregate,
        nickname=body.nickname,
        metadata=body.metadata,
        meter_pk=meter_pk,
    )
    return Json(render_price(row))


async def _meter_pk(db: asyncpg.Pool, t: Tenant, body: PriceCreate) -> int:
    """The key of the active meter ``recurring.meter`` names: a new price bills only a meter
    of this account and mode that still counts events."""
    meter_id = body.recurring.meter
    meter = None if meter_id is None else await meters.meter_by_id(db, t, meter_id)
    if meter is None:
        raise InvalidRequest(
            f"no such meter: '{meter_id}'", param="recurring.meter", code="resource_missing"
        )
    if meter["status"] != "active":
        raise InvalidRequest(
            f"meter {meter_id} is inactive; reactivate it (POST /v1/billing/meters/{meter_id}"
            "/reactivate) or choose an active meter",
            param="recurring.meter",
            code="meter_inactive",
        )
    return int(meter["pk"])


@router.get("/v1/prices/{price_id}", response_model=Price)
async def get_price(price_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    row = found(await catalog.tenant_price(s.pool, t, price_id), what="price", ident=price_id)
    return Json(render_price(row))


@router.get("/v1/prices", response_model=PriceList)
async def list_prices(
    request: Request,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
) -> Json:
    t, s = tenant(request), services(request)
    return Json(
        await page(
            s.pool,
            table="prices",
            t=t,
            limit=limit,
            starting_after=starting_after,
            url="/v1/prices",
            render=render_price,
            select=f"t.*, {catalog.meter_id_of('t')}",
        )
    )
