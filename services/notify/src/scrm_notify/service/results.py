"""Publishing touch outcomes on ``touches.results.v1`` through the outbox, inside the caller's transaction."""

from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import Topic, TouchResult, TouchStatus, record_key
from scrm_kit.outbox import OutgoingRecord, enqueue
from scrm_notify.adapters.orm import TouchRow, outbox

# Engagement only moves forward: a late "delivered" after "clicked" changes nothing on the touch.
RANK = {"sent": 1, "delivered": 2, "opened": 3, "clicked": 4, "replied": 5}


class TouchFields(Protocol):
    """What a result says about its touch (a ``TouchRow`` or the pipeline's in-memory ``TouchState``)."""

    touch_key: str
    tenant_id: str
    customer_id: str
    journey_id: str | None
    channel: str | None
    template_id: str
    provider_message_id: str | None


async def publish(
    session: AsyncSession,
    touch: TouchRow,
    status: TouchStatus,
    at: datetime,
    reason: str | None = None,
    outcome: str | None = None,
    event_suffix: str = "",
) -> None:
    """Enqueue one TouchResult; its ``event_id`` is deterministic, so a replay is dropped downstream."""
    await enqueue(session, outbox, [record(touch, status, at, reason, outcome, event_suffix)])


def record(
    touch: TouchFields,
    status: TouchStatus,
    at: datetime,
    reason: str | None = None,
    outcome: str | None = None,
    event_suffix: str = "",
) -> OutgoingRecord:
    """One TouchResult as an outbox record (for callers that enqueue a batch at once)."""
    result = TouchResult(
        event_id=f"{touch.touch_key}:{status.value}{event_suffix}",
        touch_key=touch.touch_key,
        tenant_id=touch.tenant_id,
        customer_id=touch.customer_id,
        journey_id=touch.journey_id,
        channel=touch.channel,
        template_id=touch.template_id,
        status=status,
        reason=reason,
        provider_message_id=touch.provider_message_id,
        outcome=outcome,
        occurred_at=at,
    )
    key = record_key(touch.tenant_id, touch.customer_id)
    return OutgoingRecord(Topic.TOUCH_RESULTS.value, key, result.to_wire())
