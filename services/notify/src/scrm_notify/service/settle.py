"""Settle claimed sends: record each provider answer on its touch and publish the outcomes, for a whole batch in
one transaction (the touches locked in key order, written back with one statement, results enqueued once).

Only the claim holder settles (status ``sending`` and the same attempt number); a claim that ran out and was
taken over is left to its new holder. A WeCom mass message the provider accepted only created a task for the staff
member: its second phase starts here (``wecom_results`` reads it back until it was sent or given up).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import TouchStatus, record_key
from scrm_kit.clock import Clock
from scrm_kit.outbox import OutgoingRecord, enqueue
from scrm_notify.adapters import directory, subscribe_grants, touch_batch, wecom_checks
from scrm_notify.adapters.orm import outbox
from scrm_notify.adapters.touch_batch import TouchState
from scrm_notify.domain.delivery import SendOutcome, backoff
from scrm_notify.service.gating import Claimed, Effects, fail
from scrm_notify.service.wecom_results import tracking_row
from scrm_notify.settings import DeliverySettings, WeComSettings


@dataclass(frozen=True, slots=True)
class Settlement:
    """A claimed touch and what became of its send; ``counted`` False when it never reached the provider."""

    claimed: Claimed
    outcome: SendOutcome
    counted: bool = True


async def settle(
    sessions: async_sessionmaker[AsyncSession],
    settlements: Sequence[Settlement],
    clock: Clock,
    delivery: DeliverySettings,
    dead_letter_topic: str,
    wecom: WeComSettings | None = None,
) -> None:
    if not settlements:
        return
    now = clock.now()
    async with sessions() as session, session.begin():
        held = await touch_batch.lock_claims(
            session, [(s.claimed.tenant_id, s.claimed.touch_key, s.claimed.attempt) for s in settlements]
        )
        effects = Effects()
        revoked: list[tuple[TouchState, str]] = []
        changed: list[TouchState] = []
        grants = _GrantSettlement()
        tracked: list[dict[str, object]] = []
        for item in settlements:
            touch = held.get((item.claimed.tenant_id, item.claimed.touch_key))
            if touch is None or not _still_ours(touch, item.outcome):
                continue
            if not item.counted or item.outcome.kind == "deferred":
                touch.attempts -= 1
            touch.updated_at = now
            _apply(touch, item.outcome, now, delivery, dead_letter_topic, effects)
            if item.outcome.kind == "permanent" and item.outcome.revoke and touch.channel:
                revoked.append((touch, item.outcome.revoke))
            if item.outcome.kind == "ok" and touch.channel == "wecom" and item.outcome.provider_message_id:
                outbound = item.claimed.outbound
                tracked.append(
                    tracking_row(
                        touch.tenant_id,
                        touch.touch_key,
                        touch.customer_id,
                        item.outcome.provider_message_id,
                        outbound.sender,
                        outbound.address,
                        now,
                        wecom or WeComSettings(),
                    )
                )
            changed.append(touch)
            if item.claimed.outbound.message.kind == "subscribe":
                grants.add(touch, item.outcome)
        await touch_batch.write(session, changed)
        if grants:
            await subscribe_grants.settle(session, grants.spent, grants.released, grants.used_up, now)
        await wecom_checks.track(session, tracked)
        for touch, status in revoked:
            await directory.record_consent(
                session, touch.tenant_id, touch.customer_id, touch.channel or "", status, "provider", now
            )
        await enqueue(session, outbox, effects.records)


class _GrantSettlement:
    """What the batch's subscribe messages do to their holds: sent spends one; ended unsent releases it (43101
    also clears the customer's grants for that template); waiting to be retried keeps it."""

    def __init__(self) -> None:
        self.spent: list[tuple[str, str]] = []
        self.released: list[tuple[str, str]] = []
        self.used_up: list[tuple[str, str]] = []

    def __bool__(self) -> bool:
        return bool(self.spent or self.released or self.used_up)

    def add(self, touch: TouchState, outcome: SendOutcome) -> None:
        if touch.status == "sent":
            self.spent.append(touch.key)
        elif outcome.consent_used_up:
            self.used_up.append(touch.key)
        elif touch.status == "failed":
            self.released.append(touch.key)


def _still_ours(touch: TouchState, outcome: SendOutcome) -> bool:
    """The claim holds; or its lease ran out and the touch was failed as ``outcome_unknown``, which a late
    success corrects (the provider did accept it)."""
    if touch.status == "sending":
        return True
    return outcome.kind == "ok" and touch.status == "failed" and touch.reason_code == "outcome_unknown"


def _apply(
    touch: TouchState,
    outcome: SendOutcome,
    now: datetime,
    delivery: DeliverySettings,
    dead_letter_topic: str,
    effects: Effects,
) -> None:
    if outcome.kind == "ok":
        touch.status, touch.due_at, touch.provider_message_id = "sent", None, outcome.provider_message_id
        touch.reason_code = touch.reason = None
        touch.sent_at = touch.sent_at or now
        effects.publish(touch, TouchStatus.SENT, now)
    elif outcome.kind == "permanent":
        fail(touch, "permanent_error", outcome.reason or "rejected by the provider", now, effects)
    elif outcome.kind == "deferred":
        touch.status, touch.sent_at, touch.due_at = "deferred", None, outcome.retry_at or now
        touch.reason_code, touch.reason = "provider_deferred", outcome.reason
        suffix = f":{int(touch.due_at.timestamp())}"
        effects.publish(touch, TouchStatus.DEFERRED, now, outcome.reason, event_suffix=suffix)
    elif touch.attempts >= delivery.max_attempts:
        fail(touch, "retries_exhausted", f"{touch.attempts} attempts; last: {outcome.reason}", now, effects)
        effects.records.append(_dead_letter(touch, outcome, dead_letter_topic))
    else:
        touch.status, touch.sent_at = "retrying", None
        touch.reason_code, touch.reason = outcome.kind, outcome.reason
        retry_at = backoff(touch.attempts, now, delivery.backoff_base_seconds, delivery.backoff_cap_seconds)
        touch.due_at = max(retry_at, outcome.retry_at) if outcome.retry_at else retry_at


def _dead_letter(touch: TouchState, outcome: SendOutcome, topic: str) -> OutgoingRecord:
    headers = (
        ("dlq.reason", f"retries exhausted: {outcome.reason}"[:2000]),
        ("dlq.kind", "retries_exhausted"),
        ("dlq.group", "notify"),
        ("dlq.touch_key", touch.touch_key),
    )
    return OutgoingRecord(topic, record_key(touch.tenant_id, touch.customer_id), orjson.dumps(touch.request), headers)
