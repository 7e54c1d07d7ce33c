"""Run journeys from ``profile.changes.v1``: enter customers, walk their steps, request touches via the outbox."""

import secrets
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import ProfileChange, Topic, TouchRequest, parse_profile_change, record_key
from scrm_journey.adapters.orm import InstanceRow, TransitionRow, inbox, outbox
from scrm_journey.domain.journeys import JourneyDefinition, journeys_entered, touch_key
from scrm_kit.clock import Clock
from scrm_kit.errors import InvalidInput
from scrm_kit.kafka import Record
from scrm_kit.outbox import OutgoingRecord, claim_new, enqueue

CONSUMER = "journey"


def parse_record(record: Record) -> ProfileChange | None:
    if record.value is None:
        raise InvalidInput("record has no value", field="value")
    try:
        return parse_profile_change(record.value)
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"malformed {record.topic} record: {exc}", field="value") from exc


class JourneyConsumer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def __call__(self, records: Sequence[Record]) -> None:
        changes = [c for c in (parse_record(r) for r in records) if c is not None]
        if not changes:
            return
        async with self._sessions() as session, session.begin():
            fresh = await claim_new(session, inbox, CONSUMER, [(c.tenant_id, c.event_id) for c in changes])
            for change in changes:
                key = (change.tenant_id, change.event_id)
                if key not in fresh:
                    continue
                fresh.discard(key)
                for journey in journeys_entered(change):
                    await self._enter(session, journey, change)

    async def _enter(self, session: AsyncSession, journey: JourneyDefinition, change: ProfileChange) -> None:
        now = self._clock.now()
        instance_id = f"ji_{secrets.token_hex(10)}"
        entered = await session.execute(
            insert(InstanceRow)
            .values(
                instance_id=instance_id,
                tenant_id=change.tenant_id,
                journey_id=journey.journey_id,
                journey_version=journey.version,
                customer_id=change.customer_id,
                state="active",
                current_node=None,
                entered_at=now,
            )
            .on_conflict_do_nothing()
            .returning(InstanceRow.instance_id)
        )
        if entered.first() is None:
            return  # re-entry policy of the built-in welcome: never
        transitions = [
            {
                "instance_id": instance_id,
                "tenant_id": change.tenant_id,
                "node_id": "entry",
                "outcome": f"entered by {change.type}",
                "at": now,
            }
        ]
        requests = []
        for step in journey.steps:
            key = touch_key(instance_id, step.node_id)
            request = TouchRequest(
                event_id=key,
                touch_key=key,
                tenant_id=change.tenant_id,
                customer_id=change.customer_id,
                user_id=change.user_id,
                journey_id=journey.journey_id,
                journey_version=journey.version,
                instance_id=instance_id,
                node_id=step.node_id,
                channels=list(step.channels),
                template_id=step.template_id,
                priority=step.priority,
                variables={"user_id": change.user_id, "customer_id": change.customer_id},
                requested_at=now,
            )
            requests.append(
                OutgoingRecord(
                    Topic.TOUCH_REQUESTS.value, record_key(change.tenant_id, change.customer_id), request.to_wire()
                )
            )
            transitions.append(
                {
                    "instance_id": instance_id,
                    "tenant_id": change.tenant_id,
                    "node_id": step.node_id,
                    "outcome": "touch requested",
                    "at": now,
                }
            )
        transitions.append(
            {
                "instance_id": instance_id,
                "tenant_id": change.tenant_id,
                "node_id": "exit",
                "outcome": "completed",
                "at": now,
            }
        )
        await session.execute(insert(TransitionRow), transitions)
        await session.execute(
            InstanceRow.__table__.update()
            .where(InstanceRow.instance_id == instance_id)
            .values(state="completed", current_node="exit", updated_at=now)
        )
        await enqueue(session, outbox, requests)
