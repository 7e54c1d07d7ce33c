"""Apply a batch of fresh messages set-based, with exactly the effects of applying them one by one.

Per tenant: resolve every customer with one identity lookup (``batch_plan``), lock the customers in id order in one
statement, store events, orders, refunds and touches with one ``INSERT ... SELECT FROM unnest`` each, then replay
the events in arrival order in memory: the same rules (``apply``, aggregates, stage, value, segments) see the
customer as it stood after each event, so every change record, every ``customer.updated`` snapshot and every
deterministic event id is the one the event by event path publishes. Customers, refunded amounts and segment
memberships are written back once; the outbox gets the whole batch in one ``enqueue``. Events a merge or a shared
order id ties to other customers go through the event by event path (``EventWork``) after the rest.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import (
    IdentifyTraits,
    OrderCompletedProperties,
    OrderRefundedProperties,
    SemanticEvent,
    TouchResult,
    TrackedEvent,
)
from scrm_contracts.semantic import (
    MembershipRenewedProperties,
    MembershipStartedProperties,
    StoredValueProperties,
    TagsChangedProperties,
    WeComContactAddedProperties,
    WeComContactRemovedProperties,
)
from scrm_kit.errors import InvalidInput
from scrm_kit.outbox import OutgoingRecord, enqueue
from scrm_profile.adapters import bulk
from scrm_profile.adapters import repository as repo
from scrm_profile.adapters.bulk import CUSTOMER_COLUMNS
from scrm_profile.adapters.identities import new_customer_id
from scrm_profile.adapters.orm import CustomerRow, outbox
from scrm_profile.domain.clv_summary import summarise_orders
from scrm_profile.domain.customers import Aggregates, OrderFact, aggregate
from scrm_profile.service import apply
from scrm_profile.service.batch_plan import NEW, Item, Message, NewCustomer, Plan, plan_batch
from scrm_profile.service.consume import (
    ENGAGED,
    ORDER_EVENTS,
    STORED_VALUE_EVENTS,
    EventWork,
    order_recorded,
    stage_change,
    tracked_change,
)
from scrm_profile.service.snapshots import (
    Before,
    Change,
    before_event,
    records,
    settle,
    snapshot_of,
    updated_record,
)
from scrm_profile.service.valuation import clv_params, score, set_value

PROPERTIES: dict[str, type[BaseModel]] = {
    SemanticEvent.ORDER_COMPLETED: OrderCompletedProperties,
    SemanticEvent.ORDER_REFUNDED: OrderRefundedProperties,
    SemanticEvent.STORED_VALUE_TOPPED_UP: StoredValueProperties,
    SemanticEvent.STORED_VALUE_SPENT: StoredValueProperties,
    SemanticEvent.MEMBERSHIP_STARTED: MembershipStartedProperties,
    SemanticEvent.MEMBERSHIP_RENEWED: MembershipRenewedProperties,
    SemanticEvent.WECOM_CONTACT_ADDED: WeComContactAddedProperties,
    SemanticEvent.WECOM_CONTACT_REMOVED: WeComContactRemovedProperties,
    SemanticEvent.TAGS_CHANGED: TagsChangedProperties,
}
ZERO = Decimal("0")
CENT = Decimal("0.01")


def checked(message: Message) -> tuple[Message, BaseModel | None]:
    """The message and its validated properties (None if its kind has none) if every part the handlers validate
    is valid; InvalidInput otherwise (before any write, so a bad record is split off and dead-lettered while the
    rest of the batch is applied)."""
    if isinstance(message, TouchResult):
        return message, None
    try:
        if message.type == "identify":
            IdentifyTraits.model_validate(message.traits)
        elif message.type == "track" and message.event in PROPERTIES:
            return message, PROPERTIES[message.event].model_validate(message.properties)
    except ValidationError as exc:
        raise InvalidInput(f"{message.event or message.type}: {exc}", field="properties") from exc
    return message, None


def refunded(amount: Decimal, refunds: Sequence[Decimal | None]) -> Decimal:
    """An order's refunded amount from its refunds (as ``repository.apply_refunds`` computes it)."""
    if not refunds:
        return min(amount, ZERO)
    if any(r is None for r in refunds):
        return amount
    return min(amount, sum((r for r in refunds if r is not None), ZERO))


