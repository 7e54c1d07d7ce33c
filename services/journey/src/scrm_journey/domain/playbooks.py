"""Built-in playbooks from the field (DESIGN.md section 2), installable per tenant with one call, editable after.

``welcome`` runs for every tenant without installing it (until the tenant installs, edits or archives its own copy).
Template ids name templates the tenant keeps in notify; channels are in preference order.
"""

from dataclasses import dataclass
from typing import Any

from scrm_journey.domain.definition import JourneyDefinition
from scrm_journey.domain.validation import parse_definition

HIGH_TIERS = ["dt", "ka"]
CHAT_FIRST = ["wecom", "wechat_oa", "sms"]


@dataclass(frozen=True, slots=True)
class Playbook:
    name: str
    summary: str
    document: dict[str, Any]
    default: bool = False

    @property
    def definition(self) -> JourneyDefinition:
        found = _PARSED.get(self.name)
        if found is None:
            found = _PARSED[self.name] = parse_definition(self.document)
        return found


_PARSED: dict[str, JourneyDefinition] = {}


def _touch(template: str, next_node: str | None, channels: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "send_touch",
        "channels": channels or CHAT_FIRST,
        "template_id": template,
        "next": next_node,
        **extra,
    }


def _wait(days: int, next_node: str | None) -> dict[str, Any]:
    return {"type": "wait", "duration": {"days": days}, "next": next_node}


def _await_order(days: int, on_event: str | None, on_timeout: str | None) -> dict[str, Any]:
    return {
        "type": "wait_for_event",
        "event": "Order Completed",
        "timeout": {"days": days},
        "on_event": on_event,
        "on_timeout": on_timeout,
    }


WELCOME = {
    "name": "Welcome after first purchase",
    "description": "Thank the customer right after their first order.",
    "trigger": {"type": "stage_changed", "to_stage": "new"},
    "start": "send_welcome",
    "nodes": {"send_welcome": _touch("welcome", None, ["webhook"], priority="transactional")},
}

FIRST_THREE = {
    "name": "First three purchases nurture",
    "description": "Value content after the first order, then a nudge to the 2nd and the 3rd; leave on purchase.",
    "trigger": {"type": "stage_changed", "to_stage": "new"},
    "start": "settle",
    "nodes": {
        "settle": _wait(2, "value_1"),
        "value_1": _touch("nurture_value_content", "await_second"),
        "await_second": _await_order(14, "after_second", "nudge_second"),
        "nudge_second": {
            "type": "issue_coupon",
            "coupon_id": "second-order",
            "channels": CHAT_FIRST,
            "template_id": "nudge_second_order",
            "next": "await_second_late",
        },
        "await_second_late": _await_order(14, "after_second", None),
        "after_second": _wait(3, "value_2"),
        "value_2": _touch("nurture_value_content_2", "await_third"),
        "await_third": _await_order(21, None, "nudge_third"),
        "nudge_third": _touch("nudge_third_order", None),
    },
    "goal": {"event": "Order Completed", "within_days": 60, "exit_on_goal": False},
}

LIFECYCLE_CARE = {
    "name": "Lifecycle care by stage",
    "description": "Active: value, no promotion. Silent: light promotion. Sleeping: a win-back offer. "
    "Churned: major sales only.",
    "trigger": {"type": "stage_changed"},
    "start": "is_active",
    "nodes": {
        "is_active": {
            "type": "condition",
            "rule": {"field": "lifecycle_stage", "op": "eq", "value": "active"},
            "then": "value_content",
            "else": "is_silent",
        },
        "value_content": _touch("care_value_content", None),
        "is_silent": {
            "type": "condition",
            "rule": {"field": "lifecycle_stage", "op": "eq", "value": "silent"},
            "then": "light_promotion",
            "else": "is_sleeping",
        },
        "light_promotion": _touch("light_promotion", None),
        "is_sleeping": {
            "type": "condition",
            "rule": {"field": "lifecycle_stage", "op": "eq", "value": "sleeping"},
            "then": "win_back",
            "else": "is_churned",
        },
        "win_back": {
            "type": "issue_coupon",
            "coupon_id": "win-back",
            "channels": CHAT_FIRST,
            "template_id": "win_back_offer",
            "next": None,
        },
        "is_churned": {
            "type": "condition",
            "rule": {"field": "lifecycle_stage", "op": "eq", "value": "churned"},
            "then": "major_sales_only",
            "else": None,
        },
        "major_sales_only": {"type": "tag", "add": ["major-sales-only"], "next": None},
    },
    "goal": {"event": "Order Completed", "within_days": 30},
    "reentry": {"policy": "always"},
}

