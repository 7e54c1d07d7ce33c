"""Drive the notify service's handlers in-process against the real PostgreSQL, on a clock the test controls, with
the channel adapters pointed at local fake providers (the adapters' production code path, over real HTTP).

Times are in 2031 so the running stack's own notify scheduler (real clock) never wakes these touches.
"""

import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import (
    Contact,
    CustomerSnapshot,
    CustomerUpdated,
    EventTracked,
    ProfileChange,
    Reachability,
    StaffTaskSpec,
    Topic,
    TouchRequest,
    TrackedEvent,
)
from scrm_kit.clock import FixedClock
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.settings import DbSettings
from scrm_notify.adapters.channels.http import build_client
from scrm_notify.adapters.orm import StaffTaskRow, TouchRow
from scrm_notify.bootstrap import build_adapters, build_pipeline, wecom_adapter
from scrm_notify.service import channels
from scrm_notify.service.directory import DirectoryConsumer
from scrm_notify.service.pipeline import Pipeline
from scrm_notify.service.wecom_results import WeComResults
from scrm_notify.service.welcome import WelcomeConsumer
from scrm_notify.settings import DeliverySettings, ProviderUrls, Settings, WeComSettings
from tests.fakes.notify_providers import SECRET

EPOCH = datetime(2031, 3, 4, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
_offsets = itertools.count()
_versions = itertools.count(1)


def as_record(topic: str, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, next(_offsets), 0, 0, b"k", value, None, 1, len(value), [])


class NotifyHarness:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        fake_url: str,
        wecom: WeComSettings | None = None,
        **delivery: Any,
    ) -> None:
        self.sessions = sessions
        self.clock = FixedClock(EPOCH)
        self.fake_url = fake_url
        self.tenant_id = f"ten_it_{uuid.uuid4().hex[:12]}"
        self.settings = Settings(
            providers=ProviderUrls(
                wecom=f"{fake_url}/wecom",
                wechat=f"{fake_url}/wechat",
                aliyun_sms=f"{fake_url}/aliyun/",
                tencent_sms=f"{fake_url}/tencent/",
                sendgrid=f"{fake_url}/sendgrid",
            ),
            delivery=DeliverySettings(**delivery),
            wecom=wecom or WeComSettings(),
        )
        # The service's own HTTP client (its transport), with a short timeout for the slow-provider tests.
        self.client = build_client(self.settings.delivery.concurrency, 2.0)
        adapters = build_adapters(self.client, self.clock, self.settings)
        self.pipeline: Pipeline = build_pipeline(sessions, self.client, self.clock, self.settings, adapters)
        self.directory = DirectoryConsumer(sessions, self.clock)
        self.wecom_results = WeComResults(sessions, wecom_adapter(adapters), self.clock, self.settings.wecom)
        self.welcome = WelcomeConsumer(sessions, wecom_adapter(adapters), self.clock, self.settings.wecom)

    async def change(self, *changes: ProfileChange) -> None:
        await self.directory([as_record(Topic.PROFILE_CHANGES.value, c.to_wire()) for c in changes])

    async def customer(self, customer_id: str, **fields: Any) -> None:
        """Publish a customer.updated snapshot (as the profile service would)."""
        if "email_consent" in fields:
            fields["email_reach"] = fields.pop("email_consent")
        contact = Contact(**{k: fields.pop(k) for k in list(fields) if k in Contact.model_fields})
        reach = Reachability(**{k: fields.pop(k) for k in list(fields) if k in Reachability.model_fields})
        if "email_reach" in fields:
            reach = reach.model_copy(update={"email": fields.pop("email_reach")})
        fields.setdefault("timezone", "Asia/Shanghai")
        fields.setdefault("lifecycle_stage", "active")
        snapshot = CustomerSnapshot(contact=contact, reachability=reach, **fields)
        await self.change(
            CustomerUpdated(
                event_id=f"upd-{uuid.uuid4()}",
                tenant_id=self.tenant_id,
                customer_id=customer_id,
                occurred_at=self.clock.now(),
                version=next(_versions),
                snapshot=snapshot,
            )
        )

    async def tracked(self, customer_id: str, event: str, **properties: Any) -> None:
        await self.change(
            EventTracked(
                event_id=f"evt-{uuid.uuid4()}",
                tenant_id=self.tenant_id,
                customer_id=customer_id,
                occurred_at=self.clock.now(),
                event=event,
                source_event_id=f"src-{uuid.uuid4()}",
                properties=properties,
            )
        )

    def request(self, customer_id: str, *channels_: str, key: str | None = None, **fields: Any) -> TouchRequest:
        touch_key = key or f"tk-{uuid.uuid4().hex[:10]}"
        task = fields.pop("task", None)
        return TouchRequest(
            event_id=touch_key,
            touch_key=touch_key,
            tenant_id=self.tenant_id,
            customer_id=customer_id,
            journey_id=fields.pop("journey_id", "j-test"),
            channels=list(channels_),
            template_id=fields.pop("template_id", "welcome"),
            priority=fields.pop("priority", "marketing"),
            variables=fields.pop("variables", {"customer_id": customer_id}),
            task=StaffTaskSpec(**task) if task else None,
            requested_at=self.clock.now(),
        )

    async def send(self, *requests: TouchRequest) -> None:
        await self.pipeline.handle(list(requests))

    def contact_added(
        self, external_userid: str, welcome_code: str, staff_id: str = "zhang", age: timedelta = timedelta(0)
    ) -> TrackedEvent:
        """A ``WeCom Contact Added`` as ingest publishes it on events.v1 (received ``age`` before now)."""
        return TrackedEvent(
            event_id=f"wecom:{uuid.uuid4().hex[:16]}",
            tenant_id=self.tenant_id,
            type="track",
            event="WeCom Contact Added",
            anonymous_id=f"wecom:{external_userid}",
            occurred_at=self.clock.now() - age,
            received_at=self.clock.now() - age,
            properties={"staff_id": staff_id, "external_userid": external_userid, "welcome_code": welcome_code},
            context={"traits": {"wecom_external_userid": external_userid}},
        )

    async def events(self, *events: TrackedEvent) -> None:
        """Hand events.v1 records to the welcome consumer, as its consumer group would."""
        await self.welcome([as_record(Topic.EVENTS.value, e.to_wire()) for e in events])

    async def tick(self, advance: timedelta = timedelta(0)) -> int:
        self.clock.advance(advance)
        return await self.pipeline.resume()

    async def touch(self, touch_key: str) -> TouchRow:
        async with self.sessions() as session:
            row = await session.get(TouchRow, (self.tenant_id, touch_key))
        assert row is not None, f"no touch {touch_key}"
        return row

    async def tasks(self) -> list[StaffTaskRow]:
        async with self.sessions() as session:
            rows = await session.execute(select(StaffTaskRow).where(StaffTaskRow.tenant_id == self.tenant_id))
            return list(rows.scalars())

    async def configure(self, channel: str, **settings: Any) -> None:
        if channel == "webhook":
            await channels.configure_webhook(
                self.sessions, self.tenant_id, f"{self.fake_url}/hook/{self.tenant_id}", SECRET
            )
            return
        await channels.configure_channel(self.sessions, self.tenant_id, channel, settings, SECRET)

    async def sql(self, statement: str, **params: Any) -> Sequence[Any]:
        async with self.sessions() as session:
            return (await session.execute(text(statement), params)).all()


async def harness(
    db_url: str, fake_url: str, wecom: WeComSettings | None = None, **delivery: Any
) -> AsyncIterator[NotifyHarness]:
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    h = NotifyHarness(build_sessionmaker(engine), fake_url, wecom, **delivery)
    try:
        yield h
    finally:
        await h.client.aclose()
        await engine.dispose()
