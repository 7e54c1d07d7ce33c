"""Which profile changes enter a customer into a journey, and when date triggers fire next."""

from datetime import datetime, timedelta
from typing import Any

from scrm_contracts import (
    EventTracked,
    LifecycleStageChanged,
    ProfileChange,
    SegmentEntered,
    SegmentExited,
    TierChanged,
)
from scrm_journey.domain.calendar import next_date_trigger, next_festival, zone
from scrm_journey.domain.definition import (
    DateTrigger,
    EventTrigger,
    FestivalTrigger,
    JourneyDefinition,
    Reentry,
    SegmentTrigger,
    StageTrigger,
    TierTrigger,
)


def matches(definition: JourneyDefinition, change: ProfileChange) -> bool:
    """Whether ``change`` is this journey's (change-driven) trigger."""
    trigger = definition.trigger
    if isinstance(trigger, EventTrigger):
        return isinstance(change, EventTracked) and trigger.matches(change.event, change.properties)
    if isinstance(trigger, StageTrigger):
        return (
            isinstance(change, LifecycleStageChanged)
            and trigger.to_stage in (None, change.to_stage)
            and trigger.from_stage in (None, change.from_stage)
        )
    if isinstance(trigger, TierTrigger):
        return (
            isinstance(change, TierChanged)
            and trigger.to_tier in (None, change.to_tier)
            and trigger.from_tier in (None, change.from_tier)
        )
    if isinstance(trigger, SegmentTrigger):
        kind = SegmentEntered if trigger.on == "entered" else SegmentExited
        return isinstance(change, kind) and change.segment_id == trigger.segment_id
    return False


def overlay(facts: dict[str, Any], change: ProfileChange | None) -> dict[str, Any]:
    """The snapshot with what the triggering change itself says (it can be newer than the replicated snapshot)."""
    if isinstance(change, LifecycleStageChanged):
        return {**facts, "lifecycle_stage": change.to_stage, "orders_count": change.orders_count}
    if isinstance(change, TierChanged):
        return {**facts, "tier": change.to_tier}
    return facts


def is_dated(definition: JourneyDefinition) -> bool:
    return isinstance(definition.trigger, DateTrigger | FestivalTrigger)


def next_entry(definition: JourneyDefinition, facts: dict[str, Any], now: datetime) -> datetime | None:
    """When a date or festival trigger next enters this customer (``None``: never)."""
    trigger = definition.trigger
    tz = zone(facts.get("timezone"), definition.timezone)
    if isinstance(trigger, DateTrigger):
        return next_date_trigger(trigger, facts, now, tz)
    if isinstance(trigger, FestivalTrigger):
        return next_festival(trigger, now, tz)
    return None


def may_reenter(reentry: Reentry, last_entered_at: datetime | None, now: datetime) -> bool:
    """The re-entry policy: never again, after N days, or always."""
    if last_entered_at is None or reentry.policy == "always":
        return True
    if reentry.policy == "never":
        return False
    return now >= last_entered_at + timedelta(days=reentry.days or 0)
