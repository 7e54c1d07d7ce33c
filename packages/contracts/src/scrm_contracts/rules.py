"""The customer rule language shared by segments (profile) and condition branches (journey).

A rule is JSON:

    {"all": [
        {"field": "lifecycle_stage", "op": "in", "value": ["active", "new"]},
        {"field": "revenue_total", "op": "gte", "value": 500},
        {"not": {"field": "tags", "op": "contains", "value": "vip-opt-out"}},
        {"event": "Order Completed", "min_count": 2, "within_days": 30}
    ]}

Fields are paths into a ``CustomerSnapshot`` (``orders_count``, ``tier``, ``traits.city``, ``reachability.sms``,
``contact.phone``...). ``evaluate`` checks a rule against a snapshot in memory; the profile service also compiles
rules to SQL for audience queries, and both paths must agree.
"""

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, model_validator

FieldOp = Literal[
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "exists",
    "not_exists",
    "within_last_days",
    "more_than_days_ago",
]

FIELD_PATHS = {
    "lifecycle_stage",
    "tier",
    "owner_staff_id",
    "store_id",
    "timezone",
    "birthday",
    "membership_level",
    "membership_started_at",
    "membership_expires_at",
    "orders_count",
    "revenue_total",
    "first_order_at",
    "last_order_at",
    "stored_value_balance",
    "clv",
    "rfm_segment",
    "tags",
}
PATH_PREFIXES = ("traits.", "contact.", "reachability.", "rfm.")


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldRule(_Rule):
    field: str = Field(min_length=1, max_length=200)
    op: FieldOp
    value: Any = None

    @model_validator(mode="after")
    def _check(self) -> "FieldRule":
        if self.field not in FIELD_PATHS and not self.field.startswith(PATH_PREFIXES):
            raise ValueError(f"unknown field {self.field!r}")
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a list value")
        if self.op in ("within_last_days", "more_than_days_ago") and not isinstance(self.value, int | float):
            raise ValueError(f"op {self.op!r} needs a number of days")
        if self.op not in ("exists", "not_exists") and self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        return self


class EventRule(_Rule):
    """The customer did ``event`` between ``min_count`` and ``max_count`` times in the last ``within_days``."""

    event: str = Field(min_length=1, max_length=200)
    min_count: int = Field(default=1, ge=0)
    max_count: int | None = Field(default=None, ge=0)
    within_days: int | None = Field(default=None, ge=1, le=3650)
    where: dict[str, Any] = Field(default_factory=dict, description="Property equality filters")


class AllRule(_Rule):
    all: list["Rule"] = Field(min_length=1)


class AnyRule(_Rule):
    any: list["Rule"] = Field(min_length=1)


class NotRule(_Rule):
    not_: "Rule" = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _rule_kind(value: Any) -> str:
    """Which kind of rule a value is, so a validation error names the one part that is wrong."""
    if isinstance(value, dict):
        return next((key for key in ("all", "any", "not", "event") if key in value), "field")
    kinds = {AllRule: "all", AnyRule: "any", NotRule: "not", EventRule: "event"}
    return kinds.get(type(value), "field")


Rule = Annotated[
    Union[  # noqa: UP007 - a tagged union needs the explicit form
        Annotated[AllRule, Tag("all")],
        Annotated[AnyRule, Tag("any")],
        Annotated[NotRule, Tag("not")],
        Annotated[EventRule, Tag("event")],
        Annotated[FieldRule, Tag("field")],
    ],
    Discriminator(_rule_kind),
]
AllRule.model_rebuild()
AnyRule.model_rebuild()
NotRule.model_rebuild()

EventCounter = Callable[[EventRule], int]
"""Counts the customer's events matching an ``EventRule`` (the caller knows the customer and the clock)."""


