"""Billing meters, their event summaries and events, cancelling a meter event, and usage
alerts.

A meter folds the events named its ``eventName`` into one figure per customer and range by
its formula (``domain.meters``); at most one active meter per event name, account and mode
holds an event name, so an event lands in exactly one. Every change of a meter's status
bumps the meter epoch in its transaction: each API process drops the meters its ingest
cached once it commits. Summaries are answered from the minute buckets the aggregator keeps
(``domain.meterusage.range_stats``), never by reading every event.

An alert's status: ``active``, ``inactive`` (not evaluated) or ``archived`` (final).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NoReturn

import asyncpg
from fastapi import Query, Request
from pydantic import Field

from control.common import ApiModel, Json, Limit, StartingAfter, Text, services, tenant
from control.routing import api_router
from control.schemas import (
    Alert,
    AlertList,
    Meter,
    MeterEventAdjustment,
    MeterEventRecordList,
    MeterEventSummaryList,
    MeterList,
)
from domain import meterusage
from domain.clock import now_s
from domain.meters import (
    BUCKET_S,
    MAX_SUMMARY_WINDOWS,
    formula_value,
    grouping_windows,
    parse_formula,
    window_count,
)
from domain.objects import (
    render_alert,
    render_meter,
    render_meter_event_adjustment,
    render_meter_event_record,
    render_meter_event_summary,
)
from domain.store import customers
from domain.store import meters as store
from domain.store.owned import found
from domain.tenant import Tenant
from infra.errors import InvalidRequest, NotFound
from infra.ids import derived_id, new_id

__all__ = ["MAX_TIME", "alerts", "router"]

router = api_router("meters")
alerts = api_router("alerts")

MAX_TIME = 2**40  # as a test clock's frozenTime: far beyond any real timestamp
MAX_GTE = 2**63 - 1  # an alert's threshold (JSON numbers beyond it lose precision)

EventName = Annotated[Text, Field(min_length=1, max_length=100)]
PayloadKey = Annotated[Text, Field(min_length=1, max_length=100)]
DisplayName = Annotated[Text, Field(min_length=1, max_length=250)]
Reference = Annotated[Text, Field(min_length=1, max_length=255)]


class AggregationIn(ApiModel):
    formula: Literal["sum", "count", "last", "max"]


class CustomerMappingIn(ApiModel):
    type: Literal["by_id"]
    eventPayloadKey: PayloadKey


class ValueSettingsIn(ApiModel):
    eventPayloadKey: PayloadKey


class MeterCreate(ApiModel):
    displayName: DisplayName
    eventName: EventName
    defaultAggregation: AggregationIn
    customerMapping: CustomerMappingIn | None = None
    valueSettings: ValueSettingsIn | None = None


class MeterUpdate(ApiModel):
    displayName: DisplayName


async def _event_name_taken(conn: asyncpg.Connection[Any], t: Tenant, event_name: str) -> NoReturn:
    """The refusal of a second active meter for ``event_name``, naming the one holding it."""
    other = await store.active_meter_by_event(conn, t, event_name)
    held = "another active meter" if other is None else f"the active meter {other['id']}"
    raise InvalidRequest(
        f"eventName '{event_name}' is taken by {held}: one active meter per event name;"
        " deactivate that meter first or choose another eventName",
        param="eventName",
        code="meter_event_name_taken",
    )


@router.post("/v1/billing/meters", response_model=Meter)
async def create_meter(body: MeterCreate, request: Request) -> Json:
    """A new active meter. Events named ``eventName`` land in it from now on."""
    t, s = tenant(request), services(request)
    customer_key = body.customerMapping.eventPayloadKey if body.customerMapping else "customer"
    value_key = body.valueSettings.eventPayloadKey if body.valueSettings else "value"
    if customer_key == value_key:
        raise InvalidRequest(
            f"valueSettings.eventPayloadKey and customerMapping.eventPayloadKey are both"
            f" '{value_key}': an event's customer and value need payload keys of their own",
            param="valueSettings.eventPayloadKey",
        )
    async with s.pool.acquire() as conn, conn.transaction():
        try:
            row = await store.insert_meter(
                conn,
                t,
                meter_id=new_id("mtr"),
                display_name=body.displayName,
                event_name=body.eventName,
                formula=parse_formula(body.defaultAggregation.formula),
                customer_key=customer_key,
                value_key=value_key,
                now=now_s(),
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != store.ACTIVE_EVENT_INDEX:
                raise
            await _event_name_taken(conn, t, body.eventName)
        await store.bump_meter_epoch(conn)  # a process may cache that no meter has the name
    return Json(render_meter(row))


@router.get("/v1/billing/meters", response_model=MeterList)
async def list_meters(
    request: Request,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
    status: Literal["active", "inactive"] | None = None,
) -> Json:
    """Newest first, of one ``status`` or all."""
    t, s = tenant(request), services(request)
    return Json(
        await store.meter_page(s.pool, t, limit=limit, starting_after=starting_after, status=status)
    )


async def _meter(db: store.Db, t: Tenant, meter_id: str) -> asyncpg.Record:
    return found(await store.meter_by_id(db, t, meter_id), what="meter", ident=meter_id)


@router.get("/v1/billing/meters/{meter_id}", response_model=Meter)
async def get_meter(meter_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    return Json(render_meter(await _meter(s.pool, t, meter_id)))


@router.post("/v1/billing/meters/{meter_id}", response_model=Meter)
async def update_meter(meter_id: str, body: MeterUpdate, request: Request) -> Json:
    """Rename the meter (its event name, formula and payload keys never change)."""
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn:
        row = await store.rename_meter(conn, t, meter_id, body.displayName, now_s())
    return Json(render_meter(found(row, what="meter", ident=meter_id)))


async def _set_status(request: Request, meter_id: str, status: str) -> Json:
    """The meter in ``status``: unchanged when it already is; else changed, with the meter
    epoch bumped in the same transaction."""
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, conn.transaction():
        row = found(await store.locked_meter(conn, t, meter_id), what="meter", ident=meter_id)
        if row["status"] == status:
            return Json(render_meter(row))
        try:
            row = await store.set_meter_status(conn, row["pk"], status, now_s())
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != store.ACTIVE_EVENT_INDEX:
                raise
            await _event_name_taken(conn, t, row["event_name"])
        await store.bump_meter_epoch(conn)
    return Json(render_meter(row))


@router.post("/v1/billing/meters/{meter_id}/deactivate", response_model=Meter)
async def deactivate_meter(meter_id: str, request: Request) -> Json:
    """Events named its ``eventName`` are refused from now on (``meter_not_found``) until
    it is reactivated or another meter takes the name; its usage stays readable."""
    return await _set_status(request, meter_id, "inactive")


@router.post("/v1/billing/meters/{meter_id}/reactivate", response_model=Meter)
async def reactivate_meter(meter_id: str, request: Request) -> Json:
    """400 ``meter_event_name_taken`` when another meter is active with its event name."""
    return await _set_status(request, meter_id, "active")


CustomerQuery = Annotated[str, Query(min_length=1)]


async def _customer_pk(db: store.Db, t: Tenant, customer_id: str) -> int:
    pk = await customers.customer_pk(db, t, customer_id)
    if pk is None:
        raise NotFound(f"no such customer: '{customer_id}'", param="customer")
    return pk


def _check_range(start: int, end: int, window: str | None) -> None:
    for name, value in (("startTime", start), ("endTime", end)):
        if value % BUCKET_S:
            raise InvalidRequest(
                f"{name} {value} is not on a minute boundary: usage is kept per minute, so"
                f" {name} must be a multiple of 60 (e.g. {value - value % BUCKET_S})",
                param=name,
            )
    if start >= end:
        raise InvalidRequest(f"endTime ({end}) must be after startTime ({start})", param="endTime")
    count = window_count(start, end, window)
    if count > MAX_SUMMARY_WINDOWS:
        raise InvalidRequest(
            f"the range spans {count} {window} windows; at most {MAX_SUMMARY_WINDOWS} are"
            " answered at once: narrow the range"
            + (" or group by day" if window == "hour" else ""),
            param="endTime",
        )


@router.get("/v1/billing/meters/{meter_id}/event_summaries", response_model=MeterEventSummaryList)
async def event_summaries(
    meter_id: str,
    request: Request,
    customer: CustomerQuery,
    start_time: Annotated[int, Query(alias="startTime", ge=0, le=MAX_TIME)],
    end_time: Annotated[int, Query(alias="endTime", ge=0, le=MAX_TIME)],
    value_grouping_window: Annotated[
        Literal["hour", "day"] | None, Query(alias="valueGroupingWindow")
    ] = None,
) -> Json:
    """A customer's usage of the meter over ``[startTime, endTime)``: one summary, or one
    per UTC hour or day (clipped to the range, oldest first, empty ones included)."""
    t, s = tenant(request), services(request)
    meter = await _meter(s.pool, t, meter_id)
    customer_pk = await _customer_pk(s.pool, t, customer)
    _check_range(start_time, end_time, value_grouping_window)
    windows = grouping_windows(start_time, end_time, value_grouping_window)
    stats = await meterusage.range_stats(
        s.pool, [meterusage.RangeAsk(meter["pk"], customer_pk, lo, hi) for lo, hi in windows]
    )
    formula = parse_formula(meter["formula"])
    data = [
        render_meter_event_summary(
            summary_id=derived_id("mtrsum", meter_id, customer, str(lo), str(hi)),
            meter=meter,
            customer_id=customer,
            start=lo,
            end=hi,
            value=formula_value(formula, one),
        )
        for (lo, hi), one in zip(windows, stats, strict=True)
    ]
    return Json(
        {
            "object": "list",
            "url": f"/v1/billing/meters/{meter_id}/event_summaries",
            "hasMore": False,
            "data": data,
        }
    )


@router.get("/v1/billing/meters/{meter_id}/events", response_model=MeterEventRecordList)
async def list_meter_events(
    meter_id: str,
    request: Request,
    customer: CustomerQuery,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
) -> Json:
    """A customer's events of the meter, newest timestamp first, each ``counted``,
    ``cancelled`` or ``rejected``; ``startingAfter`` takes an event's ``identifier``."""
    t, s = tenant(request), services(request)
    meter = await _meter(s.pool, t, meter_id)
    customer_pk = await _customer_pk(s.pool, t, customer)
    listed = await meterusage.event_page(
        s.pool, meter["pk"], customer_pk, limit=limit, starting_after=starting_after
    )
    return Json(
        {
            "object": "list",
            "url": f"/v1/billing/meters/{meter_id}/events",
            "hasMore": listed.has_more,
            "data": [
                render_meter_event_record(r, meter=meter, customer_id=customer) for r in listed.rows
            ],
        }
    )


