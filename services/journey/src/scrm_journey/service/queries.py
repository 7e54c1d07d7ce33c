"""Read side: journey stats (per-node counts, goal conversion with and without the holdout), instance lists."""

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_journey.adapters.orm import instances, transitions
from scrm_journey.service.engine import RUNNING


@dataclass
class GroupStats:
    entered: int = 0
    converted: int = 0

    @property
    def rate(self) -> float | None:
        return round(self.converted / self.entered, 4) if self.entered else None


@dataclass
class JourneyStats:
    entered: int = 0
    states: dict[str, int] = field(default_factory=dict)
    treatment: GroupStats = field(default_factory=GroupStats)
    holdout: GroupStats = field(default_factory=GroupStats)
    current: dict[str, int] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=dict)

    @property
    def uplift(self) -> float | None:
        """Conversion rate of those touched minus that of the holdout (absolute, in rate points)."""
        t, h = self.treatment.rate, self.holdout.rate
        return round(t - h, 4) if t is not None and h is not None else None


async def journey_stats(session: AsyncSession, tenant_id: str, journey_id: str) -> JourneyStats:
    mine = (instances.c.tenant_id == tenant_id) & (instances.c.journey_id == journey_id)
    stats = JourneyStats()
    rows = await session.execute(
        select(instances.c.holdout, instances.c.state, func.count(), func.count(instances.c.goal_at))
        .where(mine)
        .group_by(instances.c.holdout, instances.c.state)
    )
    for holdout, state, count, converted in rows:
        stats.entered += count
        stats.states[state] = stats.states.get(state, 0) + count
        group = stats.holdout if holdout else stats.treatment
        group.entered += count
        group.converted += converted
    current = await session.execute(
        select(instances.c.current_node, func.count())
        .where(mine, instances.c.state.in_(RUNNING))
        .group_by(instances.c.current_node)
    )
    stats.current = {node or "": count for node, count in current}
    passed = await session.execute(
        select(transitions.c.node_id, func.count(func.distinct(transitions.c.instance_id)))
        .select_from(transitions.join(instances, transitions.c.instance_id == instances.c.instance_id))
        .where(mine)
        .group_by(transitions.c.node_id)
    )
    stats.passed = {node: count for node, count in passed}
    return stats


async def instances_of(
    session: AsyncSession,
    tenant_id: str,
    *,
    journey_id: str | None = None,
    customer_id: str | None = None,
    node_id: str | None = None,
    state: str | None = None,
    limit: int = 100,
) -> list[tuple[Any, list[Any]]]:
    """Instances (newest first) with their transitions in order."""
    query = select(instances).where(instances.c.tenant_id == tenant_id)
    if journey_id is not None:
        query = query.where(instances.c.journey_id == journey_id)
    if customer_id is not None:
        query = query.where(instances.c.customer_id == customer_id)
    if node_id is not None:
        query = query.where(instances.c.current_node == node_id)
    if state is not None:
        query = query.where(instances.c.state == state)
    found = (await session.execute(query.order_by(instances.c.entered_at, instances.c.instance_id).limit(limit))).all()
    moves = (
        await session.execute(
            select(transitions)
            .where(
                transitions.c.tenant_id == tenant_id,
                transitions.c.instance_id.in_([i.instance_id for i in found]),
            )
            .order_by(transitions.c.id)
        )
    ).all()
    by_instance: dict[str, list[Any]] = {}
    for move in moves:
        by_instance.setdefault(move.instance_id, []).append(move)
    return [(i, by_instance.get(i.instance_id, [])) for i in found]
