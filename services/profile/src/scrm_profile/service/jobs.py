"""Scheduled work: the lifecycle sweep, the segment sweep and the value refresh (CLV fit, RFM, tiers).

Every job is safe to run on any number of replicas: the lifecycle sweep claims due customers with
``FOR UPDATE SKIP LOCKED``; per-tenant jobs take a transaction-scoped advisory lock and skip a tenant another
replica is already working on.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import TierChanged
from scrm_contracts.rules import parse_rule
from scrm_kit.clock import Clock
from scrm_kit.outbox import enqueue
from scrm_profile.adapters import repository as repo
from scrm_profile.adapters.orm import CustomerRow, SegmentRow, outbox
from scrm_profile.service.consume import EventWork
from scrm_profile.service.segments import Segment, sync_segment
from scrm_profile.service.snapshots import records, snapshot_of, updated_record
from scrm_profile.service.valuation import fit_tenant, recompute_rfm, recompute_tiers

logger = logging.getLogger(__name__)


async def _try_lock(session: AsyncSession, name: str) -> bool:
    return bool((await session.execute(text("SELECT pg_try_advisory_xact_lock(hashtext(:n))"), {"n": name})).scalar())


class LifecycleSweep:
    """Moves customers whose stage expired (silent, sleeping, churned) without scanning the table."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        batch_size: int = 500,
        tenant_id: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.batch_size = batch_size
        self._tenant_id = tenant_id  # None: every tenant (a test or a backfill may confine it to one)

    async def __call__(self) -> int:
        now = self._clock.now()
        query = select(CustomerRow).where(CustomerRow.next_stage_at <= now)
        if self._tenant_id is not None:
            query = query.where(CustomerRow.tenant_id == self._tenant_id)
        async with self._sessions() as session, session.begin():
            due = (
                (
                    await session.execute(
                        query.order_by(CustomerRow.next_stage_at)
                        .limit(self.batch_size)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            work = EventWork(session, now)
            for customer in due:
                cause = f"time:{customer.next_stage_at.isoformat() if customer.next_stage_at else ''}"
                await work.finish(customer, [], cause, value_changed=False)
        return len(due)


class SegmentSweep:
    """Re-checks time-dependent segments (event counts in windows, "within the last N days") set-based."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def __call__(self) -> int:
        async with self._sessions() as session:
            keys = (
                await session.execute(
                    select(SegmentRow.tenant_id, SegmentRow.segment_id).where(SegmentRow.time_dependent)
                )
            ).all()
        for tenant_id, segment_id in keys:
            async with self._sessions() as session, session.begin():
                if not await _try_lock(session, f"segment:{tenant_id}:{segment_id}"):
                    continue
                row = await session.get(SegmentRow, (tenant_id, segment_id))
                if row is not None:
                    await sync_segment(
                        session, tenant_id, Segment(row.segment_id, row.name, parse_rule(row.rule)), self._clock.now()
                    )
        return 0


@dataclass
class ValueReport:
    tenant_id: str
    customers_fitted: int
    bgnbd: dict[str, float] | None
    gamma_gamma: dict[str, float] | None
    rfm_changed: int
    tiers_changed: int
    seconds: float


async def refresh_tenant_value(session: AsyncSession, tenant_id: str, now: datetime) -> ValueReport:
    """Fit CLV, score everyone, recompute RFM and tiers, publish what changed, and bring every segment of the
    tenant up to date with the new scores, set-based (one transaction): events re-evaluate segments only when they
    change what a rule reads, so scores moved here would otherwise wait for the customer's next change."""
    import time

    started = time.perf_counter()
    settings = await repo.tenant_settings(session, tenant_id)
    fit = await fit_tenant(session, tenant_id, settings, now)
    rfm_changed = await recompute_rfm(session, tenant_id)
    tier_changes = await recompute_tiers(session, tenant_id, settings)
    changed_ids = set(rfm_changed) | {c for c, _, _ in tier_changes}
    tier_events = [
        TierChanged(
            event_id=f"tier:{c}:{new}:{now.isoformat()}",
            tenant_id=tenant_id,
            customer_id=c,
            occurred_at=now,
            from_tier=old,
            to_tier=new,
        )
        for c, old, new in tier_changes
    ]
    outgoing = records(tier_events)
    ids = sorted(changed_ids)
    for start in range(0, len(ids), 1000):
        rows = (
            (
                await session.execute(
                    select(CustomerRow).where(
                        CustomerRow.tenant_id == tenant_id, CustomerRow.customer_id.in_(ids[start : start + 1000])
                    )
                )
            )
            .scalars()
            .all()
        )
        outgoing += [updated_record(row, snapshot_of(row), f"value:{now.isoformat()}", now) for row in rows]
    await enqueue(session, outbox, outgoing)
    for row in (await session.execute(select(SegmentRow).where(SegmentRow.tenant_id == tenant_id))).scalars():
        await sync_segment(session, tenant_id, Segment(row.segment_id, row.name, parse_rule(row.rule)), now)
    return ValueReport(
        tenant_id=tenant_id,
        customers_fitted=fit.customers if fit else 0,
        bgnbd={k: getattr(fit.bgnbd, k) for k in ("r", "alpha", "a", "b", "log_likelihood")} if fit else None,
        gamma_gamma={k: getattr(fit.gamma_gamma, k) for k in ("p", "q", "v")} if fit else None,
        rfm_changed=len(rfm_changed),
        tiers_changed=len(tier_changes),
        seconds=time.perf_counter() - started,
    )


class ValueRefresh:
    """Runs ``refresh_tenant_value`` for every tenant with customers, one replica per tenant at a time."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def __call__(self) -> int:
        async with self._sessions() as session:
            tenants = (await session.execute(select(func.distinct(CustomerRow.tenant_id)))).scalars().all()
        for tenant_id in tenants:
            async with self._sessions() as session, session.begin():
                if await _try_lock(session, f"value:{tenant_id}"):
                    report = await refresh_tenant_value(session, tenant_id, self._clock.now())
                    logger.info("value refreshed", extra={"tenant_id": tenant_id, "seconds": report.seconds})
        return 0
