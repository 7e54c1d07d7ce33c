"""Everything one unit of work changes, written in a few set-based statements at the end of the transaction."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import Topic, TouchRequest, TrackedEvent, record_key
from scrm_journey.adapters.orm import InstanceRow
from scrm_journey.adapters.unit_sql import unit_statement
from scrm_journey.domain.engine import Instance, Step
from scrm_kit.outbox import OutgoingRecord


def instance_of(row: InstanceRow | Any) -> Instance:
    return Instance(
        instance_id=row.instance_id,
        tenant_id=row.tenant_id,
        customer_id=row.customer_id,
        journey_id=row.journey_id,
        journey_version=row.journey_version,
        entered_at=row.entered_at,
        user_id=row.user_id,
        state=row.state,
        current_node=row.current_node,
        holdout=row.holdout,
        context=dict(row.context or {}),
        goal_at=row.goal_at,
    )


def changed_row(instance: Instance, now: datetime) -> dict[str, Any]:
    return {
        "b_id": instance.instance_id,
        "state": instance.state,
        "current_node": instance.current_node,
        "holdout": instance.holdout,
        "context": instance.context,
        "goal_at": instance.goal_at,
        "updated_at": now,
    }


def any_array(values: list[str]) -> Any:
    """``= ANY(:array)``: one bind parameter, however many values (an IN list renders one per value)."""
    return any_(bindparam(None, values, ARRAY(Text)))


def step_timer_id(instance_id: str) -> str:
    return f"step:{instance_id}"


def entry_timer_id(tenant_id: str, journey_id: str, customer_id: str) -> str:
    return f"entry:{tenant_id}:{journey_id}:{customer_id}"


@dataclass
class Writes:
    now: datetime
    created: list[dict[str, Any]] = field(default_factory=list)
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    moves: list[dict[str, Any]] = field(default_factory=list)
    timers_set: dict[str, dict[str, Any]] = field(default_factory=dict)
    timers_cleared: set[str] = field(default_factory=set)
    outgoing: list[OutgoingRecord] = field(default_factory=list)

    def record(self, instance: Instance, step: Step, new: bool = False) -> None:
        """Queue an instance's new state, its transitions, its timer and its effects."""
        if new:
            self.created.append(
                {
                    "instance_id": instance.instance_id,
                    "tenant_id": instance.tenant_id,
                    "journey_id": instance.journey_id,
                    "journey_version": instance.journey_version,
                    "customer_id": instance.customer_id,
                    "user_id": instance.user_id,
                    "entered_at": instance.entered_at,
                    **{k: v for k, v in changed_row(instance, self.now).items() if k != "b_id"},
                }
            )
        else:
            self.changed[instance.instance_id] = changed_row(instance, self.now)
        self.moves += [
            {
                "instance_id": instance.instance_id,
                "tenant_id": instance.tenant_id,
                "node_id": t.node_id,
                "outcome": t.outcome,
                "at": t.at,
            }
            for t in step.transitions
        ]
        timer_id = step_timer_id(instance.instance_id)
        if instance.state == "waiting" and step.wake_at is not None:
            self.set_timer(
                timer_id,
                "step",
                instance.tenant_id,
                instance.journey_id,
                instance.customer_id,
                step.wake_at,
                instance.instance_id,
            )
        elif new:
            self.timers_set.pop(timer_id, None)  # a new instance has no stored timer to delete
        elif instance.state != "waiting":
            self.clear_timer(timer_id)
        self._effects(instance, step)

    def set_timer(
        self,
        timer_id: str,
        kind: str,
        tenant_id: str,
        journey_id: str,
        customer_id: str,
        due_at: datetime,
        instance_id: str | None = None,
    ) -> None:
        self.timers_cleared.discard(timer_id)
        self.timers_set[timer_id] = {
            "timer_id": timer_id,
            "kind": kind,
            "tenant_id": tenant_id,
            "journey_id": journey_id,
            "customer_id": customer_id,
            "instance_id": instance_id,
            "due_at": due_at,
        }

    def clear_timer(self, timer_id: str) -> None:
        self.timers_set.pop(timer_id, None)
        self.timers_cleared.add(timer_id)

    def _effects(self, instance: Instance, step: Step) -> None:
        key = record_key(instance.tenant_id, instance.customer_id)
        for touch in step.touches:
            request = TouchRequest(
                event_id=touch.touch_key,
                touch_key=touch.touch_key,
                tenant_id=instance.tenant_id,
                customer_id=instance.customer_id,
                user_id=instance.user_id,
                journey_id=instance.journey_id,
                journey_version=instance.journey_version,
                instance_id=instance.instance_id,
                node_id=touch.node_id,
                channels=touch.channels,
                template_id=touch.template_id,
                priority=touch.priority,  # type: ignore[arg-type]
                variables=touch.variables,
                task=touch.task,
                requested_at=self.now,
            )
            self.outgoing.append(OutgoingRecord(Topic.TOUCH_REQUESTS.value, key, request.to_wire()))
        for tag in step.tags:
            event = TrackedEvent(
                event_id=tag.key,
                tenant_id=instance.tenant_id,
                type="track",
                event="Tags Changed",
                user_id=instance.user_id,
                customer_id=instance.customer_id,
                occurred_at=self.now,
                received_at=self.now,
                properties={"add": tag.add, "remove": tag.remove},
            )
            self.outgoing.append(
                OutgoingRecord(Topic.EVENTS.value, record_key(instance.tenant_id, event.customer_key), event.to_wire())
            )

    async def flush(self, session: AsyncSession) -> None:
        """Everything queued, in one statement (one round trip), then start afresh."""
        created = {r["instance_id"]: r for r in self.created}
        for instance_id in [i for i in self.changed if i in created]:  # created and moved again in this unit
            created[instance_id].update(self.changed.pop(instance_id), instance_id=instance_id)
        changed = [{**r, "instance_id": r["b_id"]} for r in self.changed.values()]
        statement = unit_statement(
            self.now, list(created.values()), changed, self.moves, sorted(self.timers_cleared),
            list(self.timers_set.values()), self.outgoing,
        )  # fmt: skip
        if statement is not None:
            await session.execute(*statement)
        self.created, self.changed, self.moves, self.outgoing = [], {}, [], []
        self.timers_set, self.timers_cleared = {}, set()
