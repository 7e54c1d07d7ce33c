"""The second phase of a WeCom mass message, as rules: when to read its results again, what a recipient's status
means for the touch, and how long an over-quota answer holds further WeCom marketing.

A recipient's status (``get_groupmsg_send_result``) into the touch::

    1  sent                        -> delivered
    2  not a friend any more       -> failed ``wecom_not_friend`` (permanent; WeCom reachability revoked)
    3  got another mass message    -> failed ``wecom_over_quota``; WeCom marketing held until the window resets
    0  not sent (or not listed)    -> read again later; failed ``wecom_not_sent`` once the give-up time passed

Pure code on injected time.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from scrm_notify.domain import clock_rules

SENT, NOT_FRIEND, OVER_QUOTA = 1, 2, 3


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with the touch: ``wait`` (read again at ``next_check_at``), ``delivered`` or ``failed``."""

    action: Literal["wait", "delivered", "failed"]
    reason_code: str | None = None
    reason: str | None = None
    next_check_at: datetime | None = None


def next_check(now: datetime, checks_done: int, schedule: Sequence[float], give_up_at: datetime) -> datetime:
    """When to read again after ``checks_done`` reads: the schedule's delay (its last one repeating), never after
    the give-up time, so the last read happens exactly then."""
    delay = schedule[min(checks_done, len(schedule) - 1)]
    return min(now + timedelta(seconds=delay), give_up_at)


def verdict(
    status: int | None,
    now: datetime,
    give_up_at: datetime,
    checks_done: int,
    schedule: Sequence[float],
    error: str | None = None,
) -> Verdict:
    """The touch's fate from one recipient status (None: the results could not be read, ``error`` says why)."""
    if status == SENT:
        return Verdict("delivered")
    if status == NOT_FRIEND:
        return Verdict("failed", "wecom_not_friend", "wecom: the customer is not a contact of the sender any more")
    if status == OVER_QUOTA:
        return Verdict("failed", "wecom_over_quota", "wecom: the customer already got another mass message (quota)")
    if now >= give_up_at:
        if error is not None:
            return Verdict("failed", "wecom_result_unknown", f"wecom: results could not be read: {error}")
        return Verdict("failed", "wecom_not_sent", "wecom: the staff member did not send it before the give-up time")
    return Verdict("wait", next_check_at=next_check(now, checks_done, schedule, give_up_at))


def quota_hold_until(sent_at: datetime, window: Literal["day", "month"], tz: ZoneInfo) -> datetime:
    """The end of the platform window in which the over-quota message was sent (the quota resets then)."""
    if window == "day":
        return clock_rules.start_of_next_day(sent_at, tz)
    return clock_rules.start_of_next_month(sent_at, tz)
