"""Time rules on the customer's own clock: quiet hours and calendar windows. Pure functions of an injected now."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scrm_notify.domain.policy import QuietHours


def zone(name: str | None, default: str) -> ZoneInfo:
    """The customer's time zone, falling back to the tenant's default for a missing or unknown name."""
    for candidate in (name, default):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def in_quiet_hours(local: datetime, quiet: QuietHours) -> bool:
    t = local.timetz().replace(tzinfo=None)
    if quiet.start < quiet.end:
        return quiet.start <= t < quiet.end
    return t >= quiet.start or t < quiet.end


def quiet_until(now: datetime, tz: ZoneInfo, quiet: QuietHours) -> datetime | None:
    """When the quiet period around ``now`` ends (UTC), or None when ``now`` is not quiet."""
    if not quiet.enabled:
        return None
    local = now.astimezone(tz)
    if not in_quiet_hours(local, quiet):
        return None
    end = datetime.combine(local.date(), quiet.end, tzinfo=tz)
    if end <= local:
        end = datetime.combine(local.date() + timedelta(days=1), quiet.end, tzinfo=tz)
    # combine() on a DST gap gives a wall time that does not exist; a round trip through UTC normalises it.
    return end.astimezone(UTC)


def start_of_next_day(now: datetime, tz: ZoneInfo) -> datetime:
    local = now.astimezone(tz)
    return datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=tz).astimezone(UTC)


def start_of_day(now: datetime, tz: ZoneInfo) -> datetime:
    local = now.astimezone(tz)
    return datetime.combine(local.date(), datetime.min.time(), tzinfo=tz).astimezone(UTC)


def start_of_month(now: datetime, tz: ZoneInfo) -> datetime:
    local = now.astimezone(tz)
    return datetime(local.year, local.month, 1, tzinfo=tz).astimezone(UTC)


def start_of_next_month(now: datetime, tz: ZoneInfo) -> datetime:
    local = now.astimezone(tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=tz).astimezone(UTC)
