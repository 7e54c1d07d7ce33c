"""One unit of work of the journey engine: enter customers, resume and end instances, inside the caller's
transaction. Instances are locked (``FOR UPDATE``) before they move, so a consumer and a scheduler replica never
move the same instance at once; every change is queued in ``Writes`` and flushed together.

A unit loads what a batch needs up front (snapshots, the customers' open instances, their entry history) and then
works in memory, so a batch of hundreds of changes costs a handful of queries and one flush."""

import secrets
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, cast, func, literal, null, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import CustomerSnapshot
from scrm_contracts.rules import evaluate
from scrm_journey.adapters.definitions import LiveJourney, definition
from scrm_journey.adapters.orm import instances, snapshots
from scrm_journey.adapters.writes import Writes, any_array, changed_row, instance_of
from scrm_journey.domain.engine import (
    EventSeen,
    Instance,
    Runner,
    Signal,
    Step,
    TaskOutcome,
    Transition,
    goal_or_exit,
    within_goal_window,
)
from scrm_journey.domain.triggers import may_reenter

RUNNING = ("active", "waiting")
_EMPTY_FACTS = CustomerSnapshot().model_dump(mode="json")
Customer = tuple[str, str]  # (tenant_id, customer_id)


class JourneyEngine:
    def __init__(self, session: AsyncSession, now: datetime) -> None:
        self.session = session
        self.now = now
        self.writes = Writes(now)
        self._facts: dict[Customer, dict[str, Any]] = {}
        self._open: dict[Customer, list[Instance]] = {}  # running, or completed and not yet converted
        self._last_entry: dict[tuple[str, str, str], datetime] = {}  # (tenant, customer, journey) -> entered_at

    async def load_facts(self, tenant_id: str, customer_ids: Iterable[str]) -> None:
        wanted = [c for c in set(customer_ids) if (tenant_id, c) not in self._facts]
        if not wanted:
            return
        rows = await self.session.execute(
            select(snapshots.c.customer_id, snapshots.c.user_id, snapshots.c.snapshot).where(
                snapshots.c.tenant_id == tenant_id, snapshots.c.customer_id == any_array(wanted)
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

    def forget(self, tenant_id: str, customer_id: str) -> None:
        """Drop what this unit holds about a customer (after a merge or an erasure rewrote it in SQL)."""
        key = (tenant_id, customer_id)
        self._facts.pop(key, None)
        self._open.pop(key, None)
        for entry in [k for k in self._last_entry if k[:2] == key]:
            del self._last_entry[entry]

    async def load_customers(self, tenant_id: str, customer_ids: Iterable[str]) -> None:
        """Lock and hold the customers' open instances and remember when they last entered each journey."""
        wanted = sorted({c for c in customer_ids if (tenant_id, c) not in self._open})
        if not wanted:
            return
        for customer_id in wanted:
            self._open[(tenant_id, customer_id)] = []
        rows = (await self.session.execute(_open_and_last_entries(tenant_id, wanted))).all()
        for row in sorted((r for r in rows if r.kind == "open"), key=lambda r: r.instance_id):
            self._open[(tenant_id, row.customer_id)].append(instance_of(row))
        for row in rows:
            if row.kind == "last":
                self._last_entry[(tenant_id, row.customer_id, row.journey_id)] = row.last_entry

    async def running(self, tenant_id: str, customer_id: str) -> list[Instance]:
        """The customer's running instances, locked for this transaction."""
        await self.load_customers(tenant_id, [customer_id])
        return [i for i in self._open[(tenant_id, customer_id)] if i.state in RUNNING]

    async def finished_without_goal(self, tenant_id: str, customer_id: str) -> list[Instance]:
        """Completed instances that may still convert (a goal counts within its window after the path ended)."""
        await self.load_customers(tenant_id, [customer_id])
        return [i for i in self._open[(tenant_id, customer_id)] if i.state == "completed" and i.goal_at is None]

    async def enter(
        self, tenant_id: str, customer_id: str, user_id: str | None, journey: LiveJourney, facts: dict[str, Any]
    ) -> Instance | None:
        """Enter the customer if the entry rule, the re-entry policy and the concurrency cap allow it."""
        defn = journey.definition
        if defn.entry_rule is not None and not evaluate(defn.entry_rule, facts, self.now):
            return None
        running = [i for i in await self.running(tenant_id, customer_id) if i.journey_id == journey.journey_id]
        history_key = (tenant_id, customer_id, journey.journey_id)
        if not may_reenter(defn.reentry, self._last_entry.get(history_key), self.now):
            return None
        if len(running) >= defn.max_concurrent:
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
        self._open[(tenant_id, customer_id)].append(instance)
        self._last_entry[history_key] = self.now
        return instance

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

    async def hold(self, instance: Instance, signal: EventSeen | TaskOutcome) -> bool:
        """The instance's journey is paused: keep the signal on the instance for when it resumes."""
        defn = await definition(self.session, instance.tenant_id, instance.journey_id, instance.journey_version)
        if defn is None:
            return False
        step = Runner(defn, instance, {}, self.now).hold(signal)
        if not step.transitions:
            return False
        self.writes.record(instance, step)
        return True

    async def on_event(self, instance: Instance, event: str, properties: dict[str, Any], at: datetime) -> str | None:
        """Goal and exit rules of an instance; returns what happened."""
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


def _open_and_last_entries(tenant_id: str, customer_ids: list[str]) -> Any:
    """One round trip: the customers' open instances, locked in id order, and when they last entered each journey
    (rows of kind ``open`` and ``last``)."""
    mine = (instances.c.tenant_id == tenant_id) & (instances.c.customer_id == any_array(customer_ids))
    unconverted = (instances.c.state == "completed") & instances.c.goal_at.is_(None)
    open_ = (
        select(instances)
        .where(mine, or_(instances.c.state.in_(RUNNING), unconverted))
        .order_by(instances.c.instance_id)
        .with_for_update()
        .cte("open_instances")
    )
    last = (
        select(instances.c.customer_id, instances.c.journey_id, func.max(instances.c.entered_at).label("last_entry"))
        .where(mine)
        .group_by(instances.c.customer_id, instances.c.journey_id)
        .cte("last_entries")
    )
    when = DateTime(timezone=True)
    opened = select(literal("open").label("kind"), *open_.c, cast(null(), when).label("last_entry"))
    entries = select(
        literal("last").label("kind"),
        *[last.c[c.name] if c.name in ("customer_id", "journey_id") else cast(null(), c.type).label(c.name)
          for c in instances.c],
        last.c.last_entry,
    )  # fmt: skip
    return union_all(opened, entries)


def by_tenant(pairs: Iterable[Customer]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for tenant_id, customer_id in pairs:
        grouped[tenant_id].append(customer_id)
    return grouped