def resolve(snapshot: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a snapshot, or None."""
    value: Any = snapshot
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _as_datetime(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _ordered(left: Any, right: Any) -> tuple[Any, Any] | None:
    """Make two values comparable: numbers as Decimal, dates as datetimes, else as they are."""
    if isinstance(left, bool) or isinstance(right, bool):
        return (left, right) if type(left) is type(right) else None
    if isinstance(left, int | float | Decimal) or isinstance(right, int | float | Decimal):
        try:
            return Decimal(str(left)), Decimal(str(right))
        except (InvalidOperation, ValueError):
            return None
    left_dt, right_dt = _as_datetime(left), _as_datetime(right)
    if left_dt and right_dt:
        return left_dt, right_dt
    return (left, right) if isinstance(left, str) and isinstance(right, str) else None


def _field_matches(rule: FieldRule, snapshot: Mapping[str, Any], now: datetime) -> bool:
    value = resolve(snapshot, rule.field)
    op = rule.op
    if op == "exists":
        return value is not None and value != []
    if op == "not_exists":
        return value is None or value == []
    if value is None:
        return op in ("ne", "not_in", "not_contains")
    if op in ("contains", "not_contains"):
        found = rule.value in value if isinstance(value, list | str) else False
        return found if op == "contains" else not found
    if op in ("in", "not_in"):
        found = any(_equal(value, v) for v in rule.value)
        return found if op == "in" else not found
    if op in ("eq", "ne"):
        return _equal(value, rule.value) == (op == "eq")
    if op in ("within_last_days", "more_than_days_ago"):
        moment = _as_datetime(value)
        if moment is None:
            return False
        boundary = now - timedelta(days=float(rule.value))
        return moment >= boundary if op == "within_last_days" else moment < boundary
    pair = _ordered(value, rule.value)
    if pair is None:
        return False
    left, right = pair
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) != isinstance(right, bool):
        return False  # true is not 1 here, whatever Python says
    pair = _ordered(left, right)
    if pair is None:
        return bool(left == right)
    return bool(pair[0] == pair[1])


def evaluate(rule: Rule, snapshot: Mapping[str, Any], now: datetime, count_events: EventCounter | None = None) -> bool:
    """Does the customer described by ``snapshot`` match ``rule`` at ``now``?"""
    if isinstance(rule, AllRule):
        return all(evaluate(r, snapshot, now, count_events) for r in rule.all)
    if isinstance(rule, AnyRule):
        return any(evaluate(r, snapshot, now, count_events) for r in rule.any)
    if isinstance(rule, NotRule):
        return not evaluate(rule.not_, snapshot, now, count_events)
    if isinstance(rule, EventRule):
        if count_events is None:
            raise ValueError("event rules need an event counter")
        count = count_events(rule)
        return count >= rule.min_count and (rule.max_count is None or count <= rule.max_count)
    return _field_matches(rule, snapshot, now)


@functools.cache
def _rule_adapter() -> "TypeAdapter[Rule]":
    return TypeAdapter(Rule)  # building one costs more than validating many rules: once per process


def parse_rule(raw: Any) -> Rule:
    """Validate a JSON rule; raises pydantic.ValidationError naming the bad part."""
    return _rule_adapter().validate_python(raw)


def uses_events(rule: Rule) -> bool:
    """Whether the rule counts events (and so must be re-checked as time windows slide)."""
    if isinstance(rule, EventRule):
        return True
    if isinstance(rule, AllRule | AnyRule):
        return any(uses_events(r) for r in (rule.all if isinstance(rule, AllRule) else rule.any))
    if isinstance(rule, NotRule):
        return uses_events(rule.not_)
    return False


Matcher = Callable[[Mapping[str, Any], datetime, EventCounter | None], bool]
"""A rule prepared once to be checked against many snapshots: ``matcher(rule)(snapshot, now, count_events)``."""


def matcher(rule: Rule) -> Matcher:
    """``evaluate`` for one rule, with the work that depends only on the rule done once: the rule kinds dispatched,
    field paths split, and the common comparisons (numbers against a number, text against plain text) set up so they
    need no conversion per snapshot. Every other case goes through ``evaluate``'s own code; both agree everywhere."""
    if isinstance(rule, AllRule):
        parts = [matcher(r) for r in rule.all]
        return lambda s, now, count: all(p(s, now, count) for p in parts)
    if isinstance(rule, AnyRule):
        parts = [matcher(r) for r in rule.any]
        return lambda s, now, count: any(p(s, now, count) for p in parts)
    if isinstance(rule, NotRule):
        inner = matcher(rule.not_)
        return lambda s, now, count: not inner(s, now, count)
    if isinstance(rule, EventRule):
        event_rule = rule
        return lambda s, now, count: evaluate(event_rule, s, now, count)
    return _field_matcher(rule)


def _field_matcher(rule: FieldRule) -> Matcher:
    path = tuple(rule.field.split("."))
    op, expected = rule.op, rule.value

    def value_of(snapshot: Mapping[str, Any]) -> Any:
        value: Any = snapshot
        for part in path:
            if type(value) is not dict and not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    def general(snapshot: Mapping[str, Any], now: datetime, count: EventCounter | None) -> bool:
        return _field_matches(rule, snapshot, now)

    if op in ("gt", "gte", "lt", "lte") and _plain_number(expected):
        bound = Decimal(str(expected))
        compare = {"gt": Decimal.__gt__, "gte": Decimal.__ge__, "lt": Decimal.__lt__, "lte": Decimal.__le__}[op]

        def numeric(snapshot: Mapping[str, Any], now: datetime, count: EventCounter | None) -> bool:
            value = value_of(snapshot)
            kind = type(value)
            if kind is int or kind is Decimal:
                return bool(compare(Decimal(value), bound))
            if kind is float:
                return bool(compare(Decimal(str(value)), bound))
            return _field_matches(rule, snapshot, now)

        return numeric
    if op in ("in", "not_in", "eq", "ne"):
        options = expected if op in ("in", "not_in") else [expected]
        if options and all(_plain_text(v) for v in options):
            wanted, positive = tuple(options), op in ("in", "eq")  # compared with ==, as ``_equal`` does

            def textual(snapshot: Mapping[str, Any], now: datetime, count: EventCounter | None) -> bool:
                value = value_of(snapshot)
                if value is None:
                    return not positive
                if isinstance(value, str):  # plain text matches only the same text (see ``_equal``)
                    return (value in wanted) == positive
                return _field_matches(rule, snapshot, now)

            return textual
    if op in ("contains", "not_contains"):

        def containing(snapshot: Mapping[str, Any], now: datetime, count: EventCounter | None) -> bool:
            value = value_of(snapshot)
            found = expected in value if isinstance(value, list | str) else False
            if value is None:
                return op == "not_contains"
            return found if op == "contains" else not found

        return containing
    return general


def _plain_number(value: Any) -> bool:
    return type(value) in (int, float, Decimal) and Decimal(str(value)).is_finite()


def _plain_text(value: Any) -> bool:
    """Text that is neither a number nor a date, so it equals only the very same text."""
    if type(value) is not str:
        return False
    try:
        Decimal(value)
        return False
    except (InvalidOperation, ValueError):
        pass
    return _as_datetime(value) is None