HIGH_VALUE_CARE = {
    "name": "High-value member care moments",
    "description": "About six care moments a year for DT / KA members, by their own staff member, no sales condition.",
    "trigger": {"type": "tier_changed", "to_tier": "dt"},
    "entry_rule": {"field": "tier", "op": "in", "value": HIGH_TIERS},
    "start": "still_high_value",
    "nodes": {
        "still_high_value": {
            "type": "condition",
            "rule": {"field": "tier", "op": "in", "value": HIGH_TIERS},
            "then": "care_task",
            "else": None,
        },
        "care_task": {
            "type": "staff_task",
            "title": "Care moment for a top member",
            "suggested_words": "Thank them for their trust; offer a small gift, no sales talk.",
            "timeout": {"days": 3},
            "on_completed": "next_moment",
            "on_expired": "care_fallback",
        },
        "care_fallback": _touch("care_moment_gift", "next_moment", ["wecom", "wechat_oa"]),
        "next_moment": _wait(61, "still_high_value"),
    },
}

BIRTHDAY_CARE = {
    "name": "High-value birthday care",
    "description": "On a DT / KA member's birthday their staff member sends wishes and a gift.",
    "trigger": {"type": "date", "field": "birthday", "at_time": "10:00"},
    "entry_rule": {"field": "tier", "op": "in", "value": HIGH_TIERS},
    "start": "birthday_task",
    "nodes": {
        "birthday_task": {
            "type": "staff_task",
            "title": "Birthday wishes and gift",
            "suggested_words": "Happy birthday! We prepared a small gift for you at the store.",
            "timeout": {"days": 1},
            "on_completed": None,
            "on_expired": "birthday_fallback",
        },
        "birthday_fallback": _touch("birthday_gift", None, ["wecom", "wechat_oa", "sms"]),
    },
    "reentry": {"policy": "after_days", "days": 300},
}

MEMBERSHIP_EXPIRY = {
    "name": "Membership / stored-value expiry reminder",
    "description": "Seven days before the membership expires remind the member (and of a stored-value balance).",
    "trigger": {"type": "date", "field": "membership_expiry", "offset_days": -7, "at_time": "10:00"},
    "start": "remind",
    "nodes": {
        "remind": _touch("membership_expiry_reminder", "await_renewal", variables={"days_left": 7}),
        "await_renewal": {
            "type": "wait_for_event",
            "event": "Membership Renewed",
            "timeout": {"days": 5},
            "on_event": None,
            "on_timeout": "has_balance",
        },
        "has_balance": {
            "type": "condition",
            "rule": {"field": "stored_value_balance", "op": "gt", "value": 0},
            "then": "last_call_balance",
            "else": "last_call",
        },
        "last_call_balance": _touch("stored_value_last_call", None),
        "last_call": _touch("membership_last_call", None),
    },
    "goal": {"event": "Membership Renewed", "within_days": 30},
    "reentry": {"policy": "after_days", "days": 180},
}

TIME_SLICE = {
    "name": "Time-slice campaign on a trait date",
    "description": "Address each customer 30 days before a date in their own timeline (edit the trait name).",
    "trigger": {"type": "date", "field": "trait", "trait": "child_graduation_date", "offset_days": -30},
    "start": "announce",
    "nodes": {
        "announce": _touch("time_slice_announce", "wait_reminder"),
        "wait_reminder": _wait(23, "remind"),
        "remind": _touch("time_slice_reminder", None),
    },
    "goal": {"event": "Order Completed", "within_days": 45},
}

PLAYBOOKS: dict[str, Playbook] = {
    p.name: p
    for p in (
        Playbook("welcome", "Welcome after first purchase (runs by default)", WELCOME, default=True),
        Playbook("first_three_purchases", "First-three-purchases nurture", FIRST_THREE),
        Playbook("lifecycle_care", "Lifecycle care by stage", LIFECYCLE_CARE),
        Playbook("high_value_care", "High-value member care moments (staff tasks)", HIGH_VALUE_CARE),
        Playbook("high_value_birthday", "High-value birthday care (staff task)", BIRTHDAY_CARE),
        Playbook("membership_expiry", "Stored-value / membership expiry reminder", MEMBERSHIP_EXPIRY),
        Playbook("time_slice", "Time-slice campaign on a trait date", TIME_SLICE),
    )
}
DEFAULT_PLAYBOOKS = tuple(p for p in PLAYBOOKS.values() if p.default)