class CancelIn(ApiModel):
    identifier: EventName


class AdjustmentCreate(ApiModel):
    eventName: EventName
    type: Literal["cancel"]
    cancel: CancelIn


@router.post("/v1/billing/meter_event_adjustments", response_model=MeterEventAdjustment)
async def create_adjustment(body: AdjustmentCreate, request: Request) -> Json:
    """Cancel a meter event of the active meter named ``eventName``: ``complete`` when the
    event is out of its customer's usage, ``pending`` when it has not arrived yet (it will
    never count). 400 ``event_in_invoiced_period`` when its period is already invoiced."""
    t, s = tenant(request), services(request)
    now = now_s()
    async with s.pool.acquire() as conn, conn.transaction():
        meter = await store.active_meter_by_event(conn, t, body.eventName)
        if meter is None:
            raise InvalidRequest(
                f"no active meter has eventName '{body.eventName}'; create one with"
                " POST /v1/billing/meters or reactivate the meter that had it",
                param="eventName",
                code="meter_not_found",
            )
        status = await meterusage.cancel_event(conn, meter["pk"], body.cancel.identifier, now)
    return Json(
        render_meter_event_adjustment(
            adjustment_id=new_id("mtradj"),
            created=now,
            livemode=t.livemode,
            event_name=body.eventName,
            identifier=body.cancel.identifier,
            status=status,
        )
    )


