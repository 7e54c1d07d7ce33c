import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from scrm_profile.domain.customers import OrderFact, aggregate
from scrm_profile.domain.identity import normalise_email, normalise_phone, survivor
from scrm_profile.domain.lifecycle import StageThresholds, stage_at

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


def test_stage_follows_orders_and_days_since_the_last_one() -> None:
    t = StageThresholds()
    assert stage_at(0, None, None, T0, t) == ("prospect", None)
    assert stage_at(1, T0, None, T0 + timedelta(days=3), t) == ("new", T0 + timedelta(days=30))
    assert stage_at(4, T0, 10, T0 + timedelta(days=29), t) == ("active", T0 + timedelta(days=30))
    assert stage_at(4, T0, 10, T0 + timedelta(days=30), t) == ("silent", T0 + timedelta(days=90))
    assert stage_at(1, T0, None, T0 + timedelta(days=100), t) == ("sleeping", T0 + timedelta(days=180))
    assert stage_at(9, T0, 5, T0 + timedelta(days=180), t) == ("churned", None)


def test_rhythm_scaling_stretches_thresholds_for_slow_regular_buyers() -> None:
    t = StageThresholds(rhythm_scaling=True)
    # Buys every 60 days: silent only after 1.5 x 60 = 90 days, not the default 30.
    assert stage_at(5, T0, 60, T0 + timedelta(days=45), t)[0] == "active"
    assert stage_at(5, T0, 60, T0 + timedelta(days=95), t)[0] == "silent"
    assert stage_at(2, T0, 60, T0 + timedelta(days=45), t)[0] == "silent"  # too few orders to know a rhythm


def test_identifiers_are_normalised_before_matching() -> None:
    assert normalise_phone("138 1234 5678") == "+8613812345678"
    assert normalise_phone("+86-138-1234-5678") == "+8613812345678"
    assert normalise_phone("12345") is None
    assert normalise_phone("2025550123", "US") == "+12025550123"
    assert normalise_email("  Li.Wei@Example.COM ") == "li.wei@example.com"
    assert normalise_email("not-an-email") is None


def test_merge_survivor_is_the_oldest_then_smallest_id() -> None:
    assert survivor([("cus_b", T0), ("cus_a", T0 + timedelta(seconds=1))]) == "cus_b"
    assert survivor([("cus_b", T0), ("cus_a", T0)]) == "cus_a"


def test_every_rfm_cell_has_exactly_one_named_segment() -> None:
    from scrm_profile.domain.rfm import SEGMENTS, segment_of

    seen = {segment_of(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert seen == set(SEGMENTS)
    assert segment_of(5, 5, 5) == "champions"
    assert segment_of(1, 1, 1) == "lost"
    assert segment_of(1, 5, 5) == "cant_lose"
    assert segment_of(5, 1, 1) == "new"
