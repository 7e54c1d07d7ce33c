"""Compile the shared rule language (``scrm_contracts.rules``) to SQL over ``profile.customers``.

The SQL must agree with the in-memory ``evaluate`` on every customer: missing values, ``ne``/``not_in`` on
missing values, numbers given as strings, and text ordering (``COLLATE "C"``, Python's code-point order) are
handled the same way on both paths; a test checks both on random profiles.
"""

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Numeric, and_, any_, case, cast, false, func, literal, not_, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement as Col

from scrm_contracts.rules import AllRule, AnyRule, EventRule, FieldRule, NotRule, Rule, _as_datetime
from scrm_profile.adapters.orm import CustomerRow as C
from scrm_profile.adapters.orm import EventRow

COLUMNS: dict[str, Any] = {
    "lifecycle_stage": C.lifecycle_stage,
    "tier": C.tier,
    "owner_staff_id": C.owner_staff_id,
    "store_id": C.store_id,
    "timezone": C.timezone,
    "birthday": C.birthday,
    "membership_level": C.membership_level,
    "membership_started_at": C.membership_started_at,
    "membership_expires_at": C.membership_expires_at,
    "orders_count": C.orders_count,
    "revenue_total": C.revenue_total,
    "first_order_at": C.first_order_at,
    "last_order_at": C.last_order_at,
    "stored_value_balance": C.stored_value_balance,
    "clv": C.clv,
    "rfm_segment": C.rfm_segment,
    "tags": C.tags,
    "contact.phone": C.phone,
    "contact.email": C.email,
    "reachability.sms": C.sms_consent,
    "reachability.email": C.email_consent,
    "reachability.official_account_follower": C.official_account_follower,
    "reachability.wecom_staff_ids": C.wecom_staff_ids,
    "rfm.r": C.rfm_r,
    "rfm.f": C.rfm_f,
    "rfm.m": C.rfm_m,
}
NUMERIC = {"orders_count", "revenue_total", "stored_value_balance", "clv", "rfm.r", "rfm.f", "rfm.m"}
DATES = {"birthday", "membership_started_at", "membership_expires_at", "first_order_at", "last_order_at"}
ARRAYS = {"tags", "reachability.wecom_staff_ids"}
BOOLEANS = {"reachability.official_account_follower"}
TRAIT_ALIASES = {
    "contact.wecom_external_userid": "wecom_external_userid",
    "contact.wechat_openid": "wechat_openid",
    "contact.wechat_unionid": "wechat_unionid",
}
NUMBER_PATTERN = r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def compile_rule(rule: Rule, now: datetime) -> ColumnElement[bool]:
    """A WHERE clause over ``profile.customers`` matching exactly the customers ``evaluate`` accepts."""
    if isinstance(rule, AllRule):
        return and_(*(compile_rule(r, now) for r in rule.all))
    if isinstance(rule, AnyRule):
        return or_(*(compile_rule(r, now) for r in rule.any))
    if isinstance(rule, NotRule):
        return not_(compile_rule(rule.not_, now))
    if isinstance(rule, EventRule):
        return _event_rule(rule, now)
    return func.coalesce(_field_rule(rule, now), false())


def event_count(rule: EventRule, now: datetime, tenant_id: Any, customer_id: Any) -> Any:
    """Count of a customer's events matching an event rule (shared by the SQL and the incremental path)."""
    query = (
        select(func.count())
        .select_from(EventRow)
        .where(EventRow.tenant_id == tenant_id, EventRow.customer_id == customer_id, EventRow.event == rule.event)
    )
    if rule.within_days:
        query = query.where(EventRow.occurred_at >= now - timedelta(days=rule.within_days))
    if rule.where:
        query = query.where(EventRow.properties.contains(cast(literal(rule.where, JSONB), JSONB)))
    return query.scalar_subquery()


def _event_rule(rule: EventRule, now: datetime) -> ColumnElement[bool]:
    count = event_count(rule, now, C.tenant_id, C.customer_id)
    clauses = [count >= rule.min_count]
    if rule.max_count is not None:
        clauses.append(count <= rule.max_count)
    return and_(*clauses)


def _field_rule(rule: FieldRule, now: datetime) -> Col[bool]:
    if rule.field.startswith("traits.") or rule.field in TRAIT_ALIASES:
        key = TRAIT_ALIASES.get(rule.field) or rule.field.removeprefix("traits.")
        return _trait_rule(key, rule, now)
    column = COLUMNS.get(rule.field)
    if column is None:
        return false()  # a path the snapshot never has (e.g. a deeper contact field): always missing
    return _column_rule(rule, column, now)


def _present(rule: FieldRule, column: Any, is_array: bool) -> Col[bool]:
    return (func.cardinality(column) > 0) if is_array else column.isnot(None)


