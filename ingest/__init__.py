"""The ingest role: the usage hot path of ``vinr api`` (``POST /v1/usage_records[/batch]``)."""

from ingest.models import UsageBatchIn, UsageRecord, UsageRecordBatch, UsageRecordIn
from ingest.usage import UsageEndpoint

__all__ = ["UsageBatchIn", "UsageEndpoint", "UsageRecord", "UsageRecordBatch", "UsageRecordIn"]
