"""Apply ``events.v1`` and ``touches.results.v1`` records to profiles, one transaction per batch.

Each record's ``event_id`` is claimed in the inbox inside the same transaction as its effects, so a redelivered
or re-sent record changes nothing. Aggregates are recomputed from stored orders (exact whatever the arrival
order). Changes for downstream services go to the outbox in the same transaction.
"""

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeAlias

from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import (
    CustomersMerged,
    EventTracked,
    LifecycleStageChanged,
    OrderCompletedProperties,
    OrderRecorded,
    OrderRefundedProperties,
    SemanticEvent,
    Topic,
    TouchResult,
    TouchStatus,
    TrackedEvent,
)
from scrm_kit.clock import Clock
from scrm_kit.errors import InvalidInput
from scrm_kit.kafka import Record
from scrm_kit.outbox import OutgoingRecord, claim_new, enqueue
from scrm_kit.textcheck import NUL_ESCAPE, nul_in_json
from scrm_kit.textcheck import REASON as NUL_REASON
from scrm_profile.adapters import bulk
from scrm_profile.adapters import repository as repo
from scrm_profile.adapters.identities import Resolution, resolve
from scrm_profile.adapters.orm import CustomerRow, OrderRow, TouchRow, inbox, outbox
from scrm_profile.domain.customers import Aggregates
from scrm_profile.domain.identity import identifiers_of
from scrm_profile.domain.settings import ProfileSettings
from scrm_profile.service import apply
from scrm_profile.service.segments import SegmentEvaluator
from scrm_profile.service.snapshots import (
    Before,
    Change,
    before_event,
    records,
    settle,
    snapshot_of,
    updated_record,
    wire_record,
)
from scrm_profile.service.valuation import refresh_value

logger = logging.getLogger(__name__)
CONSUMER = "profile"
ORDER_EVENTS = {SemanticEvent.ORDER_COMPLETED, SemanticEvent.ORDER_REFUNDED}
STORED_VALUE_EVENTS = {SemanticEvent.STORED_VALUE_TOPPED_UP, SemanticEvent.STORED_VALUE_SPENT}
ENGAGED = {TouchStatus.OPENED, TouchStatus.CLICKED, TouchStatus.REPLIED}
Message: TypeAlias = TrackedEvent | TouchResult
# Every statement the consumer runs looks rows up by tenant and by ids of the batch, and the right plan for each is
# the same index probe whatever the tenant. A custom plan weighs the tenant by the table's statistics instead: for
# a tenant that grew since the last ANALYZE (a new one, a big import) it expects a handful of rows and reads the
# whole tenant through any index that starts with tenant_id, filtering the ids, on every batch (10-15 ms per
# statement at 30,000 orders, growing with the tenant). Generic plans leave the tenant's value out, and are made
# once per connection instead of once per statement.
GENERIC_PLANS = text("SET LOCAL plan_cache_mode = force_generic_plan")


def parse_record(record: Record) -> TrackedEvent | TouchResult:
    """Decode one record of a topic this service consumes; a malformed record is a permanent error."""
    if record.value is None:
        raise InvalidInput("record has no value", field="value")
    if NUL_ESCAPE in record.value and (where := nul_in_json(record.value)) is not None:
        # ingest refuses these; one from elsewhere is dead-lettered with the reason instead of failing its batch
        raise InvalidInput(f"{where}: {NUL_REASON}", field=where)
    model: type[TrackedEvent] | type[TouchResult] = (
        TouchResult if record.topic == Topic.TOUCH_RESULTS.value else TrackedEvent
    )
    try:
        # what ``Contract.from_wire`` does (unknown fields dropped), parsed and validated in one pass
        return model.model_validate_json(record.value, extra="ignore")
    except ValidationError as exc:
        raise InvalidInput(f"malformed {record.topic} record: {exc}", field="value") from exc


def _stage_reason(source: TrackedEvent | None, changes: list[Change]) -> str:
    if source is not None and source.event == SemanticEvent.ORDER_COMPLETED:
        return "order"
    if source is not None and source.event == SemanticEvent.ORDER_REFUNDED:
        return "refund"
    if any(isinstance(c, CustomersMerged) for c in changes):
        return "merge"
    return "time"


