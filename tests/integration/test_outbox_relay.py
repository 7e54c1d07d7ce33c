"""The kit's outbox relay against the real PostgreSQL and Kafka: plain and packed rows go out once each, every
packed record with its own key, one key's records in the order they were enqueued (by one relay or several), and
a packed row counts its records against the relay's batch."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.kafka import build_producer
from scrm_kit.outbox import OutboxRelay, OutgoingRecord, enqueue
from scrm_kit.settings import DbSettings, KafkaSettings
from scrm_profile.adapters.orm import outbox
from scrm_stack.launcher import Stack
from tests.integration.kafka_tap import create_topic, tap


@pytest.fixture
async def sessions(own_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = build_engine(DbSettings(url=own_db_url))  # type: ignore[arg-type]
    try:
        yield build_sessionmaker(engine)
    finally:
        await engine.dispose()


async def new_topic(stack: Stack) -> tuple[str, str]:
    """A tenant and a topic of three partitions of its own."""
    tenant = f"relay-{uuid.uuid4().hex[:8]}"
    topic = f"test.relay.{tenant}"
    await create_topic(stack.kafka.bootstrap, topic, partitions=3)
    return tenant, topic


def out_of_order(arrived: list[dict[str, Any]]) -> dict[int, list[int]]:
    """The keys whose records arrived in another order than enqueued, with the order they arrived in."""
    by_key: dict[int, list[int]] = {}
    for r in arrived:
        by_key.setdefault(r["key"], []).append(r["seq"])
    return {key: seqs for key, seqs in by_key.items() if seqs != sorted(seqs)}


def record(topic: str, tenant: str, key: int, seq: int) -> OutgoingRecord:
    value = orjson.dumps({"tenant_id": tenant, "key": key, "seq": seq})
    return OutgoingRecord(topic, f"{tenant}:k{key}".encode(), value)


async def test_plain_and_packed_rows_are_published_once_each_in_order(
    stack: Stack, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tenant, topic = await new_topic(stack)
    keys = 40
    async with sessions() as session, session.begin():
        await enqueue(session, outbox, [record(topic, tenant, 0, 0), record(topic, tenant, 1, 1)])
        await enqueue(session, outbox, [record(topic, tenant, n % keys, n) for n in range(2, 1202)], packed=True)
        await enqueue(session, outbox, [record(topic, tenant, 0, 1202)], packed=True)  # one record: a plain row
    async with sessions() as session:
        rows = (await session.execute(text("SELECT key, headers FROM profile.outbox ORDER BY id"))).all()
    assert [(bytes(k) == b"", h) for k, h in rows] == [
        (False, None),
        (False, None),
        (True, {"scrm.packed": 1200}),
        (False, None),
    ]
    producer = build_producer(KafkaSettings(bootstrap_servers=stack.kafka.bootstrap), "-test-relay")
    await producer.start()
    try:
        relay = OutboxRelay(sessions, outbox, producer, batch_size=500)
        async with tap(stack.kafka.bootstrap, topic) as published:
            # the first claim takes the two plain rows and the packed row (it starts inside the batch), not the last
            assert [await relay.relay_once() for _ in range(3)] == [1202, 1, 0]
            arrived = await published.collect(tenant, 1203, timeout=60)
            keyed = list(zip(published.keys, published.records, strict=True))
    finally:
        await producer.stop()
    assert sorted(r["seq"] for r in arrived) == list(range(1203))  # each once
    assert all(key == f"{tenant}:k{r['key']}".encode() for key, r in keyed)  # each with its own key
    assert out_of_order(arrived) == {}  # one key's records in the order enqueued
    async with sessions() as session:
        assert (await session.execute(text("SELECT count(*) FROM profile.outbox"))).scalar_one() == 0


class HeldProducer:
    """A real producer whose batches wait for ``release`` before they go (a relay caught mid-publish)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self.sending = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    async def send_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.sending.set()
        await self.release.wait()
        return await self._producer.send_batch(*args, **kwargs)


async def test_two_relays_never_publish_one_keys_records_out_of_order(
    stack: Stack, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tenant, topic = await new_topic(stack)
    async with sessions() as session, session.begin():
        await enqueue(session, outbox, [record(topic, tenant, n % 10, n) for n in range(1000)])
    producer = build_producer(KafkaSettings(bootstrap_servers=stack.kafka.bootstrap), "-test-relay-order")
    await producer.start()
    try:
        held = HeldProducer(producer)
        first = OutboxRelay(sessions, outbox, cast(AIOKafkaProducer, held), batch_size=500)
        second = OutboxRelay(sessions, outbox, producer, batch_size=500)
        async with tap(stack.kafka.bootstrap, topic) as published:
            publishing = asyncio.create_task(first.relay_once())  # claims the first 500 and is held mid-publish
            await asyncio.wait_for(held.sending.wait(), timeout=30)
            meanwhile = await second.relay_once()  # the next 500 must not overtake the first 500
            held.release.set()
            sent = [await publishing, meanwhile, await second.relay_once(), await second.relay_once()]
            arrived = await published.collect(tenant, 1000, timeout=60)
    finally:
        await producer.stop()
    assert sorted(r["seq"] for r in arrived) == list(range(1000))
    assert out_of_order(arrived) == {}
    assert sent == [500, 0, 500, 0]  # the second relay waited for its turn
