"""Gate a batch of touches inside one transaction: the touches and their customers are locked, everything the
gates read is loaded once (``touch_batch.load_context``), each touch is parked (suppressed, deferred, held) or
claimed for sending (status ``sending`` with a lease, counted against caps from this moment), and the batch's
rows, staff tasks and outcome records are written with one statement each.

Touches of one customer are decided in request order, each seeing the ones claimed before it, so two touches
of one customer never pass the caps side by side; the customer rows stay locked until the batch commits.
"""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import TouchRequest, TouchStatus
from scrm_kit.outbox import OutgoingRecord, enqueue
from scrm_notify.adapters import subscribe_grants, touch_batch
from scrm_notify.adapters.channels.base import OutboundMessage
from scrm_notify.adapters.orm import outbox
from scrm_notify.adapters.touch_batch import GateContext, TouchState
from scrm_notify.domain import subscribe
from scrm_notify.domain.consent import CustomerView
from scrm_notify.domain.gates import Decision, GateRequest, History, decide
from scrm_notify.domain.templates import TemplateFailure, TemplateSource, render_source
from scrm_notify.service import results
from scrm_notify.settings import DeliverySettings


@dataclass(frozen=True, slots=True)
class Claimed:
    """A touch claimed for sending by this process: settle it only while it still holds ``attempt``."""

    tenant_id: str
    touch_key: str
    attempt: int
    outbound: OutboundMessage


@dataclass(slots=True)
class Effects:
    """What a batch publishes and creates besides its touch rows, written once at the end."""

    records: list[OutgoingRecord] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)

    def publish(
        self, touch: TouchState, status: TouchStatus, at: datetime, reason: str | None = None, **kw: Any
    ) -> None:
        self.records.append(results.record(touch, status, at, reason, **kw))


async def gate_batch(
    session: AsyncSession,
    items: Sequence[tuple[TouchState, TouchRequest]],
    now: datetime,
    delivery: DeliverySettings,
    effects: Effects | None = None,
    also_write: Sequence[TouchState] = (),
) -> list[Claimed]:
    """Decide every touch of the batch now; return those claimed for sending, in request order."""
    effects = effects or Effects()
    claimed: list[Claimed] = []
    if items:
        ctx = await touch_batch.load_context(
            session,
            (state.customer for state, _ in items),
            ((state.tenant_id, request.template_id) for state, request in items),
            {state.key for state, _ in items},
            now,
        )
        for state, request in items:
            found = gate(state, request, ctx, effects, now, delivery)
            if found is not None:
                claimed.append(found)
        await subscribe_grants.write_holds(session, ctx.grants)
    await touch_batch.write(session, [*also_write, *(state for state, _ in items)])
    await touch_batch.insert_tasks(session, effects.tasks)
    await enqueue(session, outbox, effects.records)
    return claimed


def gate(
    touch: TouchState,
    request: TouchRequest,
    ctx: GateContext,
    effects: Effects,
    now: datetime,
    delivery: DeliverySettings,
) -> Claimed | None:
    """Decide one touch's fate now; return it claimed when it is to be sent."""
    tenant_id = touch.tenant_id
    row = ctx.customers.get(touch.customer)
    view = ctx.views.get(touch.customer)
    erased = row is None and touch.customer in ctx.erased
    configured = [c for c in request.channels if c == "staff_task" or (tenant_id, c) in ctx.configs]
    if not configured and view is not None:
        reason = f"none of {request.channels} is configured for the tenant"
        park(touch, Decision("suppressed", "no_channel_configured", reason), now, effects)
        return None
    gate_request = GateRequest(
        channels=configured,
        priority=request.priority,
        requested_at=request.requested_at,
        staff_id=request.task.staff_id if request.task else None,
    )
    consents = ctx.consents.get(touch.customer, {}) if view else {}
    history = (
        History(
            sent=tuple(ctx.history.get(touch.customer, ())), wecom_quota_until=ctx.wecom_quota_holds.get(touch.customer)
        )
        if view
        else History()
    )
    blocked = _official_account_block(touch, request, ctx, view) if subscribe.CHANNEL in configured else None
    decision = decide(gate_request, view, erased, consents, history, ctx.policy(tenant_id), now, blocked)
    if decision.verdict != "send" or row is None or view is None:
        park(touch, decision, now, effects)
        return None
    return claim(touch, request, ctx, row, view, decision, now, delivery, effects)


def _locale(request: TouchRequest, view: CustomerView) -> str | None:
    return request.variables.get("locale") or view.locale


def _wechat_template(touch: TouchState, ctx: GateContext, source: TemplateSource) -> str | None:
    return subscribe.wechat_template_of(source, ctx.configs[(touch.tenant_id, subscribe.CHANNEL)].settings)


def _official_account_block(
    touch: TouchState, request: TouchRequest, ctx: GateContext, view: CustomerView | None
) -> dict[str, str] | None:
    """Whether the message this touch would be on ``wechat_oa`` may go there (see ``domain.subscribe``)."""
    if view is None:
        return None
    source = ctx.template(touch.tenant_id, request.template_id, subscribe.CHANNEL, _locale(request, view))
    wechat_template = _wechat_template(touch, ctx, source) if source is not None else None
    left = ctx.grants.left(touch.customer, wechat_template) if wechat_template else 0
    block = subscribe.channel_block(source, request.priority, wechat_template, left)
    return {subscribe.CHANNEL: block} if block else None