class ProfileConsumer:
    """Batch handler for the profile consumer group.

    ``batched`` (the default) applies a batch set-based (``service.batch``): a few statements per batch whatever
    its size. ``batched=False`` applies it event by event (``EventWork``), the reference the batch path must match;
    the batch path itself falls back to it for the events of customers a merge joins.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock, *, batched: bool = True) -> None:
        self._sessions = sessions
        self._clock = clock
        self._batched = batched

    async def __call__(self, records_in: Sequence[Record]) -> None:
        if not self._batched or len(records_in) == 1:
            await self._one_by_one(records_in)
            return
        from scrm_profile.service.batch import BatchWork, checked

        messages: list[Message] = []
        properties: dict[int, BaseModel] = {}  # validated once here, read again by the batch's plan
        rejected: InvalidInput | None = None
        for record in records_in:
            try:
                message, props = checked(parse_record(record))
            except InvalidInput as exc:
                rejected = rejected or exc
                continue
            messages.append(message)
            if props is not None:
                properties[id(message)] = props
        if messages:
            async with self._sessions() as session, session.begin():
                await session.execute(GENERIC_PLANS)
                fresh = await claim_new(session, inbox, CONSUMER, [(m.tenant_id, m.event_id) for m in messages])
                await BatchWork(session, self._clock.now()).apply(_first_fresh(messages, fresh), properties)
        if rejected is not None:
            # The good records are committed; failing now makes the runner retry the batch record by record:
            # the applied ones are already claimed (no effect), the bad one goes to the dead-letter topic.
            raise rejected

    async def _one_by_one(self, records_in: Sequence[Record]) -> None:
        messages = [parse_record(r) for r in records_in]
        async with self._sessions() as session, session.begin():
            await session.execute(GENERIC_PLANS)
            fresh = await claim_new(session, inbox, CONSUMER, [(m.tenant_id, m.event_id) for m in messages])
            work = EventWork(session, self._clock.now())
            for message in _first_fresh(messages, fresh):
                await work.apply(message)


def _first_fresh(messages: Sequence[Message], fresh: set[tuple[str, str]]) -> list[Message]:
    """The messages never applied before, in arrival order; a duplicate later in the same batch is skipped too."""
    kept = []
    for message in messages:
        key = (message.tenant_id, message.event_id)
        if key in fresh:
            fresh.discard(key)
            kept.append(message)
    return kept


def tracked_change(customer: CustomerRow, event: TrackedEvent) -> OutgoingRecord:
    """The ``event.tracked`` change a stored track event publishes (both consumer paths build it here)."""
    assert event.event is not None
    return wire_record(
        EventTracked,
        event_id=f"tracked:{event.event_id}",
        tenant_id=customer.tenant_id,
        customer_id=customer.customer_id,
        user_id=customer.user_id,
        occurred_at=event.occurred_at,
        event=event.event,
        source_event_id=event.event_id,
        properties=event.properties,
    )


def order_recorded(
    customer: CustomerRow, event: TrackedEvent, order: OrderCompletedProperties, aggregates: Aggregates
) -> OutgoingRecord:
    """The ``order.recorded`` change of a new order, with the customer's aggregates after it."""
    return wire_record(
        OrderRecorded,
        event_id=f"order.recorded:{event.event_id}",
        tenant_id=customer.tenant_id,
        customer_id=customer.customer_id,
        user_id=customer.user_id,
        occurred_at=event.occurred_at,
        order_id=order.order_id,
        amount=order.amount,
        currency=order.currency.upper(),
        orders_count=aggregates.orders_count,
        revenue_total=aggregates.revenue_total,
    )


def stage_change(
    customer: CustomerRow,
    previous_stage: str,
    changes: list[Change],
    cause: str,
    source: TrackedEvent | None,
    now: datetime,
) -> LifecycleStageChanged | None:
    """The stage change to publish once ``restage`` moved the customer (None if the stage stayed)."""
    if customer.lifecycle_stage == previous_stage:
        return None
    return LifecycleStageChanged(
        event_id=f"stage:{customer.customer_id}:{customer.lifecycle_stage}:{cause}",
        tenant_id=customer.tenant_id,
        customer_id=customer.customer_id,
        user_id=customer.user_id,
        occurred_at=source.occurred_at if source else now,
        from_stage=previous_stage,  # type: ignore[arg-type]
        to_stage=customer.lifecycle_stage,  # type: ignore[arg-type]
        orders_count=customer.orders_count,
        reason=_stage_reason(source, changes),
    )


