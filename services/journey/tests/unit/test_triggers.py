"""Triggers: profile changes that enter a journey, date-relative moments and festivals (lunar ones included)."""

from datetime import UTC, date, datetime
from typing import Any

from scrm_contracts import (
    CustomerSnapshot,
    EventTracked,
    LifecycleStageChanged,
    SegmentEntered,
    SegmentExited,
    TierChanged,
)
from scrm_journey.domain.calendar import festival_date
from scrm_journey.domain.definition import JourneyDefinition, Reentry
from scrm_journey.domain.triggers import matches, may_reenter, next_entry, overlay
from scrm_journey.domain.validation import parse_definition

NOW = datetime(2031, 5, 1, 4, 0, tzinfo=UTC)
BASE = {"tenant_id": "t", "customer_id": "c", "occurred_at": NOW}


def journey(trigger: dict[str, Any]) -> JourneyDefinition:
    return parse_definition({"name": "t", "trigger": trigger, "start": "a", "nodes": {"a": {"type": "exit"}}})


def facts(**fields: Any) -> dict[str, Any]:
    return CustomerSnapshot(**fields).model_dump(mode="json")


def test_event_trigger_with_property_filter() -> None:
    j = journey({"type": "event", "event": "Product Viewed", "where": {"category": "tea"}})
    seen = EventTracked(
        event_id="e", event="Product Viewed", source_event_id="s", properties={"category": "tea"}, **BASE
    )
    other = EventTracked(
        event_id="e", event="Product Viewed", source_event_id="s", properties={"category": "ink"}, **BASE
    )
    assert matches(j, seen) and not matches(j, other)


def test_stage_tier_and_segment_triggers() -> None:
    stage = LifecycleStageChanged(event_id="e", from_stage="active", to_stage="silent", orders_count=3, **BASE)
    assert matches(journey({"type": "stage_changed", "to_stage": "silent"}), stage)
    assert matches(journey({"type": "stage_changed", "from_stage": "active"}), stage)
    assert not matches(journey({"type": "stage_changed", "from_stage": "new", "to_stage": "silent"}), stage)
    assert overlay(facts(lifecycle_stage="active"), stage)["lifecycle_stage"] == "silent"
    tier = TierChanged(event_id="e", from_tier="standard", to_tier="dt", **BASE)
    assert matches(journey({"type": "tier_changed", "to_tier": "dt"}), tier)
    assert not matches(journey({"type": "tier_changed", "to_tier": "ka"}), tier)
    entered = SegmentEntered(event_id="e", segment_id="seg_1", segment_name="VIP", **BASE)
    exited = SegmentExited(event_id="e", segment_id="seg_1", segment_name="VIP", **BASE)
    assert matches(journey({"type": "segment", "segment_id": "seg_1"}), entered)
    assert not matches(journey({"type": "segment", "segment_id": "seg_1"}), exited)
    assert matches(journey({"type": "segment", "segment_id": "seg_1", "on": "exited"}), exited)


def test_birthday_recurs_yearly_at_ten_customer_time() -> None:
    j = journey({"type": "date", "field": "birthday", "at_time": "10:00"})
    assert next_entry(j, facts(birthday=date(1990, 5, 1)), NOW) == datetime(2032, 5, 1, 2, 0, tzinfo=UTC)
    assert next_entry(j, facts(birthday=date(1990, 5, 2)), NOW) == datetime(2031, 5, 2, 2, 0, tzinfo=UTC)
    assert next_entry(j, facts(), NOW) is None
    leap = next_entry(j, facts(birthday=date(2000, 2, 29)), NOW)
    assert leap == datetime(2032, 2, 29, 2, 0, tzinfo=UTC)


def test_membership_expiry_first_order_and_trait_dates() -> None:
    expiry = journey({"type": "date", "field": "membership_expiry", "offset_days": -7})
    snap = facts(membership_expires_at=datetime(2031, 6, 1, 12, 0, tzinfo=UTC))
    assert next_entry(expiry, snap, NOW) == datetime(2031, 5, 25, 2, 0, tzinfo=UTC)
    first = journey({"type": "date", "field": "first_order", "offset_days": 30, "at_time": "09:00"})
    assert next_entry(first, facts(first_order_at=datetime(2031, 4, 20, tzinfo=UTC)), NOW) == datetime(
        2031, 5, 20, 1, 0, tzinfo=UTC
    )
    assert next_entry(first, facts(first_order_at=datetime(2031, 1, 1, tzinfo=UTC)), NOW) is None  # once, passed
    trait = journey({"type": "date", "field": "trait", "trait": "graduation", "offset_days": -30})
    assert next_entry(trait, facts(traits={"graduation": "2031-07-01"}), NOW) == datetime(2031, 6, 1, 2, tzinfo=UTC)
    anniversary = journey({"type": "date", "field": "membership_anniversary"})
    started = facts(membership_started_at=datetime(2031, 3, 1, tzinfo=UTC))
    assert next_entry(anniversary, started, NOW) == datetime(2032, 3, 1, 2, 0, tzinfo=UTC)


def test_lunar_festivals_come_from_the_calendar_library() -> None:
    assert festival_date("spring_festival", 2027) == date(2027, 2, 6)
    assert festival_date("mid_autumn", 2027) == date(2027, 9, 15)
    assert festival_date("dragon_boat", 2031) == date(2031, 6, 24)
    assert festival_date("singles_day", 2031) == date(2031, 11, 11)
    mid_autumn = journey({"type": "festival", "festival": "mid_autumn", "offset_days": -3, "at_time": "10:00"})
    assert next_entry(mid_autumn, facts(), NOW) == datetime(2031, 9, 28, 2, 0, tzinfo=UTC)  # 15th of 8th month: 10-01


def test_reentry_policies() -> None:
    last = datetime(2031, 4, 1, tzinfo=UTC)
    assert may_reenter(Reentry(policy="never"), None, NOW)
    assert not may_reenter(Reentry(policy="never"), last, NOW)
    assert may_reenter(Reentry(policy="always"), last, NOW)
    assert not may_reenter(Reentry(policy="after_days", days=60), last, NOW)
    assert may_reenter(Reentry(policy="after_days", days=30), last, NOW)
