"""The meter-event request bodies as pydantic models — their refusals and the OpenAPI
document — the answers (for the document only), and the parsed request.

Strict JSON types (no bool or float for an integer), no unknown fields, and length caps on
every string: ``eventName`` and ``identifier`` 1–100 characters, a payload of at most
``MAX_PAYLOAD_KEYS`` keys of 1–100 characters, each value a string of at most
``MAX_PAYLOAD_TEXT`` characters or an integer. No string may hold NUL (Postgres text
cannot). A batch is checked whole: every bad event's every bad field in one 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from domain.meters import MAX_BATCH_EVENTS, MAX_VALUE
from infra.errors import InvalidRequest
from infra.validation import combined_error, problem, validation_error
from ingest.models import MAX_TIMESTAMP

__all__ = [
    "MAX_EVENT_NAME",
    "MAX_IDENTIFIER",
    "MAX_PAYLOAD_KEY",
    "MAX_PAYLOAD_KEYS",
    "MAX_PAYLOAD_TEXT",
    "EventIn",
    "MeterEvent",
    "MeterEventBatch",
    "MeterEventBatchIn",
    "MeterEventIn",
    "MeterRequest",
    "event_refusal",
    "parse_event_single",
    "parse_events_batch",
]

MAX_EVENT_NAME = 100
MAX_IDENTIFIER = 100
MAX_PAYLOAD_KEY = 100
MAX_PAYLOAD_KEYS = 16
MAX_PAYLOAD_TEXT = 255


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    return value


def _payload_value(value: Any) -> str | int:
    if type(value) is str:
        if len(value) > MAX_PAYLOAD_TEXT:
            raise ValueError(f"a payload value may have at most {MAX_PAYLOAD_TEXT} characters")
        return _no_nul(value)
    if type(value) is int and -MAX_VALUE < value < MAX_VALUE:
        return value
    raise ValueError(
        "a payload value must be a string or an integer below 10^18 (send a decimal value"
        ' as a string: "12.5")'
    )


Text = Annotated[str, AfterValidator(_no_nul)]
PayloadKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PAYLOAD_KEY),
    AfterValidator(_no_nul),
]
PayloadValue = Annotated[
    Any,
    AfterValidator(_payload_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_PAYLOAD_TEXT},
                {"type": "integer", "minimum": 1 - MAX_VALUE, "maximum": MAX_VALUE - 1},
            ]
        }
    ),
]
Payload = Annotated[
    dict[PayloadKey, PayloadValue],
    Field(
        max_length=MAX_PAYLOAD_KEYS,
        description="the customer's id under the meter's customer key (default 'customer');"
        " the value under its value key (default 'value': an integer or a decimal string,"
        ' e.g. "12.5"; ignored by count meters); other keys are kept with the event',
    ),
]


class MeterEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    eventName: Text = Field(min_length=1, max_length=MAX_EVENT_NAME)
    payload: Payload
    identifier: Text | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_IDENTIFIER,
        description="unique per event: an event whose identifier was accepted before is not"
        " counted again (default: a generated one)",
    )
    timestamp: int | None = Field(
        default=None, ge=0, le=MAX_TIMESTAMP, description="unix seconds (default: now)"
    )


class MeterEventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[MeterEventIn] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class MeterEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["billing.meter_event"]
    eventName: str
    identifier: str
    payload: dict[str, str | int]
    timestamp: int
    created: int
    livemode: bool


class MeterEventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["billing.meter_event_batch"]
    created: int
    livemode: bool
    count: int
    duplicates: int = Field(
        description="how many of the events had an identifier accepted before (not counted again)"
    )
    data: list[MeterEvent]


@dataclass(frozen=True, slots=True)
class EventIn:
    """One event as sent (``identifier`` and ``timestamp`` None when omitted)."""

    name: str
    payload: dict[str, str | int]
    identifier: str | None
    timestamp: int | None

    def canonical(self) -> bytes:
        """The event's meaning, independent of JSON spelling: what its identifier's digest
        covers (the same identifier with another event is refused)."""
        return orjson.dumps([self.name, self.payload, self.timestamp], option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class MeterRequest:
    """A meter-event request, normalised: one event is a batch of one."""

    batch: bool
    events: list[EventIn]

    def canonical(self) -> bytes:
        """What the ``Idempotency-Key`` digest covers."""
        return orjson.dumps(
            [self.batch, [[e.name, e.payload, e.identifier, e.timestamp] for e in self.events]],
            option=orjson.OPT_SORT_KEYS,
        )


def _event(e: MeterEventIn) -> EventIn:
    return EventIn(e.eventName, e.payload, e.identifier, e.timestamp)


def parse_event_single(body: bytes) -> MeterRequest:
    """Raises ValidationError (``event_refusal`` words it)."""
    return MeterRequest(False, [_event(MeterEventIn.model_validate_json(body))])


def parse_events_batch(body: bytes) -> MeterRequest:
    """Raises ValidationError (``event_refusal`` words it), or InvalidRequest naming every
    event whose identifier repeats an earlier one's."""
    events = [_event(e) for e in MeterEventBatchIn.model_validate_json(body).events]
    seen: dict[str, int] = {}
    problems: list[tuple[str, str, str]] = []
    for i, e in enumerate(events):
        if e.identifier is None:
            continue
        first = seen.setdefault(e.identifier, i)
        if first != i:
            param = f"events[{i}].identifier"
            problems.append(
                (param, "parameter_invalid", f"{param} repeats events[{first}].identifier")
            )
    if problems:
        raise combined_error(problems)
    return MeterRequest(True, events)


def _key_error(error: Any) -> Any:
    """A payload key's error names the payload, not the (refused) key."""
    loc = error["loc"]
    if len(loc) < 2 or loc[-1] != "[key]":
        return error
    return error | {
        "loc": loc[:-2],
        "msg": f"every key must be 1 to {MAX_PAYLOAD_KEY} characters without NUL ({error['msg']})",
    }


def event_refusal(exc: ValidationError, batch: bool) -> InvalidRequest:
    """The 400 for a body the models refuse: a single event's first problem; for a batch,
    every bad parameter at once (unless the body is not JSON at all)."""
    errors = [_key_error(e) for e in exc.errors(include_url=False)]
    if batch and not (errors and errors[0]["type"] == "json_invalid"):
        return combined_error([problem(e) for e in errors])
    return validation_error(errors)