class BatchWork:
    """One batch's unit of work, set-based per tenant; the event by event path for what it sets aside."""

    def __init__(self, session: AsyncSession, now: datetime) -> None:
        self.session = session
        self.now = now
        self.events = EventWork(session, now)

    async def apply(self, messages: Sequence[Message], properties: Mapping[int, BaseModel] | None = None) -> None:
        """Apply fresh messages; ``properties`` holds, by ``id(message)``, properties ``checked`` validated."""
        by_tenant: dict[str, list[Item]] = defaultdict(list)
        for index, message in enumerate(messages):
            order = (properties or {}).get(id(message))
            if not isinstance(order, OrderCompletedProperties | OrderRefundedProperties):
                order = None
            by_tenant[message.tenant_id].append(Item(index, message, order=order))
        deferred: list[Item] = []
        for tenant_id, items in sorted(by_tenant.items()):  # one lock order for every replica
            deferred += await TenantBatch(self, tenant_id).apply(items)
        for item in sorted(deferred, key=lambda i: i.index):
            await self.events.apply(item.message)


class TenantBatch:
    def __init__(self, work: BatchWork, tenant_id: str) -> None:
        self.session = work.session
        self.now = work.now
        self.work = work
        self.tenant_id = tenant_id
        self.states: dict[str, SimpleNamespace] = {}
        self.outgoing: list[OutgoingRecord] = []
        self.members: dict[str, set[str]] = defaultdict(set)
        self.rule_counts: dict[str, dict[str, int]] = {}
        self.moved_members: set[tuple[str, str]] = set()
        self.replayed: set[str] = set()  # customers with an event replayed: a new one's first event creates it
        self.dirty: set[str] = set()  # customers whose row an event changed: the ones written back

    async def apply(self, items: Sequence[Item]) -> list[Item]:
        """Apply what can go set-based; returns the items left for the event by event path."""
        self.settings = await self.work.events.settings(self.tenant_id)
        self.segments = await self.work.events.segments(self.tenant_id)
        plan = await plan_batch(self.session, self.tenant_id, items, self.settings.default_country)
        await self._load(plan)
        if plan.items:
            await self._history(plan)
            await self._store(plan)
            await self._ledger(plan.items)
            await self._value(plan.items)
            await self._counts(plan.items)
            for item in plan.items:
                self._replay(item)
            await self._write(plan)
        return plan.deferred

    # -- loading ---------------------------------------------------------------------------------------------

    async def _load(self, plan: Plan) -> None:
        """Lock the customers (events of one that vanished since the lookup go event by event) and create the
        new ones in memory."""
        tracked = {i.key for i in plan.items if isinstance(i.message, TrackedEvent) and i.key is not None}
        existing = {k for k in tracked if not k.startswith(NEW)}
        engaged = {
            i.key
            for i in plan.items
            if isinstance(i.message, TouchResult) and i.message.status in ENGAGED and i.key is not None
        }
        self.states = await bulk.lock_customers(self.session, self.tenant_id, existing | engaged)
        if existing - self.states.keys():
            plan.defer(existing - self.states.keys())
        self.stored_keys = set(self.states)
        for key, new in plan.new.items():
            self.states[key] = _new_customer(self.tenant_id, new)

    async def _history(self, plan: Plan) -> None:
        """What the replay needs from before this batch: the customers' orders and refunds, stored-value sums,
        segment memberships and event-rule counts (one statement each)."""
        session, tenant = self.session, self.tenant_id
        ledger_keys = {i.key for i in plan.items if i.order is not None and i.key in self.stored_keys}
        self.touched_orders = {i.order.order_id for i in plan.items if i.order is not None}
        self.facts: dict[str, dict[str, OrderFact]] = defaultdict(dict)
        self.order_home: dict[str, str] = {}
        for customer_id, order_id, amount, refunded_amount, at in await bulk.order_facts(session, tenant, ledger_keys):
            self.facts[customer_id][order_id] = OrderFact(amount, refunded_amount, at)
            self.order_home[order_id] = customer_id
        self.refunds = await bulk.refunds_of(session, tenant, self.touched_orders)
        value_keys = {
            i.key
            for i in plan.items
            if isinstance(i.message, TrackedEvent) and i.message.event in STORED_VALUE_EVENTS and i.key is not None
        }
        self.balances = await bulk.stored_value_balances(session, tenant, value_keys & self.stored_keys)
        if self.segments.segments:  # counts before this batch's events are stored
            touched = {i.key for i in plan.items if isinstance(i.message, TrackedEvent) and i.key is not None}
            ids = [self.states[k].customer_id for k in touched & self.stored_keys]
            self.members = await bulk.segment_members(session, tenant, ids)
            self.rule_counts = {
                rule_key: await bulk.event_counts(session, tenant, ids, rule, self.now)
                for rule_key, rule in self.segments.event_rules.items()
            }

    async def _store(self, plan: Plan) -> None:
        """Identities, events, orders, refunds and touches: one insert each; which rows were new comes back."""
        session, tenant = self.session, self.tenant_id
        identities = [(kind, value, self.states[key].customer_id) for kind, value, key in plan.attach]
        await bulk.insert_identities(session, tenant, identities)
        events, orders, refunds, touches = [], [], [], []
        self.first_order: dict[str, str] = {}  # order id -> the event that may add it
        for item in plan.items:
            message = item.message
            if isinstance(message, TouchResult):
                if item.key is not None:  # a touch of a customer who is gone is dropped
                    touches.append(_touch_row(message, item.key))
                continue
            if item.key is None or message.type != "track" or not message.event:
                continue
            customer_id = self.states[item.key].customer_id
            events.append((message.event_id, customer_id, message.event, message.occurred_at, message.properties))
            if isinstance(item.order, OrderCompletedProperties) and item.order.order_id not in self.first_order:
                self.first_order[item.order.order_id] = message.event_id
                o = item.order
                orders.append(
                    (o.order_id, customer_id, o.amount, o.currency.upper(), message.occurred_at, message.event_id)
                )
            elif isinstance(item.order, OrderRefundedProperties):
                refunds.append((message.event_id, item.order.order_id, item.order.total, message.occurred_at))
        self.inserted_events = await bulk.insert_events(session, tenant, events)
        self.stored_events = {e[0]: (e[2], e[3]) for e in events}  # event id -> (name, occurred_at)
        self.inserted_orders = await bulk.insert_orders(session, tenant, orders)
        self.inserted_refunds = await bulk.insert_refunds(session, tenant, refunds)
        await bulk.insert_touches(session, touches)

    async def _counts(self, items: Sequence[Item]) -> None:
        """Which of the stored events each segment event rule counts: by name and window in memory, and by
        ``rules_sql``'s own JSONB containment in PostgreSQL for a rule with property filters."""
        self.rule_matches: dict[str, set[str]] = {}
        if self.segments.segments:
            for rule_key, rule in self.segments.event_rules.items():
                if rule.where:
                    self.rule_matches[rule_key] = await bulk.matching_events(
                        self.session, self.tenant_id, self.inserted_events, rule, self.now
                    )
                    continue
                since = self.now - timedelta(days=rule.within_days) if rule.within_days else None
                self.rule_matches[rule_key] = {
                    event_id
                    for event_id in self.inserted_events
                    for name, at in [self.stored_events[event_id]]
                    if name == rule.event and (since is None or at >= since)
                }

    # -- replay ----------------------------------------------------------------------------------------------

    async def _ledger(self, items: Sequence[Item]) -> None:
        """Orders and refunds in arrival order: each order or refund event's aggregates, as it saw them."""
        self.aggregates: dict[int, Aggregates] = {}
        self.value_facts: dict[int, list[OrderFact]] = {}
        for item in items:
            message = item.message
            if item.key is None or not isinstance(message, TrackedEvent) or item.order is None:
                continue
            facts = self.facts[item.key]
            order_id = item.order.order_id
            if isinstance(item.order, OrderCompletedProperties):
                added = self.first_order.get(order_id) == message.event_id and order_id in self.inserted_orders
                if not added:  # an order recorded before: nothing changes, but the value is re-scored all the same
                    self.value_facts[item.index] = list(facts.values())
                    continue
                amount = self.inserted_orders[order_id]
                facts[order_id] = OrderFact(amount, refunded(amount, self.refunds[order_id]), message.occurred_at)
                self.order_home[order_id] = item.key
            else:
                if message.event_id in self.inserted_refunds:
                    self.refunds[order_id].append(self.inserted_refunds[message.event_id])
                home = self.order_home.get(order_id)
                if home is not None:  # the planner defers refunds of another customer's order
                    old = self.facts[home][order_id]
                    self.facts[home][order_id] = OrderFact(
                        old.amount, refunded(old.amount, self.refunds[order_id]), old.occurred_at
                    )
            self.aggregates[item.index] = aggregate(facts.values())
            self.value_facts[item.index] = list(facts.values())

    async def _value(self, items: Sequence[Item]) -> None:
        """CLV after each order or refund, scored for the whole batch at once with the tenant's fitted model."""
        self.params = await clv_params(self.session, self.tenant_id)
        self.scores: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}
        if self.params is None or not self.value_facts:
            return
        summary = summarise_orders({str(index): facts for index, facts in self.value_facts.items()}, self.now)
        scored = score(summary, self.params, self.settings) if len(summary) else None
        at = {int(key): n for n, key in enumerate(summary.customer_id)}
        for index in self.value_facts:
            self.scores[index] = None if index not in at or scored is None else _row(scored, at[index])

    def _replay(self, item: Item) -> None:
        message = item.message
        if item.key not in self.states:  # nobody to apply to: a platform event for a gone customer, a touch only
            return
        customer = cast(CustomerRow, self.states[item.key])
        if isinstance(message, TouchResult):
            if message.status in ENGAGED:
                engaged = customer.last_engagement_at
                apply.touch_engagement(customer, message.occurred_at)
                if customer.last_engagement_at != engaged:
                    self.dirty.add(item.key)
            return
        # as the event by event path: a customer this event creates is published, any other if its snapshot moves
        created = item.key.startswith(NEW) and item.key not in self.replayed
        self.replayed.add(item.key)
        before = None if created else before_event(customer)
        changes: list[Change] = []
        value_changed = counted = False
        if message.type == "identify":
            changes += apply.apply_identify(customer, message, self.settings.default_country)
        elif message.type in ("page", "screen"):
            apply.touch_engagement(customer, message.occurred_at)
        elif message.type == "track" and message.event:
            tracked, counted = self._track(item, customer, message)
            changes += tracked
            value_changed = message.event in ORDER_EVENTS
        self._finish(item, customer, changes, value_changed, before, counted)

    def _track(self, item: Item, customer: CustomerRow, event: TrackedEvent) -> tuple[list[Change], bool]:
        """The event's changes, and whether a segment's event rule counts it."""
        assert event.event is not None and item.key is not None
        stored = event.event_id in self.inserted_events
        counted = False
        for rule_key, matches in self.rule_matches.items():
            if stored and event.event_id in matches:
                counted = True
                self.rule_counts[rule_key][customer.customer_id] = (
                    self.rule_counts[rule_key].get(customer.customer_id, 0) + 1
                )
        changes: list[Change] = [tracked_change(customer, event)]
        aggregates = self.aggregates.get(item.index)
        if aggregates is not None:
            _set_aggregates(customer, aggregates)
        if isinstance(item.order, OrderCompletedProperties) and aggregates is not None:
            changes.append(order_recorded(customer, event, item.order, aggregates))
        elif event.event in STORED_VALUE_EVENTS:
            delta = self.inserted_events.get(event.event_id) if stored else None
            balance = self.balances.get(item.key, ZERO) + (delta if delta is not None else ZERO)
            self.balances[item.key] = balance
            customer.stored_value_balance = balance
        return changes + apply.apply_track(customer, event), counted

    def _finish(
        self,
        item: Item,
        customer: CustomerRow,
        changes: list[Change],
        value_changed: bool,
        before: Before | None,
        counted: bool,
    ) -> None:
        """``EventWork.finish`` in memory: value, stage, version, snapshot, segments (on change), records."""
        source = cast(TrackedEvent, item.message)
        cause = source.event_id
        previous_stage = customer.lifecycle_stage
        if value_changed and self.params is not None:
            set_value(customer, self.scores.get(item.index))
        repo.restage(customer, self.settings, self.now)
        moved = stage_change(customer, previous_stage, changes, cause, source, self.now)
        if moved is not None:
            changes.append(moved)
        snapshot, changed, row_changed = settle(customer, before, self.now)
        if row_changed:
            self.dirty.add(cast(str, item.key))
        if self.segments.segments and (before is None or changed or counted):
            snapshot = snapshot or snapshot_of(customer)
            counts = {k: found.get(customer.customer_id, 0) for k, found in self.rule_counts.items()}
            current = self.members[customer.customer_id]
            for segment_id, entered, change in self.segments.moves(
                customer, snapshot, self.now, cause, counts, current
            ):
                (current.add if entered else current.discard)(segment_id)
                self.moved_members.add((segment_id, customer.customer_id))
                changes.append(change)
        self.outgoing += records(changes)
        if changed and snapshot:
            self.outgoing.append(updated_record(customer, snapshot, cause, self.now))
        _as_stored(self.states[item.key])  # type: ignore[index]

    # -- writing ---------------------------------------------------------------------------------------------

    async def _write(self, plan: Plan) -> None:
        session, tenant = self.session, self.tenant_id
        touched = {i.key for i in plan.items if i.key in self.states}
        await bulk.insert_customers(session, [self.states[k] for k in touched if k.startswith(NEW)])
        # a customer whose events changed nothing (product views, known traits again) keeps its row as it is
        await bulk.update_customers(session, [self.states[k] for k in touched & self.dirty if not k.startswith(NEW)])
        # an order with no refund keeps the refunded amount it was stored with (0, or its amount if negative)
        await bulk.apply_refunds(
            session,
            tenant,
            {o for o in self.touched_orders if self.refunds.get(o) or self.inserted_orders.get(o, 0) < 0},
        )
        if self.segments.segments:
            final = [(s, c) for s, c in self.moved_members if s in self.members[c]]
            gone = [(s, c) for s, c in self.moved_members if s not in self.members[c]]
            await bulk.write_segment_members(session, tenant, final, gone, self.now)
        await enqueue(session, outbox, self.outgoing, packed=True)


