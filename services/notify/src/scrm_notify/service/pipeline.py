"""Deliver touches: intake from ``touches.requests.v1``, gates, claim, send, settle; and the scheduler's wake-up
of held, deferred and retrying touches (``FOR UPDATE SKIP LOCKED``, so replicas never double-fire).

Exactly-once effect: the touch row (tenant, ``touch_key``) is the idempotency record. A touch is claimed
(status ``sending``, with a lease) in the database *before* the provider is called, and settled only by the
process holding that claim. A redelivered request finds the row and does nothing. The residual window: a crash
after the provider accepted the message and before the settle commits. When the lease runs out, providers that
dedupe on our key (webhook ``X-SCRM-Touch-Key``, WeChat ``client_msg_id``) get the same key again; for the
others (SMS, e-mail, WeCom mass messages) the touch is failed as ``outcome_unknown`` instead of risking a
second message.
"""

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import TouchRequest
from scrm_kit.clock import Clock
from scrm_notify.adapters import directory, touches
from scrm_notify.adapters.channels.base import ChannelAdapter
from scrm_notify.adapters.orm import TouchRow
from scrm_notify.domain.delivery import CircuitBreaker, SendOutcome, TokenBucket
from scrm_notify.service import gating
from scrm_notify.service.gating import Claimed
from scrm_notify.service.settle import settle
from scrm_notify.settings import DeliverySettings

logger = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        adapters: Mapping[str, ChannelAdapter],
        clock: Clock,
        delivery: DeliverySettings,
        dead_letter_topic: str = "notify.dlq",
    ) -> None:
        self._sessions = sessions
        self._adapters = adapters
        self._clock = clock
        self._delivery = delivery
        self._dead_letter_topic = dead_letter_topic
        self._buckets: dict[str, TokenBucket] = {}
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}

    async def handle(self, requests: Sequence[TouchRequest]) -> None:
        """Touches of one customer in order; customers side by side (bounded)."""
        by_customer: dict[tuple[str, str], list[TouchRequest]] = defaultdict(list)
        for request in requests:
            by_customer[(request.tenant_id, request.customer_id)].append(request)
        limit = asyncio.Semaphore(self._delivery.concurrency)

        async def run(group: list[TouchRequest]) -> None:
            async with limit:
                for request in group:
                    claimed = await self.intake(request)
                    if claimed is not None:
                        await self.dispatch(claimed)

        outcomes = await asyncio.gather(*(run(g) for g in by_customer.values()), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def intake(self, request: TouchRequest) -> Claimed | None:
        """Record the touch and run the gates in one transaction; a touch seen before is left alone."""
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            customer_id = await directory.resolve(session, request.tenant_id, request.customer_id)
            inserted = await session.execute(
                insert(TouchRow)
                .values(
                    tenant_id=request.tenant_id,
                    touch_key=request.touch_key,
                    customer_id=customer_id,
                    journey_id=request.journey_id,
                    template_id=request.template_id,
                    priority=request.priority,
                    status="received",
                    attempts=0,
                    request=request.model_dump(mode="json"),
                    requested_at=request.requested_at,
                    updated_at=now,
                )
                .on_conflict_do_nothing()
                .returning(TouchRow.touch_key)
            )
            if inserted.first() is None:
                return None
            touch = await session.get(TouchRow, (request.tenant_id, request.touch_key))
            assert touch is not None
            return await gating.gate(session, touch, request, now, self._delivery)

    async def resume(self, batch_size: int = 200) -> int:
        """Wake due touches (one short transaction each, rows taken with SKIP LOCKED); return how many."""
        now = self._clock.now()
        async with self._sessions() as session:
            due = (
                await session.execute(
                    select(TouchRow.tenant_id, TouchRow.touch_key)
                    .where(touches.due_filter(now))
                    .order_by(TouchRow.due_at)
                    .limit(batch_size)
                )
            ).all()
        claimed: list[Claimed] = []
        for tenant_id, touch_key in due:
            woken = await self._wake(tenant_id, touch_key, now)
            if woken is not None:
                claimed.append(woken)
        await asyncio.gather(*(self.dispatch(c) for c in claimed))
        return len(due)

    async def _wake(self, tenant_id: str, touch_key: str, now: datetime) -> Claimed | None:
        async with self._sessions() as session, session.begin():
            touch = (
                await session.execute(
                    select(TouchRow)
                    .where(TouchRow.tenant_id == tenant_id, TouchRow.touch_key == touch_key, touches.due_filter(now))
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if touch is None or touch.request is None:
                return None
            if touch.status == "sending" and not getattr(self._adapters.get(touch.channel or ""), "dedupes", False):
                await gating.fail(
                    session,
                    touch,
                    "outcome_unknown",
                    "interrupted while sending; not retried to avoid a second message",
                    now,
                )
                return None
            touch.status, touch.sent_at = "retrying", None
            return await gating.gate(session, touch, TouchRequest.model_validate(touch.request), now, self._delivery)

    async def dispatch(self, claimed: Claimed) -> None:
        """Send through the channel's adapter, behind its circuit breaker and token bucket, then settle."""
        adapter = self._adapters[claimed.outbound.channel]
        provider = adapter.provider(claimed.outbound.credentials)
        delivery = self._delivery
        breaker = self._breakers.setdefault(
            (claimed.tenant_id, provider),
            CircuitBreaker(delivery.circuit_threshold, timedelta(seconds=delivery.circuit_cooldown_seconds)),
        )
        bucket = self._buckets.setdefault(
            provider,
            TokenBucket(delivery.rate_per_second.get(provider, 50.0), delivery.rate_per_second.get(provider, 50.0)),
        )
        now = self._clock.now()
        if not breaker.allows(now):
            outcome = SendOutcome("retryable", f"{provider} circuit open", retry_at=breaker.open_until)
            return await settle(
                self._sessions, claimed, outcome, self._clock, delivery, self._dead_letter_topic, counted=False
            )
        wait = bucket.take(time.monotonic())
        if wait > 1.0:
            outcome = SendOutcome("retryable", f"{provider} rate limit", retry_at=now + timedelta(seconds=wait))
            return await settle(
                self._sessions, claimed, outcome, self._clock, delivery, self._dead_letter_topic, counted=False
            )
        if wait > 0:
            await asyncio.sleep(wait)
        outcome = await adapter.send(claimed.outbound)
        breaker.record(outcome, self._clock.now())
        if outcome.kind != "ok":
            logger.info("send %s", outcome.kind, extra={"touch_key": claimed.touch_key, "reason": outcome.reason})
        await settle(self._sessions, claimed, outcome, self._clock, delivery, self._dead_letter_topic)