# ---- usage alerts ---------------------------------------------------------------------------


class UsageThresholdIn(ApiModel):
    meter: Reference
    gte: int = Field(ge=1, le=MAX_GTE)
    recurrence: Literal["one_time"]


class AlertFilterIn(ApiModel):
    customer: Reference


class AlertCreate(ApiModel):
    title: Annotated[Text, Field(min_length=1, max_length=256)]
    alertType: Literal["usage_threshold"]
    usageThreshold: UsageThresholdIn
    filter: AlertFilterIn | None = None


def _render_alert(row: asyncpg.Record) -> dict[str, Any]:
    return render_alert(row, meter_id=row["meter_id"], customer_id=row["customer_id"])


@alerts.post("/v1/billing/alerts", response_model=Alert)
async def create_alert(body: AlertCreate, request: Request) -> Json:
    """An active alert: fires once per customer (``billing.alert.triggered``) when the
    customer's usage of the meter in its current billing period reaches ``gte``."""
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, conn.transaction():
        meter = await store.meter_by_id(conn, t, body.usageThreshold.meter)
        if meter is None:
            raise InvalidRequest(
                f"no such meter: '{body.usageThreshold.meter}'",
                param="usageThreshold.meter",
                code="resource_missing",
            )
        customer_pk = None
        if body.filter is not None:
            customer_pk = await customers.customer_pk(conn, t, body.filter.customer)
            if customer_pk is None:
                raise InvalidRequest(
                    f"no such customer: '{body.filter.customer}'",
                    param="filter.customer",
                    code="resource_missing",
                )
        row = await store.insert_alert(
            conn,
            t,
            alert_id=new_id("alrt"),
            title=body.title,
            meter_pk=meter["pk"],
            customer_pk=customer_pk,
            gte=body.usageThreshold.gte,
            recurrence=body.usageThreshold.recurrence,
            now=now_s(),
        )
    return Json(_render_alert(row))


