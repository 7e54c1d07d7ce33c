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


def aggregate(orders: Iterable[OrderFact]) -> Aggregates:
    """Aggregates over a customer's orders, by when they happened (not when they arrived); fully refunded
    orders do not count, partial refunds reduce revenue."""
    kept = [o for o in orders if not o.fully_refunded]
    if not kept:
        return Aggregates(0, Decimal("0.00"), None, None)
    return Aggregates(
        orders_count=len(kept),
        revenue_total=sum((o.net for o in kept), Decimal("0.00")),
        first_order_at=min(o.occurred_at for o in kept),
        last_order_at=max(o.occurred_at for o in kept),
    )


def stage_for_orders(orders_count: int) -> LifecycleStage:
    """Stage implied by purchases alone: no order yet, the first order, or a returning buyer."""
    if orders_count <= 0:
        return "prospect"
    if orders_count == 1:
        return "new"
    return "active"
