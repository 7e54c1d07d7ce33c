"""Drive the profile service's handlers in-process against the real PostgreSQL, on a clock the test controls.

Records go through the same parsing and handler code as the consumer; only the Kafka hop is skipped, so a test
can order, duplicate and delay events exactly. Times are in 2031 so the running stack's own sweeps (real clock)
never touch these customers.
"""

import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import Topic, TouchResult, TrackedEvent
from scrm_kit.clock import FixedClock
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.outbox import PACKED, unpack
from scrm_kit.settings import DbSettings
from scrm_profile.adapters.orm import CustomerRow
from scrm_profile.service.consume import ProfileConsumer

EPOCH = datetime(2031, 1, 1, tzinfo=UTC)
_offsets = itertools.count()


def event(
    tenant_id: str,
    user_id: str | None,
    name: str | None = None,
    *,
    kind: str = "track",
    at: datetime = EPOCH,
    event_id: str | None = None,
    anonymous_id: str | None = None,
    customer_id: str | None = None,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
) -> TrackedEvent:
    return TrackedEvent(
        event_id=event_id or f"evt-{uuid.uuid4()}",
        tenant_id=tenant_id,
        type=kind,  # type: ignore[arg-type]
        event=name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        customer_id=customer_id,
        occurred_at=at,
        received_at=at,
        properties=properties or {},
        traits=traits or {},
    )


def order(
    tenant_id: str, user_id: str, order_id: str, total: str | float, at: datetime = EPOCH, event_id: str | None = None
) -> TrackedEvent:
    return event(
        tenant_id,
        user_id,
        "Order Completed",
        at=at,
        event_id=event_id,
        properties={"order_id": order_id, "total": str(total), "currency": "CNY"},
    )


def as_record(message: TrackedEvent | TouchResult) -> ConsumerRecord[bytes, bytes]:
    value = message.to_wire()
    topic = Topic.TOUCH_RESULTS if isinstance(message, TouchResult) else Topic.EVENTS
    return ConsumerRecord(topic.value, 0, next(_offsets), 0, 0, b"k", value, None, 1, len(value), [])


def touch_result(tenant_id: str, customer_id: str, status: str = "delivered", at: datetime = EPOCH) -> TouchResult:
    key = f"touch-{uuid.uuid4()}"
    return TouchResult(
        event_id=f"{key}:{status}",
        touch_key=key,
        tenant_id=tenant_id,
        customer_id=customer_id,
        journey_id="welcome",
        channel="webhook",
        template_id="welcome",
        status=status,  # type: ignore[arg-type]
        occurred_at=at,
    )


class ProfileHarness:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: FixedClock) -> None:
        self.sessions = sessions
        self.clock = clock
        self.consumer = ProfileConsumer(sessions, clock)

    async def feed(self, messages: Sequence[TrackedEvent | TouchResult], batch: int = 50) -> None:
        for start in range(0, len(messages), batch):
            await self.consumer([as_record(m) for m in messages[start : start + batch]])

    async def customer(self, tenant_id: str, user_id: str) -> CustomerRow | None:
        async with self.sessions() as session:
            owner = (
                await session.execute(
                    text(
                        "SELECT customer_id FROM profile.identities "
                        "WHERE tenant_id = :t AND kind = 'user_id' AND value = :u"
                    ),
                    {"t": tenant_id, "u": user_id},
                )
            ).scalar_one_or_none()
            if owner is None:
                return None
            return await session.get(CustomerRow, (tenant_id, owner))

    async def customers(self, tenant_id: str) -> list[CustomerRow]:
        async with self.sessions() as session:
            return list(
                (await session.execute(select(CustomerRow).where(CustomerRow.tenant_id == tenant_id))).scalars()
            )

    async def outbox(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every change this tenant's customers published, in the order they were (no relay runs on this database;
        a packed row's records in their order)."""
        import orjson

        async with self.sessions() as session:
            rows = (await session.execute(text("SELECT value, headers FROM profile.outbox ORDER BY id"))).all()
        packed = [unpack(value) if PACKED in (headers or {}) else [(b"", value)] for value, headers in rows]
        values = [v for records in packed for _, v in records]
        return [c for c in map(orjson.loads, values) if c.get("tenant_id") == tenant_id]

    async def outbox_changes(self, tenant_id: str, change_type: str) -> list[dict[str, Any]]:
        """Changes of one type this tenant's customers published, in the order they were."""
        return [c for c in await self.outbox(tenant_id) if c.get("type") == change_type]


async def harness(db_url: str) -> AsyncIterator[ProfileHarness]:
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    try:
        yield ProfileHarness(build_sessionmaker(engine), FixedClock(EPOCH))
    finally:
        await engine.dispose()


def money(value: Decimal | str | float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))
