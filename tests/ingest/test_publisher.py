"""Coalesced publishing against the dev broker: single-record requests accepted together
share one message per partition, each lands exactly once, on its item's partition, in the
order published; batch requests keep a message of their own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from domain.wire import decode_head, decode_usage, item_key, usage_entry
from infra.kafka import create_producer
from infra.settings import Settings
from ingest.publisher import UsagePublisher
from tests.support.ingest import PausableBroker


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = await create_producer(settings, linger_ms=0)
    try:
        yield p
    finally:
        await p.stop()


async def read_topic(settings: Settings, topic: str) -> list[tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for p in sorted(
                consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
            )
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[int, bytes]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                out.extend((tp.partition, m.value) for m in msgs)
        return out
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # the consumer learns topics lazily
    return consumer.partitions_for_topic(topic) or set()


async def test_concurrent_singles_share_messages_and_keep_order(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    topic = f"pubtest-{uuid.uuid4().hex[:8]}"
    await producer.partitions_for(topic)
    publisher = UsagePublisher(lambda: producer, topic, timeout_s=5)
    items = range(20)

    async def reporter(item: int) -> None:
        for n in range(10):  # one item's requests, strictly one after the other
            entry, records = usage_entry(
                f"mbu_{item}_{n}", "acct_pub", False, item, 0, 10**10, n, [(1000 + n, n + 1, False)]
            )
            await publisher.publish(item_key(item), entry, records)

    batch_entry, batch_records = usage_entry(
        "mbu_batch", "acct_pub", False, 3, 0, 10**10, 0, [(5, 1, False), (5, 2, True)]
    )
    await asyncio.gather(
        *(reporter(i) for i in items), publisher.publish(item_key(3), batch_entry, batch_records)
    )
    messages = await read_topic(settings, topic)
    every = sorted(await producer.partitions_for(topic))
    requests = [(p, m) for p, raw in messages for m in decode_usage(raw)]
    assert sorted(m.id for _, m in requests) == sorted(
        [f"mbu_{i}_{n}" for i in items for n in range(10)] + ["mbu_batch"]
    )
    for partition, m in requests:  # on the partition its key maps to, as send(key=) would
        assert partition == DefaultPartitioner()(item_key(m.item_pk), every, every)
    for item in items:  # per item, in the order published
        mine = [m.id for _, m in requests if m.item_pk == item and m.id != "mbu_batch"]
        assert mine == [f"mbu_{item}_{n}" for n in range(10)]
    batch = [raw for _, raw in messages if b"mbu_batch" in raw]
    assert len(batch) == 1 and len(decode_head(batch[0])) == 1
    assert decode_usage(batch[0])[0].records == [(5, 1, False), (5, 2, True)]
    assert len(messages) < len(requests) / 2  # coalesced: far fewer messages than requests


async def test_a_failed_send_fails_the_requests_in_it(settings: Settings) -> None:
    producer = await create_producer(settings, linger_ms=0)
    await producer.partitions_for(settings.usage_topic)
    await producer.stop()  # sends now fail
    publisher = UsagePublisher(lambda: producer, settings.usage_topic, timeout_s=5)
    entry, records = usage_entry("mbu_fail", "acct_pub", False, 1, 0, 10**10, 0, [(5, 1, False)])
    with pytest.raises(KafkaError):
        await asyncio.wait_for(publisher.publish(item_key(1), entry, records), 5)


async def test_every_request_is_answered_by_its_deadline_when_the_broker_hangs() -> None:
    """The settle time of the invoicer's close relies on this bound: acked or failed within
    ``timeout_s`` of publishing, for requests sent at once and for those queued behind
    them while every send slot was stuck."""
    broker = PausableBroker()
    broker.start()
    try:
        settings = Settings(kafka_bootstrap=broker.address)
        producer = await create_producer(settings, linger_ms=0)
        topic = f"pubtest-{uuid.uuid4().hex[:8]}"
        await producer.partitions_for(topic)
        publisher = UsagePublisher(lambda: producer, topic, timeout_s=1.0, max_concurrent=1)

        async def one(n: int) -> tuple[float, BaseException | None]:
            entry, records = usage_entry(
                f"mbu_hang_{n}", "acct_pub", False, n % 3, 0, 10**10, n, [(1000 + n, 1, False)]
            )
            started = time.monotonic()
            try:
                await publisher.publish(item_key(n % 3), entry, records)
            except BaseException as exc:
                return time.monotonic() - started, exc
            return time.monotonic() - started, None

        try:
            broker.pause()
            first = [asyncio.ensure_future(one(n)) for n in range(20)]
            await asyncio.sleep(0.4)  # queued behind the stuck send
            later = [asyncio.ensure_future(one(n)) for n in range(20, 40)]
            outcomes = await asyncio.gather(*first, *later)
        finally:
            broker.resume()
            await producer.stop()
        assert all(isinstance(error, TimeoutError) for _, error in outcomes), outcomes
        assert max(waited for waited, _ in outcomes) < 1.5
    finally:
        broker.stop()
