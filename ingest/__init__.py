"""The ingest role: the usage hot path of ``vinr api`` (``POST /v1/usage_records[/batch]``)."""

from ingest.usage import UsageBatchIn, UsageEndpoint, UsageRecordIn

__all__ = ["UsageBatchIn", "UsageEndpoint", "UsageRecordIn"]
