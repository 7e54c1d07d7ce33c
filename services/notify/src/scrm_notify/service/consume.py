"""Deliver ``touches.requests.v1``: record the touch, render it, send it on the first configured channel, and
publish the outcome on ``touches.results.v1`` through the outbox.

The touch row (keyed by tenant and ``touch_key``) is the idempotency record: a touch already settled is skipped
on redelivery; one left ``pending`` by a crash mid-send is sent again with the same key, which receivers dedupe.
"""

import logging
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import Topic, TouchRequest, TouchResult, TouchStatus, record_key
from scrm_kit.clock import Clock
from scrm_kit.errors import InvalidInput
from scrm_kit.kafka import Record
from scrm_kit.outbox import OutgoingRecord, enqueue
from scrm_notify.adapters.orm import ChannelConfigRow, TouchRow, outbox
from scrm_notify.adapters.webhook import Delivery, WebhookAdapter, WebhookTarget
from scrm_notify.domain.templates import TemplateFailure, render

logger = logging.getLogger(__name__)
SETTLED = {s.value for s in TouchStatus} - {"deferred"}


def parse_record(record: Record) -> TouchRequest:
    if record.value is None:
        raise InvalidInput("record has no value", field="value")
    try:
        return TouchRequest.from_wire(record.value)
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"malformed {record.topic} record: {exc}", field="value") from exc


class NotifyConsumer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], webhook: WebhookAdapter, clock: Clock) -> None:
        self._sessions = sessions
        self._webhook = webhook
        self._clock = clock

    async def __call__(self, records: Sequence[Record]) -> None:
        for request in [parse_record(r) for r in records]:
            await self.deliver(request)

    async def deliver(self, request: TouchRequest) -> None:
        if not await self._claim(request):
            return
        try:
            body = render(request.template_id, request.variables)
        except TemplateFailure as exc:
            await self._settle(request, None, TouchStatus.FAILED, f"template_error: {exc}", None)
            return
        target = await self._webhook_target(request)
        if target is None:
            await self._settle(
                request, None, TouchStatus.FAILED, f"no configured channel among {request.channels}", body
            )
            return
        payload = {
            "touch_key": request.touch_key,
            "tenant_id": request.tenant_id,
            "customer_id": request.customer_id,
            "user_id": request.user_id,
            "journey_id": request.journey_id,
            "template_id": request.template_id,
            "priority": request.priority,
            "channel": "webhook",
            "text": body,
        }
        delivery: Delivery = await self._webhook.send(target, request.touch_key, payload, self._clock.now())
        status = TouchStatus.SENT if delivery.ok else TouchStatus.FAILED
        await self._settle(request, "webhook", status, delivery.reason, body, delivery.provider_message_id)

    async def _claim(self, request: TouchRequest) -> bool:
        """Record the touch as pending; False if it was already settled (a redelivery)."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                insert(TouchRow)
                .values(
                    tenant_id=request.tenant_id,
                    touch_key=request.touch_key,
                    customer_id=request.customer_id,
                    journey_id=request.journey_id,
                    template_id=request.template_id,
                    priority=request.priority,
                    status="pending",
                    attempts=0,
                    requested_at=request.requested_at,
                )
                .on_conflict_do_nothing()
            )
            status = (
                await session.execute(
                    select(TouchRow.status)
                    .where(TouchRow.tenant_id == request.tenant_id, TouchRow.touch_key == request.touch_key)
                    .with_for_update()
                )
            ).scalar_one()
            if status in SETTLED:
                return False
            await session.execute(
                update(TouchRow)
                .where(TouchRow.tenant_id == request.tenant_id, TouchRow.touch_key == request.touch_key)
                .values(attempts=TouchRow.attempts + 1)
            )
            return True

    async def _webhook_target(self, request: TouchRequest) -> WebhookTarget | None:
        if WebhookAdapter.channel not in request.channels:
            return None
        async with self._sessions() as session:
            config = await session.get(ChannelConfigRow, (request.tenant_id, WebhookAdapter.channel))
        return WebhookTarget(config.url, config.secret) if config else None

    async def _settle(
        self,
        request: TouchRequest,
        channel: str | None,
        status: TouchStatus,
        reason: str | None,
        body: str | None,
        provider_message_id: str | None = None,
    ) -> None:
        now = self._clock.now()
        result = TouchResult(
            event_id=f"{request.touch_key}:{status.value}",
            touch_key=request.touch_key,
            tenant_id=request.tenant_id,
            customer_id=request.customer_id,
            journey_id=request.journey_id,
            channel=channel,
            template_id=request.template_id,
            status=status,
            reason=reason,
            provider_message_id=provider_message_id,
            occurred_at=now,
        )
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(TouchRow)
                .where(TouchRow.tenant_id == request.tenant_id, TouchRow.touch_key == request.touch_key)
                .values(
                    status=status.value,
                    reason=reason,
                    channel=channel,
                    body=body,
                    provider_message_id=provider_message_id,
                    updated_at=now,
                )
            )
            await enqueue(
                session,
                outbox,
                [
                    OutgoingRecord(
                        Topic.TOUCH_RESULTS.value, record_key(request.tenant_id, request.customer_id), result.to_wire()
                    )
                ],
            )
        logger.info(
            "touch %s",
            status.value,
            extra={"touch_key": request.touch_key, "tenant_id": request.tenant_id, "reason": reason},
        )
