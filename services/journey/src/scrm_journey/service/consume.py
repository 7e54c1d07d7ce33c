"""Run journeys from ``profile.changes.v1`` and ``touches.results.v1``: keep customer snapshots, enter customers,
move waiting instances on events and staff task outcomes, apply goals, exits, merges and erasure."""

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import (
    CustomerErased,
    CustomersMerged,
    CustomerUpdated,
    EventTracked,
    ProfileChange,
    Topic,
    TouchResult,
    parse_profile_change,
)
from scrm_journey.adapters.definitions import LiveJourney, TenantJourneys, tenant_journeys
from scrm_journey.adapters.orm import inbox
from scrm_journey.domain.engine import EventSeen, Instance, TaskOutcome
from scrm_journey.domain.triggers import matches, overlay
from scrm_journey.service.customers import apply_snapshots, erase, merge, schedule_entries
from scrm_journey.service.engine import JourneyEngine, by_tenant
from scrm_kit.clock import Clock
from scrm_kit.errors import InvalidInput, RetryableError
from scrm_kit.kafka import Record
from scrm_kit.outbox import claim_new

CONSUMER = "journey"
Message: TypeAlias = ProfileChange | TouchResult
RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


def parse_record(record: Record) -> Message | None:
    if record.value is None:
        raise InvalidInput("record has no value", field="value")
    try:
        if record.topic == Topic.TOUCH_RESULTS.value:
            return TouchResult.from_wire(record.value)
        return parse_profile_change(record.value)
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"malformed {record.topic} record: {exc}", field="value") from exc


def _is_retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES or "deadlock" in str(exc).lower()


class JourneyConsumer:
    """Applies each batch in one transaction; ``on_commit`` runs after it committed (wakes the outbox relay)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._on_commit = on_commit

    async def __call__(self, records: Sequence[Record]) -> None:
        messages: list[Message] = [m for m in (parse_record(r) for r in records) if m is not None]
        if not messages:
            return
        try:
            async with self._sessions() as session, session.begin():
                fresh = await claim_new(session, inbox, CONSUMER, [(m.tenant_id, m.event_id) for m in messages])
                todo: list[Message] = []
                for message in messages:
                    key = (message.tenant_id, message.event_id)
                    if key in fresh:
                        fresh.discard(key)
                        todo.append(message)
                await ChangeHandler(JourneyEngine(session, self._clock.now())).apply(todo)
        except DBAPIError as exc:
            if _is_retryable(exc):
                raise RetryableError(f"database conflict, retrying: {exc.orig}") from exc
            raise
        if self._on_commit is not None:
            self._on_commit()


class ChangeHandler:
    """Applies one batch of fresh messages in one transaction."""

    def __init__(self, engine: JourneyEngine) -> None:
        self.engine = engine
        self._journeys: dict[str, TenantJourneys] = {}

    async def journeys(self, tenant_id: str) -> TenantJourneys:
        if tenant_id not in self._journeys:
            self._journeys[tenant_id] = await tenant_journeys(self.engine.session, tenant_id)
        return self._journeys[tenant_id]

    async def live(self, tenant_id: str) -> list[LiveJourney]:
        return (await self.journeys(tenant_id)).live

    async def move(self, instance: Instance, signal: EventSeen | TaskOutcome, facts: dict[str, Any]) -> None:
        """Move a waiting instance on; while its journey is paused, hold the signal for the resume instead."""
        if instance.journey_id in (await self.journeys(instance.tenant_id)).paused:
            await self.engine.hold(instance, signal)
        else:
            await self.engine.resume(instance, signal, facts)

    async def apply(self, messages: Sequence[Message]) -> None:
        # Snapshots first: the batch's changes then see the newest state profile published.
        updates = [m for m in messages if isinstance(m, CustomerUpdated)]
        for update_ in await apply_snapshots(self.engine, updates):
            facts = update_.snapshot.model_dump(mode="json")
            live = await self.live(update_.tenant_id)
            schedule_entries(self.engine, update_.tenant_id, update_.customer_id, facts, live)
        await self.preload(messages)
        for message in messages:
            if isinstance(message, TouchResult):
                await self.task_outcome(message)
            elif isinstance(message, CustomersMerged):
                await merge(self.engine, message)
            elif isinstance(message, CustomerErased):
                await erase(self.engine, message)
            elif not isinstance(message, CustomerUpdated):
                if isinstance(message, EventTracked):
                    await self.event(message)
                await self.triggers(message)
        await self.engine.flush()

    async def preload(self, messages: Sequence[Message]) -> None:
        """One query each for the batch's snapshots, open instances and entry history, per tenant."""
        customers = {(m.tenant_id, m.customer_id) for m in messages if not isinstance(m, CustomerUpdated)}
        for tenant_id, customer_ids in by_tenant(customers).items():
            await self.engine.load_facts(tenant_id, customer_ids)
            await self.engine.load_customers(tenant_id, customer_ids)

    async def event(self, change: EventTracked) -> None:
        """Goals, exit rules and wait-for-event nodes of the customer's running instances."""
        engine = self.engine
        facts = await engine.facts(change.tenant_id, change.customer_id)
        finished = await engine.finished_without_goal(change.tenant_id, change.customer_id)
        for instance in await engine.running(change.tenant_id, change.customer_id):
            verdict = await engine.on_event(instance, change.event, change.properties, change.occurred_at)
            if verdict == "exit" or instance.state not in ("waiting",):
                continue
            await self.move(instance, EventSeen(change.event, change.properties), facts)
        for instance in finished:
            await engine.on_event(instance, change.event, change.properties, change.occurred_at)

    async def triggers(self, change: ProfileChange) -> None:
        engine = self.engine
        for journey in await self.live(change.tenant_id):
            if matches(journey.definition, change):
                facts = overlay(await engine.facts(change.tenant_id, change.customer_id), change)
                await engine.enter(change.tenant_id, change.customer_id, change.user_id, journey, facts)

    async def task_outcome(self, result: TouchResult) -> None:
        """A staff task was completed or expired: move the instance waiting on it."""
        if result.status not in ("completed", "expired") or result.touch_key.count(":") < 2:
            return
        instance_id = result.touch_key.rsplit(":", 2)[0]
        running = await self.engine.running(result.tenant_id, result.customer_id)
        instance = next((i for i in running if i.instance_id == instance_id and i.state == "waiting"), None)
        if instance is None:
            return
        facts = await self.engine.facts(instance.tenant_id, instance.customer_id)
        await self.move(instance, TaskOutcome(result.touch_key, result.status.value), facts)