def _column_rule(rule: FieldRule, column: Any, now: datetime) -> Col[bool]:
    op, value, name = rule.op, rule.value, rule.field
    is_array = name in ARRAYS
    present = _present(rule, column, is_array)
    if op == "exists":
        return present
    if op == "not_exists":
        return not_(present)
    converted = _convert(name, value)
    missing_true = op in ("ne", "not_in", "not_contains")
    if is_array and op not in ("contains", "not_contains"):
        return true() if op in ("ne", "not_in") else false()  # Python finds a list equal to no scalar
    if op in ("contains", "not_contains"):
        found = (
            literal(value) == any_(column)
            if is_array
            else (func.strpos(column, str(value)) > 0 if isinstance(value, str) else false())
        )
        match = found if op == "contains" else not_(found)
    elif op in ("in", "not_in"):
        options = [c for c in (_convert(name, v) for v in value) if c is not None]
        found = _text(column, name).in_(options) if options else false()
        match = found if op == "in" else not_(found)
    elif op in ("eq", "ne"):
        equal = (_text(column, name) == converted) if converted is not None else false()
        match = equal if op == "eq" else not_(equal)
    elif op in ("within_last_days", "more_than_days_ago"):
        if name not in DATES:
            return false() if not missing_true else true()
        boundary = now - timedelta(days=float(value))
        match = column >= boundary if op == "within_last_days" else column < boundary
    else:
        if converted is None or is_array or name in BOOLEANS:
            return false()
        target = _text(column, name)
        match = {
            "gt": target > converted,
            "gte": target >= converted,
            "lt": target < converted,
            "lte": target <= converted,
        }[op]
    return or_(not_(present), match) if missing_true else and_(present, match)


def _text(column: Any, name: str) -> Any:
    """Columns compared as Python compares them: text by code point."""
    if name in NUMERIC or name in DATES or name in BOOLEANS or name in ARRAYS:
        return column
    return column.collate("C")


def _convert(name: str, value: Any) -> Any:
    """The rule's value as the column's type, or None where Python would find them incomparable."""
    if name in NUMERIC:
        return _decimal(value)
    if name in DATES:
        moment = _as_datetime(value)
        if moment is None:
            return None
        return moment.date() if name == "birthday" else moment
    if name in BOOLEANS:
        return value if isinstance(value, bool) else None
    return value if isinstance(value, str) else None


def _trait_rule(key: str, rule: FieldRule, now: datetime) -> Col[bool]:
    raw = C.traits[key]
    as_text = C.traits[key].astext
    present = and_(raw.isnot(None), func.jsonb_typeof(raw) != "null")
    op, value = rule.op, rule.value
    if op == "exists":
        return and_(present, raw != cast(literal([], JSONB), JSONB))
    if op == "not_exists":
        return or_(not_(present), raw == cast(literal([], JSONB), JSONB))
    missing_true = op in ("ne", "not_in", "not_contains")
    if op in ("contains", "not_contains"):
        found = (
            or_(
                and_(func.jsonb_typeof(raw) == "array", raw.contains(cast(literal([value], JSONB), JSONB))),
                and_(func.jsonb_typeof(raw) == "string", isinstance(value, str) and func.strpos(as_text, value) > 0),
            )
            if isinstance(value, str)
            else false()
        )
        match = found if op == "contains" else not_(found)
    elif op in ("eq", "ne", "in", "not_in"):
        options = value if op in ("in", "not_in") else [value]
        found = or_(*(_trait_equals(raw, as_text, v) for v in options)) if options else false()
        match = found if op in ("eq", "in") else not_(found)
    elif op in ("within_last_days", "more_than_days_ago"):
        return false() if not missing_true else true()
    else:
        return _trait_order(raw, as_text, op, value)
    return or_(not_(present), match) if missing_true else and_(present, match)


def _compare(left: Any, op: str, right: Any) -> Any:
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def _trait_order(raw: Any, as_text: Any, op: str, value: Any) -> Col[bool]:
    """gt/gte/lt/lte on a trait, as Python orders them: numbers numerically when either side is a number,
    two strings by code point, anything else not at all."""
    number = _decimal(value)
    if isinstance(value, bool) or (number is None and not isinstance(value, str)):
        return false()
    if not isinstance(value, str):  # a number: the trait as a number (JSON number or numeric string)
        return func.coalesce(_compare(_as_number(raw, as_text), op, number), false())
    by_text = and_(func.jsonb_typeof(raw) == "string", _compare(as_text.collate("C"), op, value))
    if number is None:
        return by_text
    by_number = and_(func.jsonb_typeof(raw) == "number", _compare(_as_number(raw, as_text), op, number))
    return func.coalesce(or_(by_text, by_number), false())


def _as_number(raw: Any, as_text: Any) -> Any:
    numeric = func.jsonb_typeof(raw).in_(["number", "string"]) & as_text.op("~")(NUMBER_PATTERN)
    return case((numeric, cast(as_text, Numeric())), else_=None)


def _trait_equals(raw: Any, as_text: Any, value: Any) -> Col[bool]:
    if isinstance(value, bool):
        return and_(func.jsonb_typeof(raw) == "boolean", as_text == ("true" if value else "false"))
    number = _decimal(value)
    if number is not None and not isinstance(value, str):
        return func.coalesce(_as_number(raw, as_text) == number, false())
    if isinstance(value, str):
        numeric_value = _decimal(value)
        text_match = and_(func.jsonb_typeof(raw) == "string", as_text.collate("C") == value)
        if numeric_value is None:
            return text_match
        return or_(
            text_match,
            func.coalesce(and_(func.jsonb_typeof(raw) == "number", _as_number(raw, as_text) == numeric_value), false()),
        )
    return false()
