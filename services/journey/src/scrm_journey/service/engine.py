"""One unit of work of the journey engine: enter customers, resume and end instances, inside the caller's
transaction. Instances are locked (``FOR UPDATE``) before they move, so a consumer and a scheduler replica never
move the same instance at once; every change is queued in ``Writes`` and flushed together."""

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import CustomerSnapshot
from scrm_contracts.rules import evaluate
from scrm_journey.adapters.definitions import LiveJourney, definition
from scrm_journey.adapters.orm import instances, snapshots
from scrm_journey.adapters.writes import Writes, changed_row, instance_of
from scrm_journey.domain.engine import Instance, Runner, Signal, Step, Transition, goal_or_exit, within_goal_window
from scrm_journey.domain.triggers import may_reenter

RUNNING = ("active", "waiting")
_EMPTY_FACTS = CustomerSnapshot().model_dump(mode="json")


class JourneyEngine:
    def __init__(self, session: AsyncSession, now: datetime) -> None:
        self.session = session
        self.now = now
        self.writes = Writes(now)
        self._facts: dict[tuple[str, str], dict[str, Any]] = {}

    async def load_facts(self, tenant_id: str, customer_ids: Iterable[str]) -> None:
        wanted = [c for c in set(customer_ids) if (tenant_id, c) not in self._facts]
        if not wanted:
            return
        rows = await self.session.execute(
            select(snapshots.c.customer_id, snapshots.c.user_id, snapshots.c.snapshot).where(
                snapshots.c.tenant_id == tenant_id, snapshots.c.customer_id.in_(wanted)
            )
        )
        for row in rows:
            self._facts[(tenant_id, row.customer_id)] = {**row.snapshot, "user_id": row.user_id}
        for customer_id in wanted:
            self._facts.setdefault((tenant_id, customer_id), _EMPTY_FACTS)

    async def facts(self, tenant_id: str, customer_id: str) -> dict[str, Any]:
        await self.load_facts(tenant_id, [customer_id])
        return self._facts[(tenant_id, customer_id)]

    def forget_facts(self, tenant_id: str, customer_id: str) -> None:
        self._facts.pop((tenant_id, customer_id), None)

    async def enter(
        self, tenant_id: str, customer_id: str, user_id: str | None, journey: LiveJourney, facts: dict[str, Any]
    ) -> Instance | None:
        """Enter the customer if the entry rule, the re-entry policy and the concurrency cap allow it."""
        defn = journey.definition
        if defn.entry_rule is not None and not evaluate(defn.entry_rule, facts, self.now):
            return None
        history = (
            await self.session.execute(
                select(func.max(instances.c.entered_at), func.count().filter(instances.c.state.in_(RUNNING))).where(
                    instances.c.tenant_id == tenant_id,
                    instances.c.journey_id == journey.journey_id,
                    instances.c.customer_id == customer_id,
                )
            )
        ).one()
        last_entered, running = history
        if not may_reenter(defn.reentry, last_entered, self.now) or running >= defn.max_concurrent:
            return None
        instance = Instance(
            instance_id=f"ji_{secrets.token_hex(10)}",
            tenant_id=tenant_id,
            customer_id=customer_id,
            journey_id=journey.journey_id,
            journey_version=journey.version,
            entered_at=self.now,
            user_id=user_id,
        )
        step = Runner(defn, instance, facts, self.now).start()
        self.writes.record(instance, step, new=True)
        return instance

    async def running(self, tenant_id: str, customer_ids: Sequence[str]) -> list[Instance]:
        """The customers' running instances, locked for this transaction."""
        result = await self.session.execute(
            select(instances)
            .where(
                instances.c.tenant_id == tenant_id,
                instances.c.customer_id.in_(list(customer_ids)),
                instances.c.state.in_(RUNNING),
            )
            .order_by(instances.c.instance_id)
            .with_for_update()
        )
        return [instance_of(row) for row in result]

    async def finished_without_goal(self, tenant_id: str, customer_id: str) -> list[Instance]:
        """Completed instances that may still convert (a goal counts within its window after the path ended)."""
        result = await self.session.execute(
            select(instances)
            .where(
                instances.c.tenant_id == tenant_id,
                instances.c.customer_id == customer_id,
                instances.c.state == "completed",
                instances.c.goal_at.is_(None),
            )
            .order_by(instances.c.instance_id)
            .with_for_update()
        )
        return [instance_of(row) for row in result]

    async def resume(self, instance: Instance, signal: Signal, facts: dict[str, Any]) -> bool:
        """Move a waiting instance on; False when the signal does not concern the node it waits at."""
        defn = await definition(self.session, instance.tenant_id, instance.journey_id, instance.journey_version)
        if defn is None:
            return False
        step = Runner(defn, instance, facts, self.now).resume(signal)
        if not step.transitions:
            return False
        self.writes.record(instance, step)
        return True

    async def on_event(self, instance: Instance, event: str, properties: dict[str, Any], at: datetime) -> str | None:
        """Goal and exit rules of a running instance; returns what happened."""
        defn = await definition(self.session, instance.tenant_id, instance.journey_id, instance.journey_version)
        if defn is None:
            return None
        verdict = goal_or_exit(defn, instance, event, properties)
        if verdict == "goal" and within_goal_window(defn, instance, at):
            instance.goal_at = at
            assert defn.goal is not None
            if defn.goal.exit_on_goal and instance.state in RUNNING:
                self.writes.record(instance, Runner(defn, instance, {}, self.now).finish("converted", "goal reached"))
            else:
                self.writes.changed[instance.instance_id] = changed_row(instance, self.now)
            return "goal"
        if verdict == "exit" and instance.state in RUNNING:
            self.writes.record(instance, Runner(defn, instance, {}, self.now).finish("exited", f"exit on {event}"))
            return "exit"
        return None

    def end(self, instance: Instance, state: str, outcome: str) -> None:
        """End an instance from outside (archive, merge)."""
        instance.state = state
        self.writes.record(instance, Step(transitions=[Transition(instance.current_node or "end", outcome, self.now)]))

    async def flush(self) -> None:
        await self.writes.flush(self.session)
