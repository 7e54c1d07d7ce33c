"""The second phase of WeCom mass messages: a poller (scheduler role) that reads each created task back until the
staff member sent it or the give-up time passed, and settles its touch.

A poll claims due checks in one short transaction (``FOR UPDATE SKIP LOCKED``; the next check moves to a lease, so
two replicas never read one task at the same due time), reads WeCom once per message id (``get_groupmsg_task``,
then ``get_groupmsg_send_result`` for the sender when they sent it), and settles in a second transaction: a
delivered or failed result on ``touches.results.v1``, WeCom reachability revoked for a customer who is not a
friend any more, a quota hold for one WeCom says is over quota, or the next check with backoff.
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import TouchStatus
from scrm_kit.clock import Clock
from scrm_notify.adapters import directory, touches, wecom_checks
from scrm_notify.adapters.channels.base import Credentials
from scrm_notify.adapters.channels.wecom import MassResults, WeComAdapter
from scrm_notify.adapters.orm import TouchRow, WeComMassCheckRow
from scrm_notify.domain import clock_rules
from scrm_notify.domain.delivery import SendOutcome
from scrm_notify.domain.wecom_results import OVER_QUOTA, Verdict, next_check, quota_hold_until, verdict
from scrm_notify.service import results
from scrm_notify.settings import WeComSettings

logger = logging.getLogger(__name__)
READS_AT_ONCE = 8
Key = tuple[str, str]


def tracking_row(
    tenant_id: str,
    touch_key: str,
    customer_id: str,
    msgid: str,
    sender: str | None,
    external_userid: str,
    now: datetime,
    settings: WeComSettings,
) -> dict[str, Any]:
    """The check row that starts reading a just-created mass message back."""
    give_up_at = now + timedelta(hours=settings.result_give_up_hours)
    return {
        "tenant_id": tenant_id,
        "touch_key": touch_key,
        "customer_id": customer_id,
        "msgid": msgid,
        "sender": sender,
        "external_userid": external_userid,
        "created_at": now,
        "give_up_at": give_up_at,
        "next_check_at": next_check(now, 0, settings.result_poll_seconds, give_up_at),
        "checks": 0,
    }


@dataclass(frozen=True)
class WeComResults:
    sessions: async_sessionmaker[AsyncSession]
    adapter: WeComAdapter
    clock: Clock
    settings: WeComSettings

    async def poll(self) -> int:
        """Read back the due mass messages (one batch) and settle their touches; return how many were due."""
        now = self.clock.now()
        lease_until = now + timedelta(seconds=self.settings.result_lease_seconds)
        async with self.sessions() as session, session.begin():
            claimed = await wecom_checks.claim_due(session, now, self.settings.result_poll_batch, lease_until)
            tenants = sorted({row.tenant_id for row in claimed})
            credentials = {t: await touches.credentials(session, t, "wecom") for t in tenants}
        if not claimed:
            return 0
        by_message: dict[Key, list[Any]] = defaultdict(list)
        for row in claimed:
            by_message[(row.tenant_id, row.msgid)].append(row)
        answers = await self._read(by_message, credentials)
        await self._settle(claimed, answers)
        return len(claimed)

    async def _read(
        self, by_message: dict[Key, list[Any]], credentials: dict[str, Credentials | None]
    ) -> dict[Key, MassResults]:
        """One read per message id (all its recipients' touches at once), a few messages side by side."""
        limit = asyncio.Semaphore(READS_AT_ONCE)

        async def one(key: Key, rows: list[Any]) -> tuple[Key, MassResults]:
            found = credentials.get(key[0])
            if found is None:
                return key, MassResults(error=SendOutcome("config", "the wecom channel is not configured"))
            senders = {row.sender for row in rows}
            sender = senders.pop() if len(senders) == 1 else None
            async with limit:
                return key, await self.adapter.mass_results(found, key[1], sender, self.settings.result_page_size)

        return dict(await asyncio.gather(*(one(key, rows) for key, rows in by_message.items())))

    async def _settle(self, claimed: Sequence[Any], answers: dict[Key, MassResults]) -> None:
        now = self.clock.now()
        async with self.sessions() as session, session.begin():
            held = await wecom_checks.lock_claimed(session, [(r.tenant_id, r.touch_key, r.checks) for r in claimed])
            if not held:
                return
            rows = await session.execute(
                select(TouchRow)
                .where(tuple_(TouchRow.tenant_id, TouchRow.touch_key).in_(list(held)))
                .order_by(TouchRow.tenant_id, TouchRow.touch_key)
                .with_for_update()
            )
            locked = {(t.tenant_id, t.touch_key): t for t in rows.scalars()}
            finished: list[Key] = []
            for key, check in held.items():
                answer = answers[(check.tenant_id, check.msgid)]
                touch = locked.get(key)
                if touch is None:  # erased or merged away meanwhile
                    finished.append(key)
                    continue
                if await self._apply(session, check, touch, answer, now):
                    finished.append(key)
            if finished:
                await session.execute(
                    delete(WeComMassCheckRow).where(
                        tuple_(WeComMassCheckRow.tenant_id, WeComMassCheckRow.touch_key).in_(finished)
                    )
                )

    async def _apply(
        self, session: AsyncSession, check: WeComMassCheckRow, touch: TouchRow, answer: MassResults, now: datetime
    ) -> bool:
        """Settle one touch from WeCom's answer; True when its check is finished."""
        error = answer.error.reason if answer.error is not None else None
        status = None if error is not None else answer.statuses.get(check.external_userid, 0)
        decided = verdict(status, now, check.give_up_at, check.checks, self.settings.result_poll_seconds, error)
        if decided.action == "wait":
            check.next_check_at, check.last_error = decided.next_check_at, error
            if error is not None:
                logger.info("wecom results not read", extra={"touch_key": touch.touch_key, "reason": error})
            return False
        if decided.action == "delivered":
            if results.RANK.get(touch.status, 99) < results.RANK["delivered"]:
                touch.status, touch.updated_at = "delivered", now
            await results.publish(
                session, touch, TouchStatus.DELIVERED, answer.send_times.get(check.external_userid, now)
            )
            return True
        sent_at = answer.send_times.get(check.external_userid) or touch.sent_at or now
        if touch.status == "sent":
            await self._fail(session, touch, decided, now)
        if decided.reason_code == "wecom_not_friend":
            await directory.record_consent(
                session, touch.tenant_id, touch.customer_id, "wecom", "blocked", "provider:wecom_status_2", now
            )
        elif status == OVER_QUOTA:
            policy = await touches.policy(session, touch.tenant_id)
            tz = clock_rules.zone(policy.platform.platform_timezone, "Asia/Shanghai")
            until = quota_hold_until(sent_at, policy.platform.wecom_over_quota_hold, tz)
            await wecom_checks.hold_quota(session, touch.tenant_id, touch.customer_id, until, now)
        return True

    @staticmethod
    async def _fail(session: AsyncSession, touch: TouchRow, decided: Verdict, now: datetime) -> None:
        touch.status, touch.reason_code, touch.reason = "failed", decided.reason_code, decided.reason
        touch.due_at = touch.sent_at = None
        touch.updated_at = now
        await results.publish(session, touch, TouchStatus.FAILED, now, f"{decided.reason_code}: {decided.reason}")
