"""Read what a service really published on a topic: a consumer without a group, positioned at the end of every
partition before the test acts, collecting only the records of the test's own tenant."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


class Tap:
    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.records: list[dict[str, Any]] = []
        self.keys: list[bytes | None] = []  # each record's key, in the order of ``records``

    async def collect(self, tenant_id: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """Wait for at least ``count`` records of the tenant; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self._of(tenant_id)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self._of(tenant_id))} of {count} records arrived in {timeout}s")
            await self._poll(0.5)
        return self._of(tenant_id)

    async def settle(self, tenant_id: str, seconds: float = 2.0) -> list[dict[str, Any]]:
        """Everything the tenant got once nothing more arrived for ``seconds``."""
        await self._poll(seconds)
        return self._of(tenant_id)

    def _of(self, tenant_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("tenant_id") == tenant_id]

    async def _poll(self, seconds: float) -> None:
        batches = await self._consumer.getmany(timeout_ms=int(seconds * 1000), max_records=5000)
        for records in batches.values():
            self.records += [orjson.loads(r.value) for r in records if r.value is not None]
            self.keys += [r.key for r in records if r.value is not None]


async def create_topic(bootstrap: str, topic: str, partitions: int = 2) -> None:
    """A topic of the test's own, so its records meet no other test's."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert described["partitions"], f"no topic {topic}"
    return sorted(p["partition"] for p in described["partitions"])


@asynccontextmanager
async def tap(bootstrap: str, topic: str) -> AsyncIterator[Tap]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(bootstrap, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end positions now, before the test publishes anything
            await consumer.position(tp)
        yield Tap(consumer)
    finally:
        await consumer.stop()
