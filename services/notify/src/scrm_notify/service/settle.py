"""Settle a claimed send: record the provider's answer on the touch and publish the outcome, in one transaction.

Only the claim holder settles (status ``sending`` and the same attempt number); a claim that ran out and was
taken over is left to its new holder.
"""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import TouchStatus, record_key
from scrm_kit.clock import Clock
from scrm_kit.outbox import OutgoingRecord, enqueue
from scrm_notify.adapters import directory
from scrm_notify.adapters.orm import TouchRow, outbox
from scrm_notify.domain.delivery import SendOutcome, backoff
from scrm_notify.service import results
from scrm_notify.service.gating import Claimed, fail
from scrm_notify.settings import DeliverySettings


async def settle(
    sessions: async_sessionmaker[AsyncSession],
    claimed: Claimed,
    outcome: SendOutcome,
    clock: Clock,
    delivery: DeliverySettings,
    dead_letter_topic: str,
    counted: bool = True,
) -> None:
    now = clock.now()
    async with sessions() as session, session.begin():
        touch = (
            await session.execute(
                select(TouchRow)
                .where(
                    TouchRow.tenant_id == claimed.tenant_id,
                    TouchRow.touch_key == claimed.touch_key,
                    TouchRow.attempts == claimed.attempt,
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        if touch is None or not _still_ours(touch, outcome):
            return
        if not counted or outcome.kind == "deferred":
            touch.attempts -= 1
        touch.updated_at = now
        await _apply(session, touch, outcome, now, delivery, dead_letter_topic)


def _still_ours(touch: TouchRow, outcome: SendOutcome) -> bool:
    """The claim holds; or its lease ran out and the touch was failed as ``outcome_unknown``, which a late
    success corrects (the provider did accept it)."""
    if touch.status == "sending":
        return True
    return outcome.kind == "ok" and touch.status == "failed" and touch.reason_code == "outcome_unknown"


async def _apply(
    session: AsyncSession,
    touch: TouchRow,
    outcome: SendOutcome,
    now: datetime,
    delivery: DeliverySettings,
    dead_letter_topic: str,
) -> None:
    if outcome.kind == "ok":
        touch.status, touch.due_at, touch.provider_message_id = "sent", None, outcome.provider_message_id
        touch.reason_code = touch.reason = None
        touch.sent_at = touch.sent_at or now
        await results.publish(session, touch, TouchStatus.SENT, now)
    elif outcome.kind == "permanent":
        await fail(session, touch, "permanent_error", outcome.reason or "rejected by the provider", now)
        if outcome.revoke and touch.channel:
            await directory.record_consent(
                session, touch.tenant_id, touch.customer_id, touch.channel, outcome.revoke, "provider", now
            )
    elif outcome.kind == "deferred":
        touch.status, touch.sent_at, touch.due_at = "deferred", None, outcome.retry_at or now
        touch.reason_code, touch.reason = "provider_deferred", outcome.reason
        suffix = f":{int(touch.due_at.timestamp())}"
        await results.publish(session, touch, TouchStatus.DEFERRED, now, outcome.reason, event_suffix=suffix)
    elif touch.attempts >= delivery.max_attempts:
        await fail(session, touch, "retries_exhausted", f"{touch.attempts} attempts; last: {outcome.reason}", now)
        await _dead_letter(session, touch, outcome, dead_letter_topic)
    else:
        touch.status, touch.sent_at = "retrying", None
        touch.reason_code, touch.reason = outcome.kind, outcome.reason
        retry_at = backoff(touch.attempts, now, delivery.backoff_base_seconds, delivery.backoff_cap_seconds)
        touch.due_at = max(retry_at, outcome.retry_at) if outcome.retry_at else retry_at


async def _dead_letter(session: AsyncSession, touch: TouchRow, outcome: SendOutcome, topic: str) -> None:
    import orjson

    headers = (
        ("dlq.reason", f"retries exhausted: {outcome.reason}"[:2000]),
        ("dlq.kind", "retries_exhausted"),
        ("dlq.group", "notify"),
        ("dlq.touch_key", touch.touch_key),
    )
    value = orjson.dumps(touch.request)
    await enqueue(
        session, outbox, [OutgoingRecord(topic, record_key(touch.tenant_id, touch.customer_id), value, headers)]
    )
