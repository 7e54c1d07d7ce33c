"""Dates and times in the customer's own time zone: time-of-day waits, date-relative triggers, festivals.

Lunar festivals come from the ``lunardate`` calendar library (Chinese lunisolar calendar, 1900-2099).
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lunardate import LunarDate

from scrm_journey.domain.definition import DateTrigger, Festival, FestivalTrigger

LUNAR_FESTIVALS: dict[str, tuple[int, int]] = {
    "spring_festival": (1, 1),
    "lantern": (1, 15),
    "dragon_boat": (5, 5),
    "qixi": (7, 7),
    "mid_autumn": (8, 15),
    "double_ninth": (9, 9),
    "laba": (12, 8),
}
SOLAR_FESTIVALS: dict[str, tuple[int, int]] = {
    "new_year": (1, 1),
    "womens_day": (3, 8),
    "mid_year_618": (6, 18),
    "singles_day": (11, 11),
    "double_12": (12, 12),
}


def zone(name: str | None, fallback: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or fallback)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(fallback)


def at_local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``day`` at ``at`` o'clock in ``tz``, as UTC."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def next_time_of_day(now: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The next moment (strictly after ``now``) the customer's clock shows ``at``."""
    local = now.astimezone(tz)
    candidate = at_local(local.date(), at, tz)
    return candidate if candidate > now else at_local(local.date() + timedelta(days=1), at, tz)


def festival_date(festival: Festival, year: int) -> date:
    if festival in LUNAR_FESTIVALS:
        month, day = LUNAR_FESTIVALS[festival]
        return LunarDate(year, month, day).to_solar_date()
    month, day = SOLAR_FESTIVALS[festival]
    return date(year, month, day)


def next_festival(trigger: FestivalTrigger, now: datetime, tz: ZoneInfo) -> datetime:
    """When the festival trigger next fires after ``now``."""
    year = now.astimezone(tz).year
    for candidate_year in (year - 1, year, year + 1, year + 2):
        day = festival_date(trigger.festival, candidate_year) + timedelta(days=trigger.offset_days)
        moment = at_local(day, trigger.at_time, tz)
        if moment > now:
            return moment
    raise ValueError("no festival date ahead")  # unreachable within the calendar's range


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).date() if "T" in value else date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _anchor(trigger: DateTrigger, snapshot: dict[str, Any], tz: ZoneInfo) -> date | None:
    field = trigger.date_field
    if field == "trait":
        return _as_date((snapshot.get("traits") or {}).get(trigger.trait or ""))
    source = {
        "birthday": "birthday",
        "membership_anniversary": "membership_started_at",
        "membership_expiry": "membership_expires_at",
        "first_order": "first_order_at",
    }[field]
    value = snapshot.get(source)
    if isinstance(value, datetime):
        return value.astimezone(tz).date()
    return _as_date(value)


def _same_day(anchor: date, year: int) -> date:
    try:
        return anchor.replace(year=year)
    except ValueError:  # 29 February in a common year
        return date(year, 2, 28)


def next_date_trigger(trigger: DateTrigger, snapshot: dict[str, Any], now: datetime, tz: ZoneInfo) -> datetime | None:
    """When this customer next enters through a date trigger (``None``: no date, or a one-off already past)."""
    anchor = _anchor(trigger, snapshot, tz)
    if anchor is None:
        return None
    yearly = trigger.yearly
    if yearly is None:
        yearly = trigger.date_field in ("birthday", "membership_anniversary")
    shift = timedelta(days=trigger.offset_days)
    if not yearly:
        moment = at_local(anchor + shift, trigger.at_time, tz)
        return moment if moment > now else None
    year = now.astimezone(tz).year
    for candidate_year in (year - 1, year, year + 1):
        if trigger.date_field == "membership_anniversary" and candidate_year <= anchor.year:
            continue
        moment = at_local(_same_day(anchor, candidate_year) + shift, trigger.at_time, tz)
        if moment > now:
            return moment
    return None
