"""Lifecycle stages after the first purchase: active -> silent -> sleeping -> churned, by days since the last
order, optionally scaled by the customer's own purchase rhythm; plus prospect (no order) and new (one order)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from scrm_profile.domain.customers import LifecycleStage

STAGE_ORDER: tuple[LifecycleStage, ...] = ("prospect", "new", "active", "silent", "sleeping", "churned")


@dataclass(frozen=True, slots=True)
class StageThresholds:
    silent_days: float = 30
    sleeping_days: float = 90
    churned_days: float = 180
    rhythm_scaling: bool = False
    rhythm_min_orders: int = 3
    rhythm_multipliers: tuple[float, float, float] = (1.5, 3.0, 6.0)

    def for_customer(self, orders_count: int, avg_interval_days: float | None) -> tuple[float, float, float]:
        """Thresholds (silent, sleeping, churned) in days, stretched for customers who buy at a slower rhythm."""
        base = (self.silent_days, self.sleeping_days, self.churned_days)
        if not self.rhythm_scaling or avg_interval_days is None or orders_count < self.rhythm_min_orders:
            return base
        scaled = tuple(avg_interval_days * m for m in self.rhythm_multipliers)
        return (max(base[0], scaled[0]), max(base[1], scaled[1]), max(base[2], scaled[2]))


def stage_at(
    orders_count: int,
    last_order_at: datetime | None,
    avg_interval_days: float | None,
    now: datetime,
    thresholds: StageThresholds,
) -> tuple[LifecycleStage, datetime | None]:
    """The stage at ``now`` and when the next time-driven change is due (None when none is)."""
    if orders_count <= 0 or last_order_at is None:
        return "prospect", None
    silent, sleeping, churned = thresholds.for_customer(orders_count, avg_interval_days)
    idle_days = (now - last_order_at).total_seconds() / 86_400
    if idle_days >= churned:
        return "churned", None
    if idle_days >= sleeping:
        return "sleeping", last_order_at + timedelta(days=churned)
    if idle_days >= silent:
        return "silent", last_order_at + timedelta(days=sleeping)
    return ("new" if orders_count == 1 else "active"), last_order_at + timedelta(days=silent)