class EventWork:
    """One batch's unit of work: settings and segments are loaded once per tenant per batch."""

    def __init__(self, session: AsyncSession, now: datetime) -> None:
        self.session = session
        self.now = now
        self._settings: dict[str, ProfileSettings] = {}
        self._segments: dict[str, SegmentEvaluator] = {}

    async def settings(self, tenant_id: str) -> ProfileSettings:
        if tenant_id not in self._settings:
            self._settings[tenant_id] = await repo.tenant_settings(self.session, tenant_id)
        return self._settings[tenant_id]

    async def segments(self, tenant_id: str) -> SegmentEvaluator:
        if tenant_id not in self._segments:
            self._segments[tenant_id] = await SegmentEvaluator.load(self.session, tenant_id)
        return self._segments[tenant_id]

    async def apply(self, message: TrackedEvent | TouchResult) -> None:
        """Apply one fresh message (its inbox claim already made)."""
        if isinstance(message, TouchResult):
            await self.record_touch(message)
        else:
            await self.apply_event(message)

    async def apply_event(self, event: TrackedEvent) -> None:
        settings = await self.settings(event.tenant_id)
        if event.customer_id is not None:
            resolution = await self._known_customer(event)
            if resolution is None:
                logger.info("event %s names customer %s, who is gone: skipped", event.event_id, event.customer_id)
                return
        else:
            identifiers = identifiers_of(event, settings.default_country)
            resolution = await resolve(self.session, event.tenant_id, identifiers, event.received_at)
        customer = resolution.customer
        # a new or merged customer is always published; any other only if this event changes its snapshot
        before = None if resolution.created or resolution.merged_ids else before_event(customer)
        changes: list[Change] = []
        if resolution.merged_ids:
            changes.append(
                CustomersMerged(
                    event_id=f"merged:{customer.customer_id}:{event.event_id}",
                    tenant_id=event.tenant_id,
                    customer_id=customer.customer_id,
                    user_id=customer.user_id,
                    occurred_at=event.occurred_at,
                    merged_customer_ids=resolution.merged_ids,
                )
            )
        value_changed = bool(resolution.merged_ids)
        counted = False
        if resolution.merged_ids:  # the survivor now holds the merged customers' orders and events
            await repo.refresh_aggregates(self.session, customer)
            customer.stored_value_balance = await repo.stored_value_balance(
                self.session, customer.tenant_id, customer.customer_id
            )
        if event.type == "identify":
            changes += apply.apply_identify(customer, event, settings.default_country)
        elif event.type in ("page", "screen"):
            apply.touch_engagement(customer, event.occurred_at)
        elif event.type == "track" and event.event:
            tracked, counted = await self._apply_track(customer, event)
            changes += tracked
            value_changed = value_changed or event.event in ORDER_EVENTS
        await self.finish(
            customer, changes, event.event_id, value_changed=value_changed, source=event, before=before, counted=counted
        )

    async def _known_customer(self, event: TrackedEvent) -> Resolution | None:
        """The platform's own events name our customer id: no identity resolution, never a merge."""
        assert event.customer_id is not None
        found = await repo.find_customer(self.session, event.tenant_id, event.customer_id)
        if found is None:
            return None
        customer = await repo.lock_customer(self.session, event.tenant_id, found.customer_id)
        return Resolution(customer) if customer is not None else None

    async def _apply_track(self, customer: CustomerRow, event: TrackedEvent) -> tuple[list[Change], bool]:
        """The event's changes, and whether a segment's event rule counts it (stored now and matching)."""
        assert event.event is not None
        counted = await repo.add_event(self.session, customer, event) and await self._counted(event)
        changes: list[Change] = [tracked_change(customer, event)]
        if event.event == SemanticEvent.ORDER_COMPLETED:
            changes += await self._order(customer, event)
        elif event.event == SemanticEvent.ORDER_REFUNDED:
            await self._refund(customer, event)
        elif event.event in STORED_VALUE_EVENTS:
            apply.validate_stored_value(event)
            customer.stored_value_balance = await repo.stored_value_balance(
                self.session, customer.tenant_id, customer.customer_id
            )
        changes += apply.apply_track(customer, event)
        return changes, counted

    async def _counted(self, event: TrackedEvent) -> bool:
        """Whether an event rule of the tenant's segments counts this stored event (as the batch path decides)."""
        evaluator = await self.segments(event.tenant_id)
        for rule in evaluator.event_rules.values():
            if rule.event != event.event:
                continue
            if rule.where:
                if await bulk.matching_events(self.session, event.tenant_id, [event.event_id], rule, self.now):
                    return True
            elif not rule.within_days or event.occurred_at >= self.now - timedelta(days=rule.within_days):
                return True
        return False

    async def _order(self, customer: CustomerRow, event: TrackedEvent) -> list[Change]:
        try:
            order = OrderCompletedProperties.model_validate(event.properties)
        except ValidationError as exc:
            raise InvalidInput(f"Order Completed properties: {exc}", field="properties") from exc
        added = await repo.add_order(
            self.session,
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
        if not added:
            return []
        await repo.apply_refunds(self.session, event.tenant_id, order.order_id)
        aggregates = await repo.refresh_aggregates(self.session, customer)
        return [order_recorded(customer, event, order, aggregates)]

    async def _refund(self, customer: CustomerRow, event: TrackedEvent) -> None:
        try:
            refund = OrderRefundedProperties.model_validate(event.properties)
        except ValidationError as exc:
            raise InvalidInput(f"Order Refunded properties: {exc}", field="properties") from exc
        await repo.add_refund(self.session, event, refund)
        owner = await repo.apply_refunds(self.session, event.tenant_id, refund.order_id)
        if owner is not None and owner != customer.customer_id:
            other = await repo.lock_customer(self.session, event.tenant_id, owner)
            if other is not None:
                before = before_event(other)
                await repo.refresh_aggregates(self.session, other)
                await self.finish(other, [], event.event_id, value_changed=True, source=event, before=before)
        await repo.refresh_aggregates(self.session, customer)

    async def finish(
        self,
        customer: CustomerRow,
        changes: list[Change],
        cause: str,
        *,
        value_changed: bool,
        source: TrackedEvent | None = None,
        before: Before | None = None,
        counted: bool = False,
    ) -> None:
        """Stage, value, segments; publish every change, and the new snapshot at the next version unless it equals
        ``before``'s (an event that changed nothing others see, such as a product view, publishes no
        ``customer.updated``); ``updated_at`` moves only if the row changed (``snapshots.settle``).

        Segments are evaluated on change: when the snapshot moved, when a segment's event rule counts the event
        (``counted``), or when there is no ``before`` (a new or merged customer, an operator's change, a sweep).
        Otherwise nothing a rule reads has changed, so no membership can (time-window rules are the segment
        sweep's; the value refresh re-syncs what its scores move)."""
        settings = await self.settings(customer.tenant_id)
        previous_stage = customer.lifecycle_stage
        if value_changed:
            await refresh_value(self.session, customer, settings, self.now)
        repo.restage(customer, settings, self.now)
        moved = stage_change(customer, previous_stage, changes, cause, source, self.now)
        if moved is not None:
            changes.append(moved)
        snapshot, changed, _ = settle(customer, before, self.now)
        if before is None or changed or counted:
            evaluator = await self.segments(customer.tenant_id)
            snapshot = snapshot or snapshot_of(customer)
            changes += await evaluator.reevaluate(self.session, customer, snapshot, self.now, cause)
        await self.session.flush()
        snapshots = [updated_record(customer, snapshot, cause, self.now)] if changed and snapshot else []
        await enqueue(self.session, outbox, [*records(changes), *snapshots], packed=True)

    async def record_touch(self, result: TouchResult) -> None:
        owner = await repo.add_touch(
            self.session,
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
        if owner is None:
            logger.info("touch result %s names customer %s, who is gone: dropped", result.event_id, result.customer_id)
        elif result.status in ENGAGED:
            customer = await repo.lock_customer(self.session, result.tenant_id, owner)
            if customer is not None:
                apply.touch_engagement(customer, result.occurred_at)
