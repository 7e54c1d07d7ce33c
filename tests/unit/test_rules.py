"""The shared rule language, evaluated in memory."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from scrm_contracts.rules import EventRule, evaluate, matcher, parse_rule, uses_events

NOW = datetime(2026, 11, 25, tzinfo=UTC)
CUSTOMER = {
    "lifecycle_stage": "active",
    "orders_count": 3,
    "revenue_total": "620.50",
    "last_order_at": "2026-11-01T10:00:00+00:00",
    "tags": ["vip", "baby"],
    "traits": {"city": "Hangzhou"},
    "reachability": {"sms": "subscribed"},
    "tier": None,
}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"field": "lifecycle_stage", "op": "in", "value": ["active", "new"]}, True),
        ({"field": "revenue_total", "op": "gte", "value": 620.5}, True),
        ({"field": "revenue_total", "op": "gt", "value": 620.5}, False),
        ({"field": "tags", "op": "contains", "value": "vip"}, True),
        ({"field": "traits.city", "op": "eq", "value": "Hangzhou"}, True),
        ({"field": "traits.city", "op": "eq", "value": "Shanghai"}, False),
        ({"field": "last_order_at", "op": "within_last_days", "value": 30}, True),
        ({"field": "last_order_at", "op": "more_than_days_ago", "value": 30}, False),
        ({"field": "tier", "op": "exists"}, False),
        ({"not": {"field": "reachability.sms", "op": "eq", "value": "unsubscribed"}}, True),
        (
            {
                "any": [
                    {"field": "orders_count", "op": "lt", "value": 2},
                    {"field": "tags", "op": "contains", "value": "baby"},
                ]
            },
            True,
        ),
        (
            {"all": [{"field": "orders_count", "op": "gte", "value": 3}, {"field": "tier", "op": "eq", "value": "dt"}]},
            False,
        ),
    ],
)
def test_rules_against_a_snapshot(rule: object, expected: bool) -> None:
    assert evaluate(parse_rule(rule), CUSTOMER, NOW) is expected
    assert matcher(parse_rule(rule))(CUSTOMER, NOW, None) is expected


def test_event_rules_use_the_counter_and_are_flagged_for_sweeps() -> None:
    rule = parse_rule({"all": [{"event": "Order Completed", "min_count": 2, "within_days": 30}]})
    seen: list[EventRule] = []

    def counter(event_rule: EventRule) -> int:
        seen.append(event_rule)
        return 2

    assert evaluate(rule, CUSTOMER, NOW, counter) is True
    assert seen[0].within_days == 30
    assert uses_events(rule) and not uses_events(parse_rule({"field": "tier", "op": "exists"}))


@pytest.mark.parametrize(
    "bad",
    [
        {"field": "no_such_field", "op": "eq", "value": 1},
        {"field": "tier", "op": "in", "value": "dt"},
        {"field": "tier", "op": "eq"},
        {"all": []},
        {"field": "tier", "op": "resembles", "value": "x"},
    ],
)
def test_bad_rules_are_rejected(bad: object) -> None:
    with pytest.raises(ValidationError):
        parse_rule(bad)


def test_a_prepared_matcher_agrees_with_evaluate_on_random_rules_and_values() -> None:
    """``matcher`` (what the consumer runs per event) against ``evaluate`` (the reference) over values of every kind
    the snapshot and traits can hold: numbers of each type, number-like and date-like text, booleans, lists, None."""
    import random
    from decimal import Decimal

    rng = random.Random(7)
    values = [None, 0, 1, 2, 3, -1, 2.5, 0.1, Decimal("2"), Decimal("620.50"), Decimal("0.10"), True, False, "2",
              "2.50", "abc", "active", "new", "vip", "", "2026-11-01", "2026-11-01T10:00:00+00:00", [], ["vip"],
              ["vip", "new"], {"a": 1}, datetime(2026, 11, 1, tzinfo=UTC)]  # fmt: skip
    rule_values = [0, 1, 2, 2.5, 0.1, Decimal("620.5"), "2", "2.5", "abc", "active", "vip", "2026-11-01", True]
    ops = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "not_contains", "exists", "not_exists"]
    checked = 0
    for _ in range(4000):
        op = rng.choice(ops)
        if op in ("in", "not_in"):
            value: object = rng.sample(rule_values, rng.randint(1, 3))
        elif op in ("exists", "not_exists"):
            value = None
        else:
            value = rng.choice(rule_values)
        rule = parse_rule({"field": "traits.x", "op": op, "value": value})
        snapshot = {"traits": {"x": rng.choice(values)}} if rng.random() < 0.95 else {"traits": None}
        try:
            expected = evaluate(rule, snapshot, NOW)
        except (TypeError, ArithmeticError) as exc:
            with pytest.raises(type(exc)):
                matcher(rule)(snapshot, NOW, None)
            continue
        assert matcher(rule)(snapshot, NOW, None) is expected, (op, value, snapshot)
        checked += 1
    assert checked > 3000
