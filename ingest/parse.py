"""Usage request bodies → ``Request``, the one shape the endpoint works with.

The single-record body, by far the most frequent, is checked leanly when well-formed
(orjson and a few type tests: pydantic would cost more than the rest of the parsing);
anything else goes through the ``ingest.models`` models, so a refusal carries their exact
errors. Batches always go through pydantic: per record, it is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from infra.errors import InvalidRequest
from infra.validation import combined_error, problem, validation_error
from ingest.models import (
    MAX_ITEM_LENGTH,
    MAX_QUANTITY,
    MAX_TIMESTAMP,
    UsageBatchIn,
    UsageRecordIn,
)

__all__ = ["Request", "parse_batch", "parse_single", "refusal"]


@dataclass(slots=True)
class Request:
    """A usage request, normalised: one record is a batch of one."""

    batch: bool
    item: str
    quantities: list[int]
    timestamps: list[int | None]
    sets: list[bool]
    record_keys: list[str | None]

    def canonical(self) -> bytes:
        """The request's meaning, independent of JSON spelling (key order, spaces,
        defaults written out or not): what the idempotency digest covers."""
        return orjson.dumps(
            [self.batch, self.item, self.quantities, self.timestamps, self.sets, self.record_keys]
        )


_SINGLE_FIELDS = frozenset(UsageRecordIn.model_fields)
_ACTIONS = {"increment": False, "set": True}


def _nul(param: str) -> tuple[str, str, str]:
    return param, "parameter_invalid", f"{param} must not contain NUL characters (\\u0000)"


def _check_text(param: str, value: str) -> None:
    """NUL is the one character a JSON string can carry that Postgres text cannot (a lone
    surrogate is already refused by the JSON parsers): refused here, before any lookup."""
    if "\x00" in value:
        raise combined_error([_nul(param)])


def parse_single(body: bytes) -> Request:
    """The single-record body. Accepts exactly what ``UsageRecordIn`` accepts: strict types
    (no bools or floats for integers), the same bounds and no unknown fields.

    Raises ValidationError (``refusal`` words it), or InvalidRequest for a NUL character."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError:
        d = None
    if type(d) is dict and d.keys() <= _SINGLE_FIELDS:
        item = d.get("subscriptionItem")
        q = d.get("quantity")
        ts = d.get("timestamp")
        action = d.get("action", "increment")
        is_set = _ACTIONS.get(action) if type(action) is str else None
        if (
            type(item) is str
            and 0 < len(item) <= MAX_ITEM_LENGTH
            and "\x00" not in item
            and type(q) is int
            and 0 <= q <= MAX_QUANTITY
            and (ts is None or (type(ts) is int and 0 <= ts <= MAX_TIMESTAMP))
            and is_set is not None
        ):
            return Request(False, item, [q], [ts], [is_set], [None])
    r = UsageRecordIn.model_validate_json(body)
    _check_text("subscriptionItem", r.subscriptionItem)
    return Request(
        False, r.subscriptionItem, [r.quantity], [r.timestamp], [r.action == "set"], [None]
    )


def parse_batch(body: bytes) -> Request:
    """The batch body. Raises ValidationError (``refusal`` words it), or InvalidRequest
    naming every record whose idempotency key repeats an earlier one's."""
    b = UsageBatchIn.model_validate_json(body)
    _check_text("subscriptionItem", b.subscriptionItem)
    recs = b.records
    keys = [r.idempotencyKey for r in recs]
    seen: dict[str, int] = {}
    problems: list[tuple[str, str, str]] = []
    for i, key in enumerate(keys):
        if key is None:
            continue
        if "\x00" in key:
            problems.append(_nul(f"records[{i}].idempotencyKey"))
            continue
        if key in seen:
            param = f"records[{i}].idempotencyKey"
            problems.append(
                (param, "parameter_invalid", f"{param} repeats records[{seen[key]}].idempotencyKey")
            )
        else:
            seen[key] = i
    if problems:
        raise combined_error(problems)
    return Request(
        True,
        b.subscriptionItem,
        [r.quantity for r in recs],
        [r.timestamp for r in recs],
        [r.action == "set" for r in recs],
        keys,
    )


def refusal(exc: ValidationError, batch: bool) -> InvalidRequest:
    """The 400 for a body the models refuse: a single record's first problem; for a batch,
    every bad parameter at once (unless the body is not JSON at all)."""
    errors = exc.errors(include_url=False)
    if batch and not (errors and errors[0]["type"] == "json_invalid"):
        return combined_error([problem(e) for e in errors])
    return validation_error(errors)
