"""The scheduler: wakes due timers in batches. Any number of replicas run it side by side.

A batch claims due timer rows with ``FOR UPDATE SKIP LOCKED``, then locks their instances with ``SKIP LOCKED``
too (an instance a consumer is moving right now waits for the next tick instead of deadlocking). A timer is
deleted in the same transaction that moves its instance on, so each timer fires exactly once.
"""

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_journey.adapters.definitions import LiveJourney, live_journeys
from scrm_journey.adapters.orm import instances, timers
from scrm_journey.adapters.writes import any_array, instance_of
from scrm_journey.domain.engine import TimerFired
from scrm_journey.service.customers import one_second_after, schedule_entries
from scrm_journey.service.engine import JourneyEngine, by_tenant
from scrm_kit.clock import Clock
from scrm_kit.errors import RetryableError


class TimerSweep:
    """One scheduler tick: wake up to ``batch_size`` due timers; returns how many fired."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        batch_size: int = 500,
        tenant_id: str | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.batch_size = batch_size
        self._tenant_id = tenant_id  # None: every tenant (a test confines it to its own)
        self._on_commit = on_commit  # wakes the outbox relay

    async def __call__(self) -> int:
        try:
            async with self._sessions() as session, session.begin():
                fired = await self._tick(JourneyEngine(session, self._clock.now()))
        except DBAPIError as exc:
            raise RetryableError(f"timer batch failed: {exc.orig}") from exc
        if fired and self._on_commit is not None:
            self._on_commit()
        return fired

    async def _tick(self, engine: JourneyEngine) -> int:
        query = select(timers).where(timers.c.due_at <= engine.now, ~timers.c.paused)
        if self._tenant_id is not None:
            query = query.where(timers.c.tenant_id == self._tenant_id)
        due = (
            await engine.session.execute(
                query.order_by(timers.c.due_at).limit(self.batch_size).with_for_update(skip_locked=True)
            )
        ).all()
        if not due:
            return 0
        fired = await self._steps(engine, [t for t in due if t.kind == "step"])
        fired += await self._entries(engine, [t for t in due if t.kind == "entry"])
        await engine.flush()
        return fired

    async def _steps(self, engine: JourneyEngine, due: list[Any]) -> int:
        if not due:
            return 0
        rows = (
            await engine.session.execute(
                select(instances)
                .where(instances.c.instance_id == any_array([t.instance_id for t in due]))
                .with_for_update(skip_locked=True)
            )
        ).all()
        locked = {row.instance_id: instance_of(row) for row in rows}
        fired = [t for t in due if t.instance_id in locked]
        busy = await _existing(engine, [t.instance_id for t in due if t.instance_id not in locked])
        orphans = [t.timer_id for t in due if t.instance_id not in locked and t.instance_id not in busy]
        for tenant_id, customers in by_tenant((i.tenant_id, i.customer_id) for i in locked.values()).items():
            await engine.load_facts(tenant_id, customers)
        for timer_id in [t.timer_id for t in fired] + orphans:
            engine.writes.clear_timer(timer_id)  # one delete at flush; a new wait sets it again instead
        for timer in fired:
            instance = locked[timer.instance_id]
            facts = await engine.facts(instance.tenant_id, instance.customer_id)
            await engine.resume(instance, TimerFired(), facts)
        return len(fired)

    async def _entries(self, engine: JourneyEngine, due: list[Any]) -> int:
        if not due:
            return 0
        live: dict[str, dict[str, LiveJourney]] = {}
        await engine.session.execute(delete(timers).where(timers.c.timer_id == any_array([t.timer_id for t in due])))
        for tenant_id, customers in by_tenant((t.tenant_id, t.customer_id) for t in due).items():
            await engine.load_facts(tenant_id, customers)  # one query each per tenant, not per timer
            await engine.load_customers(tenant_id, customers)
        for timer in due:
            if timer.tenant_id not in live:
                live[timer.tenant_id] = {j.journey_id: j for j in await live_journeys(engine.session, timer.tenant_id)}
            journey = live[timer.tenant_id].get(timer.journey_id)
            if journey is None:
                continue  # archived or unpublished since: the timer simply goes
            facts = await engine.facts(timer.tenant_id, timer.customer_id)
            user_id = facts.get("user_id")
            await engine.enter(timer.tenant_id, timer.customer_id, user_id, journey, facts)
            schedule_entries(
                engine, timer.tenant_id, timer.customer_id, facts, [journey], one_second_after(timer.due_at)
            )
        return len(due)  # the tick flushes once: one insert per table and one outbox enqueue for the batch


async def _existing(engine: JourneyEngine, instance_ids: list[str]) -> set[str]:
    """Which of these instances still exist (locked by someone else right now) rather than being gone."""
    if not instance_ids:
        return set()
    found = await engine.session.execute(
        select(instances.c.instance_id).where(instances.c.instance_id == any_array(instance_ids))
    )
    return set(found.scalars())
