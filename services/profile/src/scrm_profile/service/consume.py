"""Apply ``events.v1`` and ``touches.results.v1`` records to profiles, one transaction per batch.

Each record's ``event_id`` is claimed in the inbox inside the same transaction as its effects, so a redelivered
or re-sent record changes nothing. Changes for downstream services go to the outbox in that transaction too.
"""

import logging
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import (
    LifecycleStageChanged,
    OrderCompletedProperties,
    OrderRecorded,
    OrderRefundedProperties,
    SemanticEvent,
    Topic,
    TouchResult,
    TrackedEvent,
    record_key,
)
from scrm_kit.errors import InvalidInput
from scrm_kit.kafka import Record
from scrm_kit.outbox import OutgoingRecord, claim_new, enqueue
from scrm_profile.adapters import repository as repo
from scrm_profile.adapters.orm import CustomerRow, OrderRow, TouchRow, inbox, outbox
from scrm_profile.domain.customers import aggregate, stage_for_orders

logger = logging.getLogger(__name__)
CONSUMER = "profile"


def _change_record(change: LifecycleStageChanged | OrderRecorded) -> OutgoingRecord:
    return OutgoingRecord(
        Topic.PROFILE_CHANGES.value, record_key(change.tenant_id, change.customer_id), change.to_wire()
    )


def parse_record(record: Record) -> TrackedEvent | TouchResult:
    """Decode one record of a topic this service consumes; a malformed record is a permanent error."""
    if record.value is None:
        raise InvalidInput("record has no value", field="value")
    try:
        if record.topic == Topic.TOUCH_RESULTS.value:
            return TouchResult.from_wire(record.value)
        return TrackedEvent.from_wire(record.value)
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"malformed {record.topic} record: {exc}", field="value") from exc


class ProfileConsumer:
    """Batch handler for the profile consumer group."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def __call__(self, records: Sequence[Record]) -> None:
        messages = [parse_record(r) for r in records]
        async with self._sessions() as session, session.begin():
            fresh = await claim_new(session, inbox, CONSUMER, [(m.tenant_id, m.event_id) for m in messages])
            for message in messages:
                key = (message.tenant_id, message.event_id)
                if key not in fresh:
                    continue
                fresh.discard(key)  # a duplicate later in the same batch is skipped too
                if isinstance(message, TouchResult):
                    await self._record_touch(session, message)
                else:
                    await self._apply_event(session, message)

    async def _apply_event(self, session: AsyncSession, event: TrackedEvent) -> None:
        customer = await repo.customer_for_user(session, event.tenant_id, event.user_id, event.anonymous_id)
        if event.type != "track":
            return
        if event.event == SemanticEvent.ORDER_COMPLETED:
            try:
                order = OrderCompletedProperties.model_validate(event.properties)
            except ValidationError as exc:
                raise InvalidInput(f"Order Completed properties: {exc}", field="properties") from exc
            added = await repo.add_order(
                session,
                OrderRow(
                    tenant_id=event.tenant_id,
                    order_id=order.order_id,
                    customer_id=customer.customer_id,
                    amount=order.amount,
                    refunded_amount=0,
                    currency=order.currency.upper(),
                    occurred_at=event.occurred_at,
                    source_event_id=event.event_id,
                ),
            )
            if added:
                await self._refresh(
                    session,
                    customer,
                    event,
                    order_id=order.order_id,
                    amount=order.amount,
                    currency=order.currency.upper(),
                )
        elif event.event == SemanticEvent.ORDER_REFUNDED:
            try:
                refund = OrderRefundedProperties.model_validate(event.properties)
            except ValidationError as exc:
                raise InvalidInput(f"Order Refunded properties: {exc}", field="properties") from exc
            owner = await repo.refund_order(session, event.tenant_id, refund.order_id, refund.total)
            if owner == customer.customer_id:
                await self._refresh(session, customer, event)

    async def _refresh(
        self,
        session: AsyncSession,
        customer: CustomerRow,
        event: TrackedEvent,
        *,
        order_id: str | None = None,
        amount: object = None,
        currency: str | None = None,
    ) -> None:
        """Recompute aggregates from the stored orders (exact whatever the arrival order) and publish changes."""
        aggregates = aggregate(await repo.order_facts(session, customer.tenant_id, customer.customer_id))
        stage = stage_for_orders(aggregates.orders_count)
        previous = customer.lifecycle_stage
        await repo.save_aggregates(session, customer, aggregates, stage)
        changes: list[LifecycleStageChanged | OrderRecorded] = []
        if order_id is not None and currency is not None:
            changes.append(
                OrderRecorded(
                    event_id=f"order.recorded:{event.event_id}",
                    tenant_id=customer.tenant_id,
                    customer_id=customer.customer_id,
                    user_id=customer.user_id,
                    occurred_at=event.occurred_at,
                    order_id=order_id,
                    amount=amount,
                    currency=currency,  # type: ignore[arg-type]
                    orders_count=aggregates.orders_count,
                    revenue_total=aggregates.revenue_total,
                )
            )
        if stage != previous:
            changes.append(
                LifecycleStageChanged(
                    event_id=f"stage:{customer.customer_id}:{stage}:{event.event_id}",
                    tenant_id=customer.tenant_id,
                    customer_id=customer.customer_id,
                    user_id=customer.user_id,
                    occurred_at=event.occurred_at,
                    from_stage=previous,
                    to_stage=stage,
                    orders_count=aggregates.orders_count,  # type: ignore[arg-type]
                )
            )
        await enqueue(session, outbox, [_change_record(c) for c in changes])

    async def _record_touch(self, session: AsyncSession, result: TouchResult) -> None:
        await repo.add_touch(
            session,
            TouchRow(
                tenant_id=result.tenant_id,
                event_id=result.event_id,
                touch_key=result.touch_key,
                customer_id=result.customer_id,
                journey_id=result.journey_id,
                channel=result.channel,
                template_id=result.template_id,
                status=result.status.value,
                reason=result.reason,
                occurred_at=result.occurred_at,
            ),
        )
