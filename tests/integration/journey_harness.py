"""Drive the journey service's handlers in-process against the real PostgreSQL, on a clock the test controls.

Changes go through the same parsing and handler code as the consumer (only the Kafka hop is skipped); the
scheduler tick is the production ``TimerSweep``, confined to the test's tenant. Touch requests are read back from
the real ``touches.requests.v1`` topic once the stack's outbox relay has published them. Times are in 2031, so
the running stack's own scheduler (real clock) never wakes these timers.
"""

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import (
    CustomerSnapshot,
    CustomerUpdated,
    EventTracked,
    LifecycleStageChanged,
    Topic,
    TouchResult,
)
from scrm_journey.domain.templates import TemplateCatalogue, TemplateCoverage
from scrm_journey.service.consume import JourneyConsumer
from scrm_journey.service.journeys import JourneyAdmin
from scrm_journey.service.queries import instances_of
from scrm_journey.service.timers import TimerSweep
from scrm_kit.clock import FixedClock
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.settings import DbSettings

EPOCH = datetime(2031, 3, 2, 1, 0, tzinfo=UTC)
_offsets = itertools.count()
_versions = itertools.count(1)


def as_record(message: BaseModel, topic: str = Topic.PROFILE_CHANGES.value) -> ConsumerRecord[bytes, bytes]:
    value = message.to_wire()  # type: ignore[attr-defined]
    return ConsumerRecord(topic, 0, next(_offsets), 0, 0, b"k", value, None, 1, len(value), [])


class EveryTemplate:
    """A template catalogue that has every id: these tests are about the engine (tenants here have no API token to
    ask notify with; tests/e2e/test_journey_templates.py checks templates against the real notify)."""

    async def coverage(self, needs: Sequence[tuple[str, str]]) -> list[TemplateCoverage]:
        return [TemplateCoverage(template_id, channel, True) for template_id, channel in needs]


class JourneyHarness:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: FixedClock, tenant_id: str, kafka: str):
        self.sessions = sessions
        self.clock = clock
        self.tenant_id = tenant_id
        self.kafka = kafka
        self.consumer = JourneyConsumer(sessions, clock)
        self.templates: TemplateCatalogue = EveryTemplate()

    # -- inputs
    async def feed(self, *messages: BaseModel) -> None:
        records = [as_record(m, Topic.TOUCH_RESULTS.value if isinstance(m, TouchResult) else Topic.PROFILE_CHANGES)
                   for m in messages]  # fmt: skip
        await self.consumer(records)

    def base(self, customer_id: str, event_id: str | None = None) -> dict[str, Any]:
        return {"event_id": event_id or f"chg-{uuid.uuid4()}", "tenant_id": self.tenant_id,
                "customer_id": customer_id, "user_id": f"u-{customer_id}", "occurred_at": self.clock.now()}  # fmt: skip

    def snapshot(self, customer_id: str, version: int | None = None, **fields: Any) -> CustomerUpdated:
        return CustomerUpdated(version=version or next(_versions), snapshot=CustomerSnapshot(**fields),
                               **self.base(customer_id))  # fmt: skip

    def tracked(self, customer_id: str, event: str, **properties: Any) -> EventTracked:
        return EventTracked(event=event, source_event_id=str(uuid.uuid4()), properties=properties,
                            **self.base(customer_id))  # fmt: skip

    def stage(self, customer_id: str, to_stage: str, from_stage: str | None = None) -> LifecycleStageChanged:
        return LifecycleStageChanged(from_stage=from_stage, to_stage=to_stage, orders_count=1,  # type: ignore[arg-type]
                                     **self.base(customer_id))  # fmt: skip

    async def tick(self, batch_size: int = 500) -> int:
        """Run the scheduler until nothing is due; returns how many timers fired."""
        sweep = TimerSweep(self.sessions, self.clock, batch_size, tenant_id=self.tenant_id)
        fired = 0
        while (n := await sweep()) > 0:
            fired += n
        return fired

    # -- journeys
    async def publish(self, document: dict[str, Any], journey_id: str | None = None) -> str:
        async with self.sessions() as session, session.begin():
            admin = JourneyAdmin(session, self.tenant_id, self.clock.now(), self.templates)
            if journey_id is None:
                view, _ = await admin.create(document)
                journey_id = view.journey_id
            else:
                await admin.update_draft(journey_id, document)
            await admin.publish(journey_id)
        return journey_id

    async def admin(self, action: str, journey_id: str) -> Any:
        async with self.sessions() as session, session.begin():
            admin = JourneyAdmin(session, self.tenant_id, self.clock.now(), self.templates)
            return await getattr(admin, action)(journey_id)

    # -- outputs
    async def instances(self, customer_id: str | None = None, journey_id: str | None = None) -> list[Any]:
        async with self.sessions() as session:
            found = await instances_of(session, self.tenant_id, customer_id=customer_id, journey_id=journey_id,
                                       limit=100_000)  # fmt: skip
        return [(i, [f"{m.node_id}:{m.outcome}" for m in moves]) for i, moves in found]

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.sessions() as session:
            return (await session.execute(text(sql), {"t": self.tenant_id, **params})).scalar()

    async def published(self, topic: str = Topic.TOUCH_REQUESTS.value) -> list[dict[str, Any]]:
        """Every record of this tenant on ``topic``, once the outbox relay has published all of ours."""
        deadline = time.monotonic() + 60
        while await self.scalar(
            "SELECT count(*) FROM journey.outbox WHERE convert_from(value, 'UTF8')::jsonb->>'tenant_id' = :t"
        ):
            assert time.monotonic() < deadline, "the outbox relay did not publish this tenant's records"
            await asyncio.sleep(0.2)
        return await read_topic(self.kafka, topic, self.tenant_id)


def _json(value: bytes | None) -> dict[str, Any]:
    """A record's JSON object; anything else (another test's poison record) reads as empty."""
    try:
        found = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


async def read_topic(bootstrap: str, topic: str, tenant_id: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - first metadata load
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[dict[str, Any]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [v for v in (_json(r.value) for r in records) if v.get("tenant_id") == tenant_id]
        return found
    finally:
        await consumer.stop()


async def harness(db_url: str, kafka: str, clock: FixedClock | None = None) -> AsyncIterator[JourneyHarness]:
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    try:
        yield JourneyHarness(build_sessionmaker(engine), clock or FixedClock(EPOCH), f"ten_it_{uuid.uuid4().hex[:12]}",
                             kafka)  # fmt: skip
    finally:
        await engine.dispose()


def touch_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    return sorted(r["touch_key"] for r in records)
