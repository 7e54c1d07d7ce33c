"""Deliver touches: intake from ``touches.requests.v1``, gates, claim, send, settle; and the scheduler's wake-up
of held, deferred and retrying touches (``FOR UPDATE SKIP LOCKED``, so replicas never double-fire).

Exactly-once effect: the touch row (tenant, ``touch_key``) is the idempotency record. Touches are claimed
(status ``sending``, with a lease) in the database *before* a provider is called, and settled only by the
process holding that claim. A redelivered request finds the row and does nothing. The residual window: a crash
after a provider accepted a message and before the settle commits. When the lease runs out, providers that
dedupe on our key (webhook ``X-SCRM-Touch-Key``, WeChat ``client_msg_id``) get the same key again; for the
others (SMS, e-mail, WeCom mass messages) the touch is failed as ``outcome_unknown`` instead of risking a
second message.

Work goes in chunks of ``claim_batch`` touches: one transaction records and gates the chunk and claims what is
to be sent, the claimed touches are sent side by side (``concurrency`` customers at once, each customer's in
order), and one transaction settles them all. A chunk is settled before the next is claimed, so a crash leaves
at most one chunk claimed and unsettled.
"""

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import TouchRequest
from scrm_kit.clock import Clock
from scrm_notify.adapters import subscribe_grants, touch_batch, touches
from scrm_notify.adapters.channels.base import ChannelAdapter
from scrm_notify.adapters.orm import TouchRow
from scrm_notify.adapters.touch_batch import TouchState
from scrm_notify.domain.delivery import CircuitBreaker, SendOutcome, TokenBucket
from scrm_notify.service import gating
from scrm_notify.service.gating import Claimed, Effects
from scrm_notify.service.settle import Settlement, settle
from scrm_notify.settings import DeliverySettings, WeComSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")
DEADLOCK = "40P01"


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _first_of_each(requests: Sequence[TouchRequest]) -> list[TouchRequest]:
    """A request redelivered within one batch is the same touch: keep its first copy."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for request in requests:
        key = (request.tenant_id, request.touch_key)
        if key not in seen:
            seen.add(key)
            unique.append(request)
    return unique


class Pipeline:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        adapters: Mapping[str, ChannelAdapter],
        clock: Clock,
        delivery: DeliverySettings,
        dead_letter_topic: str = "notify.dlq",
        wecom: WeComSettings | None = None,
    ) -> None:
        self._sessions = sessions
        self._adapters = adapters
        self._clock = clock
        self._delivery = delivery
        self._dead_letter_topic = dead_letter_topic
        self._wecom = wecom or WeComSettings()
        self._buckets: dict[str, TokenBucket] = {}
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}

    async def handle(self, requests: Sequence[TouchRequest]) -> None:
        """Record, gate, send and settle a batch of requests, chunk by chunk; a request seen before is left alone."""
        unique = _first_of_each(requests)
        for chunk in _chunks(unique, self._delivery.claim_batch):
            await self._deliver(await self._retry_deadlock(partial(self._intake, chunk)))

    async def _intake(self, requests: Sequence[TouchRequest]) -> list[Claimed]:
        """Record the chunk's touches and run the gates, in one transaction."""
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            survivors = await touch_batch.resolve(session, ((r.tenant_id, r.customer_id) for r in requests))
            resolved = [(r, survivors.get((r.tenant_id, r.customer_id), r.customer_id)) for r in requests]
            fresh = await touch_batch.insert_received(session, resolved, now)
            items = [
                (
                    TouchState(
                        r.tenant_id,
                        r.touch_key,
                        customer_id,
                        r.journey_id,
                        r.template_id,
                        r.priority,
                        "received",
                        request=None,
                        updated_at=now,
                    ),
                    r,
                )  # fmt: skip
                for r, customer_id in resolved
                if (r.tenant_id, r.touch_key) in fresh
            ]
            if not items:
                return []
            return await gating.gate_batch(session, items, now, self._delivery)

    async def resume(self, batch_size: int = 200) -> int:
        """Wake due touches (taken with SKIP LOCKED, chunk by chunk), send and settle them; return how many."""
        now = self._clock.now()
        async with self._sessions() as session:
            due = [
                (t, k)
                for t, k in await session.execute(
                    select(TouchRow.tenant_id, TouchRow.touch_key)
                    .where(touches.due_filter(now))
                    .order_by(TouchRow.due_at)
                    .limit(batch_size)
                )
            ]
        for chunk in _chunks(due, self._delivery.claim_batch):
            await self._deliver(await self._retry_deadlock(partial(self._wake, chunk, now)))
        return len(due)

    async def _wake(self, keys: Sequence[tuple[str, str]], now: datetime) -> list[Claimed]:
        async with self._sessions() as session, session.begin():
            woken = await touch_batch.lock_due(session, keys, now)
            effects = Effects()
            interrupted: list[TouchState] = []
            items: list[tuple[TouchState, TouchRequest]] = []
            # Subscribe messages (they hold a grant) are not deduplicated by WeChat, unlike its template messages.
            mid_send = [t.key for t in woken if t.status == "sending"]
            undeduped = await subscribe_grants.holding(session, mid_send)
            for touch in woken:
                # A welcome message (no request: sent from a callback, never queued) is failed here the same way.
                dedupes = getattr(self._adapters.get(touch.channel or ""), "dedupes", False)
                if touch.status == "sending" and (touch.key in undeduped or not dedupes):
                    reason = "interrupted while sending; not retried to avoid a second message"
                    gating.fail(touch, "outcome_unknown", reason, now, effects)
                    interrupted.append(touch)
                    continue
                if touch.request is None:
                    continue
                touch.status, touch.sent_at, touch.updated_at = "retrying", None, now
                items.append((touch, TouchRequest.model_validate(touch.request)))
            released = [t.key for t in interrupted if t.key in undeduped]
            await subscribe_grants.settle(session, spent=[], released=released, used_up=[], now=now)
            return await gating.gate_batch(session, items, now, self._delivery, effects, interrupted)

    async def _retry_deadlock(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run a batch transaction again if Postgres chose it as a deadlock victim (it was rolled back whole)."""
        for attempt in range(3):
            try:
                return await work()
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != DEADLOCK or attempt == 2:
                    raise
                logger.warning("deadlock on a touch batch; trying again")
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _deliver(self, claimed: Sequence[Claimed]) -> None:
        """Send the claimed touches (customers side by side, each customer's in order), then settle them at once."""
        if not claimed:
            return
        claimed_at = time.monotonic()
        by_customer: dict[tuple[str, str], list[Claimed]] = defaultdict(list)
        for c in claimed:
            by_customer[(c.tenant_id, c.outbound.customer_id)].append(c)
        limit = asyncio.Semaphore(self._delivery.concurrency)
        settled: list[Settlement] = []

        async def run(group: list[Claimed]) -> None:
            async with limit:
                for c in group:
                    settled.append(await self.dispatch(c, claimed_at))

        outcomes = await asyncio.gather(*(run(g) for g in by_customer.values()), return_exceptions=True)
        # Settle what was sent even if one send raised, so no claim is left to run out its lease needlessly.
        await settle(self._sessions, settled, self._clock, self._delivery, self._dead_letter_topic, self._wecom)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def dispatch(self, claimed: Claimed, claimed_at: float) -> Settlement:
        """Send through the channel's adapter, behind its circuit breaker and token bucket."""
        adapter = self._adapters[claimed.outbound.channel]
        provider = adapter.provider(claimed.outbound.credentials)
        delivery = self._delivery
        breaker = self._breakers.setdefault(
            (claimed.tenant_id, provider),
            CircuitBreaker(delivery.circuit_threshold, timedelta(seconds=delivery.circuit_cooldown_seconds)),
        )
        rate = delivery.rate_per_second.get(provider, 50.0)
        bucket = self._buckets.setdefault(provider, TokenBucket(rate, rate))
        now = self._clock.now()
        # A send must end before the claim's lease does, or the scheduler could take the touch over mid-send.
        # (Checked before the circuit, so a half-open circuit's one trial is not spent on a touch never sent.)
        if time.monotonic() - claimed_at + delivery.http_timeout_seconds > delivery.send_lease_seconds:
            return Settlement(claimed, SendOutcome("retryable", "claim lease ran short; not sent", retry_at=now), False)
        if not breaker.allows(now):
            return Settlement(
                claimed, SendOutcome("retryable", f"{provider} circuit open", retry_at=breaker.open_until), False
            )
        wait = bucket.take(time.monotonic())
        if wait > 1.0:
            retry_at = now + timedelta(seconds=wait)
            return Settlement(claimed, SendOutcome("retryable", f"{provider} rate limit", retry_at=retry_at), False)
        if wait > 0:
            await asyncio.sleep(wait)
        outcome = await adapter.send(claimed.outbound)
        breaker.record(outcome, self._clock.now())
        if outcome.kind != "ok":
            logger.info("send %s", outcome.kind, extra={"touch_key": claimed.touch_key, "reason": outcome.reason})
        return Settlement(claimed, outcome)
