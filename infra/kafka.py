"""Kafka clients for the roles: a producer for ingest and helpers for offsets."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from infra.errors import DependencyUnavailable
from infra.settings import Settings

__all__ = ["bootstrap", "create_producer", "end_offsets", "partitions"]

log = logging.getLogger(__name__)


def bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise DependencyUnavailable(
            "kafka", "VINR_KAFKA_BOOTSTRAP is not set (run `vinr devbroker` for a dev broker)"
        )
    return settings.kafka_bootstrap


async def create_producer(settings: Settings, *, linger_ms: int = 2) -> AIOKafkaProducer:
    """A producer with acks=all, idempotent unless ``VINR_KAFKA_IDEMPOTENT=false`` (then a
    broker retry may duplicate a message; the aggregator's ledger still counts it once).

    ``linger_ms=0`` sends at once when idle; under load batches still form while the
    previous produce request is in flight (the ingest hot path wants that latency)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap(settings),
        enable_idempotence=settings.kafka_idempotent,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
        request_timeout_ms=int(settings.publish_timeout_s * 1000),
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise DependencyUnavailable("kafka", str(exc)) from exc
    return producer


async def partitions(producer: AIOKafkaProducer, topic: str) -> list[int]:
    """The topic's partitions (the dev broker creates a topic on first metadata request)."""
    return sorted(await producer.partitions_for(topic))


async def end_offsets(consumer: AIOKafkaConsumer, topic: str, parts: list[int]) -> dict[int, int]:
    tps = [TopicPartition(topic, p) for p in parts]
    ends = await consumer.end_offsets(tps)
    return {tp.partition: off for tp, off in ends.items()}