def park(touch: TouchState, decision: Decision, now: datetime, effects: Effects) -> None:
    """Record a touch that is not sent now; publish the outcome (a held touch waits silently)."""
    touch.status = decision.verdict
    touch.reason_code = decision.reason_code
    touch.reason = decision.reason
    touch.due_at = decision.until if decision.verdict in ("held", "deferred") else None
    touch.sent_at = None
    touch.channel = decision.channel or touch.channel
    touch.updated_at = now
    if decision.verdict == "suppressed":
        effects.publish(touch, TouchStatus.SUPPRESSED, now, f"{decision.reason_code}: {decision.reason}")
    elif decision.verdict == "deferred" and decision.until is not None:
        suffix = f":{int(decision.until.timestamp())}"
        reason = f"{decision.reason_code}: {decision.reason}"
        effects.publish(touch, TouchStatus.DEFERRED, now, reason, event_suffix=suffix)


def fail(touch: TouchState, code: str, reason: str, now: datetime, effects: Effects) -> None:
    touch.status, touch.reason_code, touch.reason = "failed", code, reason
    touch.due_at = touch.sent_at = None
    touch.updated_at = now
    effects.publish(touch, TouchStatus.FAILED, now, f"{code}: {reason}")


def _variables(row: Any, request: TouchRequest, customer_id: str) -> dict[str, Any]:
    profile = dict(row.variables or {})
    return {**profile, "customer": profile, **request.variables, "customer_id": customer_id}


def _sender(view: CustomerView) -> str | None:
    if view.owner_staff_id and view.owner_staff_id in view.wecom_staff_ids:
        return view.owner_staff_id
    return view.wecom_staff_ids[0] if view.wecom_staff_ids else None


def claim(
    touch: TouchState,
    request: TouchRequest,
    ctx: GateContext,
    row: Any,
    view: CustomerView,
    decision: Decision,
    now: datetime,
    delivery: DeliverySettings,
    effects: Effects,
) -> Claimed | None:
    channel = decision.channel or ""
    touch.channel = channel
    source = ctx.template(touch.tenant_id, request.template_id, channel, _locale(request, view))
    if source is None:
        fail(touch, "template_missing", f"no template {request.template_id!r} for {channel}", now, effects)
        return None
    try:
        message = render_source(request.template_id, source, _variables(row, request, touch.customer_id))
    except TemplateFailure as exc:
        fail(touch, "template_error", str(exc), now, effects)
        return None
    touch.body, touch.reason_code, touch.reason = message.text, None, None
    touch.attempts += 1
    touch.sent_at = touch.updated_at = now
    # Counted against the caps of the customer's next touches in this batch from this moment.
    ctx.history[touch.customer].append((channel, now, touch.priority))
    if channel == "staff_task":
        _create_task(touch, request, decision.address or "", message.text, now, delivery, effects)
        return None
    if channel == subscribe.CHANNEL and message.kind == "subscribe":
        wechat_template = _wechat_template(touch, ctx, source)
        assert wechat_template is not None  # the gate passed only with a grant for it
        ctx.grants.hold(touch.customer, touch.touch_key, wechat_template, now)
    touch.status = "sending"
    touch.due_at = now + timedelta(seconds=delivery.send_lease_seconds)
    outbound = OutboundMessage(
        tenant_id=touch.tenant_id,
        touch_key=touch.touch_key,
        channel=channel,
        address=decision.address or "",
        message=message,
        credentials=ctx.configs[(touch.tenant_id, channel)],
        customer_id=touch.customer_id,
        journey_id=touch.journey_id,
        template_id=touch.template_id,
        priority=touch.priority,
        sender=_sender(view),
    )
    return Claimed(touch.tenant_id, touch.touch_key, touch.attempts, outbound)


def _create_task(
    touch: TouchState,
    request: TouchRequest,
    staff_id: str,
    text: str,
    now: datetime,
    delivery: DeliverySettings,
    effects: Effects,
) -> None:
    """A staff task is "sent" once it sits in the staff member's queue."""
    spec = request.task
    task_id = f"task_{secrets.token_hex(10)}"
    effects.tasks.append(
        {
            "task_id": task_id,
            "tenant_id": touch.tenant_id,
            "touch_key": touch.touch_key,
            "customer_id": touch.customer_id,
            "journey_id": touch.journey_id,
            "template_id": touch.template_id,
            "staff_id": staff_id,
            "title": spec.title if spec else text[:200],
            "suggested_words": spec.suggested_words if spec and spec.suggested_words else text,
            "status": "open",
            "due_at": spec.due_at if spec and spec.due_at else now + timedelta(hours=delivery.task_ttl_hours),
            "created_at": now,
            "updated_at": now,
        }
    )
    touch.status, touch.due_at, touch.provider_message_id = "sent", None, task_id
    effects.publish(touch, TouchStatus.SENT, now)
