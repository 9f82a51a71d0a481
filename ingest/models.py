"""The usage request bodies as pydantic models: their refusals and the OpenAPI document;
and the answers (``ingest.results`` renders them), for the document only.

Well-formed single-record bodies do not go through pydantic (``ingest.parse`` checks them
leanly against these same bounds); everything else does, so every refusal carries the
models' exact errors.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.idempotency import MAX_KEY_LENGTH

__all__ = [
    "MAX_BATCH",
    "MAX_ITEM_LENGTH",
    "MAX_QUANTITY",
    "MAX_TIMESTAMP",
    "BatchRecordIn",
    "UsageBatchIn",
    "UsageRecord",
    "UsageRecordBatch",
    "UsageRecordIn",
]

MAX_QUANTITY = 2**53
MAX_BATCH = 1000
MAX_TIMESTAMP = 2**40
MAX_ITEM_LENGTH = 255


class UsageRecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    subscriptionItem: str = Field(min_length=1, max_length=MAX_ITEM_LENGTH)
    quantity: int = Field(ge=0, le=MAX_QUANTITY)
    timestamp: int | None = Field(default=None, ge=0, le=MAX_TIMESTAMP)
    action: Literal["increment", "set"] = "increment"


class BatchRecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    quantity: int = Field(ge=0, le=MAX_QUANTITY)
    timestamp: int | None = Field(default=None, ge=0, le=MAX_TIMESTAMP)
    action: Literal["increment", "set"] = "increment"
    idempotencyKey: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)


class UsageBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    subscriptionItem: str = Field(min_length=1, max_length=MAX_ITEM_LENGTH)
    records: list[BatchRecordIn] = Field(min_length=1, max_length=MAX_BATCH)


class UsageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["usage_record"]
    created: int
    livemode: bool
    subscriptionItem: str
    quantity: int
    timestamp: int
    action: Literal["increment", "set"]


class BatchedUsageRecord(UsageRecord):
    duplicate: bool = Field(
        description="true when a record with this idempotencyKey was accepted before (its"
        " first id is shown, and it is not counted again)"
    )


class UsageRecordBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["usage_record_batch"]
    created: int
    livemode: bool
    subscriptionItem: str
    count: int
    duplicates: int
    data: list[BatchedUsageRecord]
