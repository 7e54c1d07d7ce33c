"""Journey definitions: a versioned graph of nodes, entered by one trigger.

A definition is JSON (or YAML) such as::

    {"name": "Welcome", "trigger": {"type": "stage_changed", "to_stage": "new"},
     "start": "hello",
     "nodes": {"hello": {"type": "send_touch", "channels": ["wecom", "sms"], "template_id": "welcome",
                         "next": "wait"},
               "wait": {"type": "wait", "duration": {"days": 3}, "next": "clicked"},
               ...},
     "goal": {"event": "Order Completed", "within_days": 30},
     "reentry": {"policy": "after_days", "days": 90}}

A node's ``next`` (or branch target) of ``null`` ends the instance as completed.
"""

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scrm_contracts.profile_changes import LifecycleStage
from scrm_contracts.rules import Rule

Channel = Literal["wecom", "wechat_oa", "sms", "email", "webhook", "staff_task"]
CHANNELS: tuple[str, ...] = ("wecom", "wechat_oa", "sms", "email", "webhook", "staff_task")
NodeId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Duration(_Model):
    days: int = Field(default=0, ge=0, le=3650)
    hours: int = Field(default=0, ge=0, le=100_000)
    minutes: int = Field(default=0, ge=0, le=1_000_000)
    seconds: int = Field(default=0, ge=0, le=10_000_000)

    def delta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes, seconds=self.seconds)


class EventMatch(_Model):
    """A track event by name, with property equality filters."""

    event: str = Field(min_length=1, max_length=200)
    where: dict[str, Any] = Field(default_factory=dict)

    def matches(self, event: str, properties: dict[str, Any]) -> bool:
        return event == self.event and all(properties.get(k) == v for k, v in self.where.items())


# ---------------------------------------------------------------- triggers


class EventTrigger(EventMatch):
    type: Literal["event"] = "event"


class SegmentTrigger(_Model):
    type: Literal["segment"] = "segment"
    segment_id: str = Field(min_length=1, max_length=200)
    on: Literal["entered", "exited"] = "entered"


class StageTrigger(_Model):
    type: Literal["stage_changed"] = "stage_changed"
    from_stage: LifecycleStage | None = None
    to_stage: LifecycleStage | None = None


class TierTrigger(_Model):
    type: Literal["tier_changed"] = "tier_changed"
    from_tier: str | None = None
    to_tier: str | None = None


DateField = Literal["birthday", "membership_anniversary", "membership_expiry", "first_order", "trait"]


class DateTrigger(_Model):
    """Enter on a date in the customer's own timeline, ``offset_days`` from it, at ``at_time`` their time.

    ``birthday`` and ``membership_anniversary`` recur yearly; ``membership_expiry`` (use a negative offset for
    "N days before"), ``first_order`` ("first order + N days") and ``trait`` (a date trait) happen once.
    """

    type: Literal["date"] = "date"
    date_field: DateField = Field(alias="field")
    trait: str | None = Field(default=None, max_length=200, description="The trait holding the date (field=trait)")
    offset_days: int = Field(default=0, ge=-3650, le=3650)
    at_time: time = time(10, 0)
    yearly: bool | None = Field(default=None, description="Recur each year (default: birthday, anniversary)")


Festival = Literal[
    "spring_festival",
    "lantern",
    "dragon_boat",
    "qixi",
    "mid_autumn",
    "double_ninth",
    "laba",
    "new_year",
    "womens_day",
    "mid_year_618",
    "singles_day",
    "double_12",
]


class FestivalTrigger(_Model):
    """Enter every customer (matching ``entry_rule``) ``offset_days`` from a festival, lunar ones included."""

    type: Literal["festival"] = "festival"
    festival: Festival
    offset_days: int = Field(default=0, ge=-60, le=60)
    at_time: time = time(10, 0)


Trigger = Annotated[
    EventTrigger | SegmentTrigger | StageTrigger | TierTrigger | DateTrigger | FestivalTrigger,
    Field(discriminator="type"),
]

# ---------------------------------------------------------------- nodes


class WaitNode(_Model):
    type: Literal["wait"] = "wait"
    duration: Duration
    next: NodeId | None = None


class WaitUntilTimeNode(_Model):
    """Wait until the next ``at`` o'clock in the customer's time zone."""

    type: Literal["wait_until_time"] = "wait_until_time"
    at: time
    next: NodeId | None = None


class WaitUntilDateNode(_Model):
    """Wait until a calendar date (at ``at_time`` customer time) or an exact moment."""

    type: Literal["wait_until_date"] = "wait_until_date"
    until: date | datetime
    at_time: time = time(10, 0)
    next: NodeId | None = None


class WaitForEventNode(_Model):
    """Wait for the customer to do ``event`` (e.g. click) within ``timeout``; branch on which came first."""

    type: Literal["wait_for_event"] = "wait_for_event"
    event: str = Field(min_length=1, max_length=200)
    where: dict[str, Any] = Field(default_factory=dict)
    timeout: Duration
    on_event: NodeId | None = None
    on_timeout: NodeId | None = None

    def matches(self, event: str, properties: dict[str, Any]) -> bool:
        return event == self.event and all(properties.get(k) == v for k, v in self.where.items())


