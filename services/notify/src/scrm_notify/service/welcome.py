"""The WeCom welcome message, a synchronous fast path: consume ``events.v1`` directly (group ``notify-welcome``,
not behind profile's consumer, which can lag under load) and answer each ``WeCom Contact Added`` that carries a
``welcome_code`` at once with ``send_welcome_msg``, never queued with backoff: the code is valid for 20 seconds
and usable once.

Only tenants with a welcome template (``wecom_welcome`` by default, per locale, any channel or ``wecom``) get one.
Each welcome is a touch (``welcome:<event_id>``) recorded before the call and settled after it, so a redelivered
event sends nothing twice; its result is published on ``touches.results.v1``. A code older than the window by the
event's ``received_at`` is skipped (suppressed ``welcome_code_expired``). Erased customers never get one.

The customer: the one notify's directory knows by the WeCom external userid (their locale and profile fields feed
the template), else a provisional id ``wecom:<external_userid>`` that the customer's first snapshot replaces.
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import TouchStatus, TrackedEvent
from scrm_contracts.semantic import SemanticEvent
from scrm_kit.clock import Clock
from scrm_kit.errors import InvalidInput
from scrm_kit.kafka import Record
from scrm_notify.adapters import directory, touches
from scrm_notify.adapters.channels.base import Credentials
from scrm_notify.adapters.channels.wecom import WeComAdapter
from scrm_notify.adapters.orm import CustomerRow, TouchRow
from scrm_notify.domain.templates import TemplateFailure, render_source
from scrm_notify.service import results
from scrm_notify.settings import WeComSettings

logger = logging.getLogger(__name__)
CONTACT_ADDED = SemanticEvent.WECOM_CONTACT_ADDED.value
_MARKER = f'"{CONTACT_ADDED}"'.encode()
PROVISIONAL_PREFIX = "wecom:"
# errcode of send_welcome_msg -> reason code recorded on the touch
WELCOME_CODES = {41050: "welcome_code_expired", 41051: "welcome_code_used"}
LEASE = timedelta(seconds=60)


def contact_added(record: Record) -> TrackedEvent | None:
    """The record as a contact-added event with a welcome code; None for every other record (cheaply)."""
    if record.value is None or _MARKER not in record.value:
        return None
    try:
        event = TrackedEvent.from_wire(record.value)
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"malformed {record.topic} record: {exc}", field="value") from exc
    if event.event != CONTACT_ADDED or not event.properties.get("welcome_code"):
        return None
    return event


@dataclass(slots=True)
class Welcome:
    """One welcome being decided: the touch row values, and what to send when it is to be sent."""

    touch: dict[str, Any]
    credentials: Credentials | None = None
    text: str | None = None


@dataclass(frozen=True)
class WelcomeConsumer:
    """Batch handler of the ``notify-welcome`` consumer group (``events.v1``)."""

    sessions: async_sessionmaker[AsyncSession]
    adapter: WeComAdapter
    clock: Clock
    settings: WeComSettings

    async def __call__(self, records: Sequence[Record]) -> None:
        events = [e for e in (contact_added(r) for r in records) if e is not None]
        limit = asyncio.Semaphore(self.settings.welcome_concurrency)

        async def one(event: TrackedEvent) -> None:
            async with limit:
                await self.welcome(event)

        # Every welcome of the batch finishes (sent and settled) before a failure is raised for a retry of the batch.
        outcomes = await asyncio.gather(*(one(e) for e in events), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def welcome(self, event: TrackedEvent) -> None:
        """Decide, record, send and settle the welcome for one contact-added event (each at most once)."""
        async with self.sessions() as session, session.begin():
            decided = await self._decide(session, event)
            if decided is None or not await self._record(session, decided):
                return
        if decided.credentials is None or decided.text is None:
            return
        deadline = event.received_at + timedelta(seconds=self.settings.welcome_window_seconds)
        answer = await self.adapter.send_welcome(
            decided.credentials, str(event.properties["welcome_code"]), decided.text, deadline
        )
        if answer.outcome.kind != "ok":
            logger.info(
                "welcome message not sent",
                extra={"touch_key": decided.touch["touch_key"], "reason": answer.outcome.reason},
            )
        async with self.sessions() as session, session.begin():
            await self._settle(session, decided, answer.outcome.kind, answer.errcode, answer.outcome.reason)

    async def _decide(self, session: AsyncSession, event: TrackedEvent) -> Welcome | None:
        now = self.clock.now()
        tenant_id = event.tenant_id
        external_userid = str(event.properties.get("external_userid") or "")
        customer = await self._customer(session, event, external_userid)
        customer_id = customer.customer_id if customer else self._customer_id(event, external_userid)
        template_id = self.settings.welcome_template_id
        source = await touches.template(session, tenant_id, template_id, "wecom", customer.locale if customer else None)
        if source is None:
            return None  # no welcome configured for this tenant
        touch = {
            "tenant_id": tenant_id,
            "touch_key": f"welcome:{event.event_id}",
            "customer_id": customer_id,
            "journey_id": None,
            "channel": "wecom",
            "template_id": template_id,
            "priority": "transactional",
            "requested_at": event.received_at,
            "updated_at": now,
            "attempts": 0,
        }
        if customer is None and await directory.is_erased(session, tenant_id, customer_id):
            return Welcome(_parked(touch, "suppressed", "customer_erased", "the customer was erased"))
        if now - event.received_at > timedelta(seconds=self.settings.welcome_window_seconds):
            age = (now - event.received_at).total_seconds()
            reason = f"the welcome code was {age:.0f} s old (valid {self.settings.welcome_window_seconds:.0f} s)"
            return Welcome(_parked(touch, "suppressed", "welcome_code_expired", reason))
        credentials = await touches.credentials(session, tenant_id, "wecom")
        if credentials is None:
            return Welcome(_parked(touch, "suppressed", "no_channel_configured", "the wecom channel is not configured"))
        # ``traits`` is always there, so ``{{ traits.name | default("") }}`` also renders for a new customer.
        profile = {"traits": {}, **(customer.variables or {})} if customer else {"traits": {}}
        variables = {
            **profile,
            "customer": profile,
            "customer_id": customer_id,
            "staff_id": event.properties.get("staff_id"),
            "external_userid": external_userid,
            "state": event.properties.get("state"),
        }
        try:
            message = render_source(template_id, source, variables)
        except TemplateFailure as exc:
            return Welcome(_parked(touch, "failed", "template_error", str(exc)))
        touch |= {"status": "sending", "attempts": 1, "body": message.text, "due_at": now + LEASE, "sent_at": now}
        return Welcome(touch, credentials, message.text)

    async def _customer(self, session: AsyncSession, event: TrackedEvent, external_userid: str) -> CustomerRow | None:
        if event.customer_id:
            survivor = await directory.resolve(session, event.tenant_id, event.customer_id)
            return await session.get(CustomerRow, (event.tenant_id, survivor))
        if not external_userid:
            return None
        found = await session.execute(
            select(CustomerRow)
            .where(CustomerRow.tenant_id == event.tenant_id, CustomerRow.wecom_external_userid == external_userid)
            .limit(1)
        )
        return found.scalar_one_or_none()

    @staticmethod
    def _customer_id(event: TrackedEvent, external_userid: str) -> str:
        return event.customer_id or f"{PROVISIONAL_PREFIX}{external_userid}"

    async def _record(self, session: AsyncSession, decided: Welcome) -> bool:
        """Insert the touch; False when it exists (a redelivered event). A touch decided without a send publishes
        its result in the same transaction."""
        values = decided.touch
        inserted = await session.execute(
            insert(TouchRow).values(**values).on_conflict_do_nothing().returning(TouchRow.touch_key)
        )
        if inserted.first() is None:
            return False
        if values["status"] != "sending":
            row = await session.get(TouchRow, (values["tenant_id"], values["touch_key"]))
            assert row is not None
            status = TouchStatus.SUPPRESSED if values["status"] == "suppressed" else TouchStatus.FAILED
            await results.publish(session, row, status, values["updated_at"], f"{row.reason_code}: {row.reason}")
        return True

    async def _settle(
        self, session: AsyncSession, decided: Welcome, kind: str, errcode: int | None, reason: str | None
    ) -> None:
        """Record the provider's answer on the touch while it is still ours (status ``sending``), and publish it."""
        key = (decided.touch["tenant_id"], decided.touch["touch_key"])
        touch = (
            await session.execute(
                select(TouchRow)
                .where(TouchRow.tenant_id == key[0], TouchRow.touch_key == key[1], TouchRow.status == "sending")
                .with_for_update()
            )
        ).scalar_one_or_none()
        if touch is None:  # erased meanwhile, or the lease ran out and the scheduler failed it
            return
        now = self.clock.now()
        touch.updated_at, touch.due_at = now, None
        if kind == "ok":
            touch.status = "sent"
            await results.publish(session, touch, TouchStatus.SENT, now)
            return
        code = WELCOME_CODES.get(errcode or 0) or {"permanent": "permanent_error", "config": "config_error"}.get(
            kind, "provider_unavailable"
        )
        touch.status, touch.reason_code, touch.reason, touch.sent_at = "failed", code, reason, None
        await results.publish(session, touch, TouchStatus.FAILED, now, f"{code}: {reason}")


def _parked(touch: dict[str, Any], status: str, reason_code: str, reason: str) -> dict[str, Any]:
    return touch | {"status": status, "reason_code": reason_code, "reason": reason}
