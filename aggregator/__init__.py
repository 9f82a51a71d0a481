"""The ``vinr aggregator`` role: Kafka usage → exactly-once Postgres windows."""

from aggregator.watermark import PartitionProgress, Watermark, progress
from aggregator.worker import Aggregator
from vinr.fold import WindowState, billable_quantity

__all__ = ["Aggregator", "PartitionProgress", "Watermark", "WindowState", "billable_quantity",
           "progress"]
