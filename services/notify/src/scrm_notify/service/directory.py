"""Consume ``profile.changes.v1`` (group ``notify-profile``): keep the customer directory, apply consent events
(and the one-time subscribe consents of ``Subscribe Message Authorized``) at once, and match delivery receipts
back to their touches.

One transaction per batch; each change's ``event_id`` is claimed in the inbox in the same transaction, so a
redelivered batch changes nothing.
"""

import logging
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import (
    CustomerErased,
    CustomersMerged,
    CustomerUpdated,
    EventTracked,
    ProfileChange,
    SemanticEvent,
    TouchStatus,
    parse_profile_change,
)
from scrm_kit.clock import Clock
from scrm_kit.errors import InvalidInput
from scrm_kit.kafka import Record
from scrm_kit.outbox import claim_new
from scrm_notify.adapters import directory, subscribe_grants
from scrm_notify.adapters.orm import TouchRow, inbox
from scrm_notify.service import results

logger = logging.getLogger(__name__)
CONSUMER = "notify-profile"

RECEIPTS = {
    SemanticEvent.MESSAGE_DELIVERED.value: TouchStatus.DELIVERED,
    SemanticEvent.MESSAGE_OPENED.value: TouchStatus.OPENED,
    SemanticEvent.MESSAGE_CLICKED.value: TouchStatus.CLICKED,
    SemanticEvent.MESSAGE_REPLIED.value: TouchStatus.REPLIED,
}
CONSENT_EVENTS = {
    SemanticEvent.SMS_UNSUBSCRIBED.value: ("sms", "unsubscribed"),
    SemanticEvent.EMAIL_UNSUBSCRIBED.value: ("email", "unsubscribed"),
    SemanticEvent.OFFICIAL_ACCOUNT_UNSUBSCRIBED.value: ("wechat_oa", "unsubscribed"),
    SemanticEvent.OFFICIAL_ACCOUNT_SUBSCRIBED.value: ("wechat_oa", "subscribed"),
    SemanticEvent.WECOM_CONTACT_REMOVED.value: ("wecom", "blocked"),
    SemanticEvent.WECOM_CONTACT_ADDED.value: ("wecom", "subscribed"),
}


def parse(record: Record) -> ProfileChange | None:
    if record.value is None:
        raise InvalidInput("record has no value", field="value")
    try:
        return parse_profile_change(record.value)
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"malformed {record.topic} record: {exc}", field="value") from exc


class DirectoryConsumer:
    """Batch handler of the ``notify-profile`` consumer group."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def __call__(self, records: Sequence[Record]) -> None:
        changes = [c for c in (parse(r) for r in records) if c is not None]
        async with self._sessions() as session, session.begin():
            fresh = await claim_new(session, inbox, CONSUMER, [(c.tenant_id, c.event_id) for c in changes])
            for change in changes:
                if (change.tenant_id, change.event_id) in fresh:
                    await self.apply(session, change)

    async def apply(self, session: AsyncSession, change: ProfileChange) -> None:
        if isinstance(change, CustomerUpdated):
            await directory.apply_snapshot(session, change)
        elif isinstance(change, CustomerErased):
            await directory.erase(session, change.tenant_id, change.customer_id, change.occurred_at)
        elif isinstance(change, CustomersMerged):
            await directory.merge(session, change.tenant_id, change.customer_id, change.merged_customer_ids)
        elif isinstance(change, EventTracked):
            await self._tracked(session, change)

    async def _tracked(self, session: AsyncSession, change: EventTracked) -> None:
        if change.event == SemanticEvent.SUBSCRIBE_MESSAGE_AUTHORIZED:
            await self._subscribe_answer(session, change)
            return
        consent = CONSENT_EVENTS.get(change.event)
        if consent is not None:
            channel, status = consent
            if change.event == SemanticEvent.WECOM_CONTACT_REMOVED and change.properties.get("removed_by") == "staff":
                return  # the staff member removed the customer: reachability follows the snapshot, not consent
            await directory.record_consent(
                session,
                change.tenant_id,
                change.customer_id,
                channel,
                status,
                f"event:{change.event}",
                change.occurred_at,
            )
            return
        status_of_receipt = RECEIPTS.get(change.event)
        if status_of_receipt is not None:
            await self._receipt(session, change, status_of_receipt)

    async def _subscribe_answer(self, session: AsyncSession, change: EventTracked) -> None:
        """Profile validated the properties at ingest; a record without them is skipped, not guessed at."""
        template_id, status = change.properties.get("template_id"), change.properties.get("status")
        if not isinstance(template_id, str) or not template_id or not isinstance(status, str):
            logger.warning("subscribe answer without template_id or status", extra={"tenant_id": change.tenant_id})
            return
        await subscribe_grants.answer(
            session, change.tenant_id, change.customer_id, template_id, status, change.occurred_at
        )

    async def _receipt(self, session: AsyncSession, change: EventTracked, status: TouchStatus) -> None:
        touch_key = change.properties.get("touch_key")
        message_id = change.properties.get("provider_message_id")
        if not touch_key and not message_id:
            return
        matches = [TouchRow.touch_key == touch_key] if touch_key else []
        if message_id:
            matches.append(TouchRow.provider_message_id == str(message_id))
        touch = (
            await session.execute(
                select(TouchRow).where(TouchRow.tenant_id == change.tenant_id, or_(*matches)).limit(1).with_for_update()
            )
        ).scalar_one_or_none()
        if touch is None:
            logger.info("receipt for an unknown touch", extra={"tenant_id": change.tenant_id, "event": change.event})
            return
        if touch.status in results.RANK and results.RANK[status.value] > results.RANK[touch.status]:
            touch.status = status.value
            touch.updated_at = self._clock.now()
        await results.publish(session, touch, status, change.occurred_at)