@alerts.get("/v1/billing/alerts/{alert_id}", response_model=Alert)
async def get_alert(alert_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    row = found(await store.alert_by_id(s.pool, t, alert_id), what="alert", ident=alert_id)
    return Json(_render_alert(row))


@alerts.get("/v1/billing/alerts", response_model=AlertList)
async def list_alerts(
    request: Request,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
    meter: str | None = None,
) -> Json:
    """Newest first, of one ``meter`` or all."""
    t, s = tenant(request), services(request)
    return Json(
        await store.alert_page(s.pool, t, limit=limit, starting_after=starting_after, meter=meter)
    )


async def _alert_status(request: Request, alert_id: str, status: str) -> Json:
    """The alert in ``status`` (unchanged when it already is); an archived alert stays so."""
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, conn.transaction():
        row = found(
            await store.alert_by_id(conn, t, alert_id, for_update=True),
            what="alert",
            ident=alert_id,
        )
        if row["status"] == "archived":
            raise InvalidRequest(
                f"alert {alert_id} is archived, which is final; create a new alert instead",
                code="alert_archived",
            )
        if row["status"] != status:
            row = await store.set_alert_status(conn, row["pk"], status)
    return Json(_render_alert(row))


@alerts.post("/v1/billing/alerts/{alert_id}/activate", response_model=Alert)
async def activate_alert(alert_id: str, request: Request) -> Json:
    return await _alert_status(request, alert_id, "active")


@alerts.post("/v1/billing/alerts/{alert_id}/deactivate", response_model=Alert)
async def deactivate_alert(alert_id: str, request: Request) -> Json:
    """Not evaluated until activated again (a trigger already fired stays fired)."""
    return await _alert_status(request, alert_id, "inactive")


@alerts.post("/v1/billing/alerts/{alert_id}/archive", response_model=Alert)
async def archive_alert(alert_id: str, request: Request) -> Json:
    """Final: an archived alert is never evaluated and cannot be changed again."""
    return await _alert_status(request, alert_id, "archived")
