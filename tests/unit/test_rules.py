"""The shared rule language, evaluated in memory."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from scrm_contracts.rules import EventRule, evaluate, parse_rule, uses_events

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
