"""The ``vinr aggregator`` role: Kafka usage → exactly-once Postgres windows."""

from aggregator.worker import Aggregator

__all__ = ["Aggregator"]
