import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from scrm_profile.domain.customers import OrderFact, aggregate, stage_for_orders

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_aggregates_do_not_depend_on_arrival_order() -> None:
    orders = [OrderFact(Decimal(f"{10 + i}.50"), Decimal("0"), T0 + timedelta(days=i * 3)) for i in range(20)]
    expected = aggregate(orders)
    for seed in range(5):
        shuffled = orders[:]
        random.Random(seed).shuffle(shuffled)
        assert aggregate(shuffled) == expected
    assert expected.orders_count == 20
    assert expected.revenue_total == sum(Decimal(f"{10 + i}.50") for i in range(20))
    assert expected.first_order_at == T0
    assert expected.last_order_at == T0 + timedelta(days=57)


def test_refunds_reduce_revenue_and_a_full_refund_removes_the_order() -> None:
    orders = [
        OrderFact(Decimal("100"), Decimal("30"), T0),
        OrderFact(Decimal("50"), Decimal("50"), T0 + timedelta(days=1)),
    ]
    result = aggregate(orders)
    assert result.orders_count == 1
    assert result.revenue_total == Decimal("70")
    assert result.last_order_at == T0


def test_stage_follows_the_number_of_orders() -> None:
    assert [stage_for_orders(n) for n in (0, 1, 2, 7)] == ["prospect", "new", "active", "active"]
