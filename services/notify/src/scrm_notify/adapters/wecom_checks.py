"""Rows of WeCom's second phase: mass messages whose results are still to be read back (claimed in batches with
``FOR UPDATE SKIP LOCKED``, so replicas never read the same one at once), and customers' over-quota holds."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_notify.adapters.orm import WeComMassCheckRow, WeComQuotaHoldRow

checks = WeComMassCheckRow.__table__


async def track(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Start reading these mass messages back (a touch already tracked is left as it is)."""
    if rows:
        await session.execute(insert(WeComMassCheckRow).values(list(rows)).on_conflict_do_nothing())


async def claim_due(session: AsyncSession, now: datetime, limit: int, lease_until: datetime) -> list[Any]:
    """Take up to ``limit`` due checks for this poller: their next check moves to ``lease_until`` (so no other
    replica takes them meanwhile, and a crashed poll is taken up again then) and their count goes up by one."""
    due = (
        select(checks.c.tenant_id, checks.c.touch_key)
        .where(checks.c.next_check_at <= now)
        .order_by(checks.c.next_check_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = await session.execute(
        update(checks)
        .where(tuple_(checks.c.tenant_id, checks.c.touch_key).in_(due))
        .values(next_check_at=lease_until, checks=checks.c.checks + 1)
        .returning(*checks.c)
    )
    return list(claimed)


async def lock_claimed(session: AsyncSession, claimed: Sequence[tuple[str, str, int]]) -> dict[tuple[str, str], Any]:
    """The claimed checks that are still ours (same check count), locked, in key order."""
    if not claimed:
        return {}
    wanted = {(t, k): n for t, k, n in claimed}
    rows = await session.execute(
        select(WeComMassCheckRow)
        .where(tuple_(WeComMassCheckRow.tenant_id, WeComMassCheckRow.touch_key).in_(list(wanted)))
        .order_by(WeComMassCheckRow.tenant_id, WeComMassCheckRow.touch_key)
        .with_for_update()
    )
    return {
        (row.tenant_id, row.touch_key): row
        for row in rows.scalars()
        if wanted.get((row.tenant_id, row.touch_key)) == row.checks
    }


async def hold_quota(session: AsyncSession, tenant_id: str, customer_id: str, until: datetime, now: datetime) -> None:
    """Hold WeCom marketing to the customer until ``until`` (a later hold already recorded stays)."""
    stmt = insert(WeComQuotaHoldRow).values(
        tenant_id=tenant_id, customer_id=customer_id, hold_until=until, recorded_at=now
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[WeComQuotaHoldRow.tenant_id, WeComQuotaHoldRow.customer_id],
            set_={"hold_until": func.greatest(WeComQuotaHoldRow.hold_until, until), "recorded_at": now},
        )
    )