class ConditionNode(_Model):
    """Branch on a profile predicate in the shared rule language (same as segments)."""

    type: Literal["condition"] = "condition"
    rule: Rule
    then: NodeId | None = None
    else_: NodeId | None = Field(default=None, alias="else")


class SplitBranch(_Model):
    name: str = Field(default="", max_length=100)
    weight: int = Field(ge=0, le=100)
    next: NodeId | None = None
    holdout: bool = Field(default=False, description="Control group: no touches, but counted for the goal")


class SplitNode(_Model):
    type: Literal["split"] = "split"
    branches: list[SplitBranch] = Field(min_length=1, max_length=20)


class SendTouchNode(_Model):
    type: Literal["send_touch"] = "send_touch"
    channels: list[Channel] = Field(min_length=1, description="Preference order, first reachable wins")
    template_id: str = Field(min_length=1, max_length=200)
    priority: Literal["marketing", "transactional"] = "marketing"
    variables: dict[str, Any] = Field(default_factory=dict)
    next: NodeId | None = None


class StaffTaskNode(_Model):
    """A task for the owning staff member with suggested words; branch on its outcome or on timeout."""

    type: Literal["staff_task"] = "staff_task"
    title: str = Field(min_length=1, max_length=200)
    suggested_words: str | None = Field(default=None, max_length=2000)
    template_id: str = Field(default="staff_task", min_length=1, max_length=200)
    staff_id: str | None = None
    timeout: Duration
    on_completed: NodeId | None = None
    on_expired: NodeId | None = Field(default=None, description="Escalation or a fallback automatic touch")


class IssueCouponNode(_Model):
    """Issue a coupon through a touch; a goal ``Coupon Redeemed`` with this coupon_id measures redemption (核销)."""

    type: Literal["issue_coupon"] = "issue_coupon"
    coupon_id: str = Field(min_length=1, max_length=200)
    channels: list[Channel] = Field(min_length=1)
    template_id: str = Field(default="coupon", min_length=1, max_length=200)
    priority: Literal["marketing", "transactional"] = "marketing"
    next: NodeId | None = None


class TagNode(_Model):
    type: Literal["tag"] = "tag"
    add: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)
    remove: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)
    next: NodeId | None = None


class ExitNode(_Model):
    type: Literal["exit"] = "exit"


Node = Annotated[
    WaitNode
    | WaitUntilTimeNode
    | WaitUntilDateNode
    | WaitForEventNode
    | ConditionNode
    | SplitNode
    | SendTouchNode
    | StaffTaskNode
    | IssueCouponNode
    | TagNode
    | ExitNode,
    Field(discriminator="type"),
]
WAITING_NODES = (WaitNode, WaitUntilTimeNode, WaitUntilDateNode, WaitForEventNode, StaffTaskNode)


def successors(node: BaseModel) -> list[str | None]:
    """Every edge out of a node (``None`` ends the instance)."""
    if isinstance(node, WaitForEventNode):
        return [node.on_event, node.on_timeout]
    if isinstance(node, ConditionNode):
        return [node.then, node.else_]
    if isinstance(node, SplitNode):
        return [b.next for b in node.branches]
    if isinstance(node, StaffTaskNode):
        return [node.on_completed, node.on_expired]
    if isinstance(node, ExitNode):
        return []
    return [getattr(node, "next", None)]


# ---------------------------------------------------------------- journey


class Goal(EventMatch):
    """Conversion: the customer does ``event`` within ``within_days`` of entering."""

    within_days: int | None = Field(default=None, ge=1, le=3650)
    exit_on_goal: bool = True


class Reentry(_Model):
    policy: Literal["never", "after_days", "always"] = "never"
    days: int | None = Field(default=None, ge=1, le=3650)


class JourneyDefinition(_Model):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    trigger: Trigger
    entry_rule: Rule | None = Field(default=None, description="Who may enter, on the profile snapshot")
    start: NodeId
    nodes: dict[NodeId, Node] = Field(min_length=1)
    goal: Goal | None = None
    exit_when: list[EventMatch] = Field(default_factory=list, description="Leave at once on any of these events")
    reentry: Reentry = Field(default_factory=Reentry)
    max_concurrent: int = Field(default=1, ge=1, le=100, description="Instances of this journey a customer may run")
    timezone: str = Field(default="Asia/Shanghai", description="Used when the customer's time zone is unknown")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


def walk_order(definition: JourneyDefinition) -> list[str]:
    """Node ids breadth-first from the start (the order people read a journey in), then any others."""
    order: list[str] = []
    queue = [definition.start]
    while queue:
        node_id = queue.pop(0)
        if node_id in order or node_id not in definition.nodes:
            continue
        order.append(node_id)
        queue += [t for t in successors(definition.nodes[node_id]) if t is not None]
    return order + [n for n in definition.nodes if n not in order]
