"""Inside one transaction, with the touch row locked: run the gates, then park the touch (suppressed, deferred,
held) or claim it for sending (status ``sending`` with a lease, counted against caps from this moment).

The customer row is locked too, so two touches of one customer never pass the caps side by side.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import TouchRequest, TouchStatus
from scrm_notify.adapters import directory, touches
from scrm_notify.adapters.channels.base import OutboundMessage
from scrm_notify.adapters.orm import CustomerRow, StaffTaskRow, TouchRow
from scrm_notify.domain.consent import CustomerView
from scrm_notify.domain.gates import Decision, GateRequest, decide
from scrm_notify.domain.templates import TemplateFailure, render_source
from scrm_notify.service import results
from scrm_notify.settings import DeliverySettings


@dataclass(frozen=True, slots=True)
class Claimed:
    """A touch claimed for sending by this process: settle it only while it still holds ``attempt``."""

    tenant_id: str
    touch_key: str
    attempt: int
    outbound: OutboundMessage


def _variables(row: CustomerRow, request: TouchRequest, customer_id: str) -> dict[str, Any]:
    profile = dict(row.variables or {})
    return {**profile, "customer": profile, **request.variables, "customer_id": customer_id}


def _sender(view: CustomerView) -> str | None:
    if view.owner_staff_id and view.owner_staff_id in view.wecom_staff_ids:
        return view.owner_staff_id
    return view.wecom_staff_ids[0] if view.wecom_staff_ids else None


async def gate(
    session: AsyncSession, touch: TouchRow, request: TouchRequest, now: datetime, delivery: DeliverySettings
) -> Claimed | None:
    """Decide the touch's fate now; return it claimed when it is to be sent."""
    tenant_id = touch.tenant_id
    row = await session.get(CustomerRow, (tenant_id, touch.customer_id), with_for_update=True)
    view = directory.view_of(row) if row else None
    erased = row is None and await directory.is_erased(session, tenant_id, touch.customer_id)
    configured = [c for c in request.channels if c == "staff_task" or await touches.credentials(session, tenant_id, c)]
    if not configured and view is not None:
        await park(
            session,
            touch,
            Decision("suppressed", "no_channel_configured", f"none of {request.channels} is configured for the tenant"),
            now,
        )
        return None
    gate_request = GateRequest(
        channels=configured,
        priority=request.priority,
        requested_at=request.requested_at,
        staff_id=request.task.staff_id if request.task else None,
    )
    consents = await directory.consents_of(session, tenant_id, touch.customer_id) if view else {}
    history = await touches.history(session, tenant_id, touch.customer_id, now) if view else touches.History()
    policy = await touches.policy(session, tenant_id)
    decision = decide(gate_request, view, erased, consents, history, policy, now)
    if decision.verdict != "send" or row is None or view is None:
        await park(session, touch, decision, now)
        return None
    return await claim(session, touch, request, row, view, decision, now, delivery)


async def park(session: AsyncSession, touch: TouchRow, decision: Decision, now: datetime) -> None:
    """Record a touch that is not sent now; publish the outcome (a held touch waits silently)."""
    touch.status = decision.verdict
    touch.reason_code = decision.reason_code
    touch.reason = decision.reason
    touch.due_at = decision.until if decision.verdict in ("held", "deferred") else None
    touch.sent_at = None
    touch.channel = decision.channel or touch.channel
    touch.updated_at = now
    if decision.verdict == "suppressed":
        await results.publish(session, touch, TouchStatus.SUPPRESSED, now, f"{decision.reason_code}: {decision.reason}")
    elif decision.verdict == "deferred" and decision.until is not None:
        suffix = f":{int(decision.until.timestamp())}"
        await results.publish(
            session, touch, TouchStatus.DEFERRED, now, f"{decision.reason_code}: {decision.reason}", event_suffix=suffix
        )


async def fail(session: AsyncSession, touch: TouchRow, code: str, reason: str, now: datetime) -> None:
    touch.status, touch.reason_code, touch.reason = "failed", code, reason
    touch.due_at = touch.sent_at = None
    touch.updated_at = now
    await results.publish(session, touch, TouchStatus.FAILED, now, f"{code}: {reason}")


async def claim(
    session: AsyncSession,
    touch: TouchRow,
    request: TouchRequest,
    row: CustomerRow,
    view: CustomerView,
    decision: Decision,
    now: datetime,
    delivery: DeliverySettings,
) -> Claimed | None:
    channel = decision.channel or ""
    touch.channel = channel
    locale = request.variables.get("locale") or view.locale
    source = await touches.template(session, touch.tenant_id, request.template_id, channel, locale)
    if source is None:
        await fail(session, touch, "template_missing", f"no template {request.template_id!r} for {channel}", now)
        return None
    try:
        message = render_source(request.template_id, source, _variables(row, request, touch.customer_id))
    except TemplateFailure as exc:
        await fail(session, touch, "template_error", str(exc), now)
        return None
    touch.body, touch.reason_code, touch.reason = message.text, None, None
    touch.attempts += 1
    touch.sent_at = touch.updated_at = now
    if channel == "staff_task":
        await _create_task(session, touch, request, decision.address or "", message.text, now, delivery)
        return None
    touch.status = "sending"
    touch.due_at = now + timedelta(seconds=delivery.send_lease_seconds)
    credentials = await touches.credentials(session, touch.tenant_id, channel)
    assert credentials is not None
    outbound = OutboundMessage(
        tenant_id=touch.tenant_id,
        touch_key=touch.touch_key,
        channel=channel,
        address=decision.address or "",
        message=message,
        credentials=credentials,
        customer_id=touch.customer_id,
        journey_id=touch.journey_id,
        template_id=touch.template_id,
        priority=touch.priority,
        sender=_sender(view),
    )
    return Claimed(touch.tenant_id, touch.touch_key, touch.attempts, outbound)


async def _create_task(
    session: AsyncSession,
    touch: TouchRow,
    request: TouchRequest,
    staff_id: str,
    text: str,
    now: datetime,
    delivery: DeliverySettings,
) -> None:
    """A staff task is "sent" once it sits in the staff member's queue."""
    spec = request.task
    task_id = f"task_{secrets.token_hex(10)}"
    session.add(
        StaffTaskRow(
            task_id=task_id,
            tenant_id=touch.tenant_id,
            touch_key=touch.touch_key,
            customer_id=touch.customer_id,
            journey_id=touch.journey_id,
            template_id=touch.template_id,
            staff_id=staff_id,
            title=spec.title if spec else text[:200],
            suggested_words=(spec.suggested_words if spec and spec.suggested_words else text),
            status="open",
            due_at=spec.due_at if spec and spec.due_at else now + timedelta(hours=delivery.task_ttl_hours),
            created_at=now,
            updated_at=now,
        )
    )
    touch.status, touch.due_at, touch.provider_message_id = "sent", None, task_id
    await results.publish(session, touch, TouchStatus.SENT, now)
