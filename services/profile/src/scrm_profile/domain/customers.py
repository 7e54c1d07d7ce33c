"""Customer value rules: aggregates from orders and the lifecycle stage they imply."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

LifecycleStage = Literal["prospect", "new", "active", "silent", "sleeping", "churned"]


@dataclass(frozen=True, slots=True)
class OrderFact:
    amount: Decimal
    refunded_amount: Decimal
    occurred_at: datetime

    @property
    def net(self) -> Decimal:
        return max(Decimal("0"), self.amount - self.refunded_amount)

    @property
    def fully_refunded(self) -> bool:
        return self.amount > 0 and self.refunded_amount >= self.amount


@dataclass(frozen=True, slots=True)
class Aggregates:
    orders_count: int
    revenue_total: Decimal
    first_order_at: datetime | None
    last_order_at: datetime | None
    avg_interval_days: float | None = None

    @property
    def average_order_value(self) -> Decimal | None:
        return (self.revenue_total / self.orders_count).quantize(Decimal("0.01")) if self.orders_count else None


def aggregate(orders: Iterable[OrderFact]) -> Aggregates:
    """Aggregates over a customer's orders, by when they happened (not when they arrived); fully refunded
    orders do not count, partial refunds reduce revenue."""
    kept = [o for o in orders if not o.fully_refunded]
    if not kept:
        return Aggregates(0, Decimal("0.00"), None, None)
    first = min(o.occurred_at for o in kept)
    last = max(o.occurred_at for o in kept)
    interval = (last - first).total_seconds() / 86_400 / (len(kept) - 1) if len(kept) > 1 else None
    return Aggregates(
        orders_count=len(kept),
        revenue_total=sum((o.net for o in kept), Decimal("0.00")),
        first_order_at=first,
        last_order_at=last,
        avg_interval_days=interval,
    )
