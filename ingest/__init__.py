"""The ingest role: the hot path of ``vinr api`` — usage records
(``POST /v1/usage_records[/batch]``) and meter events
(``POST /v1/billing/meter_events[/batch]``)."""

from ingest.meter_events import MeterEventsEndpoint
from ingest.meter_models import MeterEvent, MeterEventBatch, MeterEventBatchIn, MeterEventIn
from ingest.models import UsageBatchIn, UsageRecord, UsageRecordBatch, UsageRecordIn
from ingest.usage import UsageEndpoint

__all__ = [
    "MeterEvent",
    "MeterEventBatch",
    "MeterEventBatchIn",
    "MeterEventIn",
    "MeterEventsEndpoint",
    "UsageBatchIn",
    "UsageEndpoint",
    "UsageRecord",
    "UsageRecordBatch",
    "UsageRecordIn",
]