def _row(scores: tuple[np.ndarray, np.ndarray, np.ndarray], at: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    purchases, alive, clv = scores
    return purchases[at : at + 1], alive[at : at + 1], clv[at : at + 1]


def _set_aggregates(customer: CustomerRow, result: Aggregates) -> None:
    customer.orders_count = result.orders_count
    customer.revenue_total = result.revenue_total
    customer.first_order_at = result.first_order_at
    customer.last_order_at = result.last_order_at
    customer.avg_interval_days = result.avg_interval_days


def _new_customer(tenant_id: str, new: NewCustomer) -> SimpleNamespace:
    """A customer as ``identities._create`` makes one."""
    ids = dict(new.identifiers)
    values: dict[str, Any] = {name: None for name, _ in CUSTOMER_COLUMNS}
    values.update(
        tenant_id=tenant_id,
        customer_id=new_customer_id(),
        user_id=ids.get("user_id"),
        anonymous_id=ids.get("anonymous_id"),
        lifecycle_stage="prospect",
        orders_count=0,
        revenue_total=ZERO,
        traits={},
        tags=[],
        wecom_staff_ids=[],
        stored_value_balance=ZERO,
        official_account_follower=False,
        sms_consent="unknown",
        email_consent="unknown",
        version=0,
        created_at=new.received_at,
        updated_at=new.received_at,
    )
    return SimpleNamespace(**values)


def _touch_row(result: TouchResult, owner: str) -> dict[str, Any]:
    return {
        "tenant_id": result.tenant_id,
        "event_id": result.event_id,
        "touch_key": result.touch_key,
        "customer_id": owner,
        "journey_id": result.journey_id,
        "channel": result.channel,
        "template_id": result.template_id,
        "status": result.status.value,
        "reason": result.reason,
        "occurred_at": result.occurred_at,
    }


def _as_stored(customer: SimpleNamespace) -> None:
    """The customer as the next event sees it: the event by event path reads the row back (``FOR UPDATE`` loads
    it afresh), so money is rounded to the column's scale, times come back in UTC, JSON objects in jsonb's key order.
    """
    customer.stored_value_balance = _cents(customer.stored_value_balance)
    for name in ("membership_started_at", "membership_expires_at", "last_engagement_at"):
        value = getattr(customer, name)
        if value is not None and value.tzinfo is not UTC:
            setattr(customer, name, value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC))
    customer.traits = _jsonb_order(customer.traits)


def _cents(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(CENT, rounding=ROUND_HALF_UP)  # numeric rounds half away from 0


def _jsonb_order(value: Any) -> Any:
    """jsonb keeps an object's keys shortest first, then in byte order."""
    if isinstance(value, dict):
        ordered = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: _jsonb_order(value[k]) for k in ordered}
    if isinstance(value, list):
        return [_jsonb_order(v) for v in value]
    return value
