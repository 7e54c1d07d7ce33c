"""Whether a customer can be reached on a channel, and whether they agreed to be.

Two sources: the profile snapshot (reachability as the profile knows it) and explicit records (an unsubscribe
event, an API call, a provider saying "blacklisted"). An explicit negative holds until a newer positive
snapshot says otherwise; a snapshot's "unknown" never overrides an explicit record.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ConsentStatus = Literal["subscribed", "unsubscribed", "blocked", "unknown"]
NEGATIVE = {"unsubscribed", "blocked"}


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    status: ConsentStatus
    source: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class CustomerView:
    """What notify holds about one customer (replicated from ``customer.updated``)."""

    customer_id: str
    version: int
    snapshot_at: datetime
    lifecycle_stage: str | None = None
    tier: str | None = None
    owner_staff_id: str | None = None
    timezone: str | None = None
    locale: str | None = None
    phone: str | None = None
    email: str | None = None
    wecom_external_userid: str | None = None
    wechat_openid: str | None = None
    wecom_staff_ids: tuple[str, ...] = ()
    official_account_follower: bool = False
    sms_consent: ConsentStatus = "unknown"
    email_consent: ConsentStatus = "unknown"


def snapshot_consent(customer: CustomerView, channel: str) -> ConsentStatus:
    """Consent as the profile snapshot states it."""
    if channel == "sms":
        return customer.sms_consent
    if channel == "email":
        return customer.email_consent
    if channel == "wecom":
        return "subscribed" if customer.wecom_staff_ids else "unknown"
    if channel == "wechat_oa":
        return "subscribed" if customer.official_account_follower else "unknown"
    return "subscribed"  # webhook and staff tasks reach the tenant's own systems and people, not the customer


def effective_consent(customer: CustomerView, channel: str, explicit: ConsentRecord | None) -> ConsentRecord:
    """The consent that holds now: explicit records win unless a newer snapshot states the opposite."""
    snap = ConsentRecord(snapshot_consent(customer, channel), "profile", customer.snapshot_at)
    if explicit is None:
        return snap
    if snap.status == "unknown" or snap.occurred_at <= explicit.occurred_at:
        return explicit
    flips = (explicit.status in NEGATIVE) != (snap.status in NEGATIVE)
    return snap if flips else explicit


def address_of(customer: CustomerView, channel: str) -> str | None:
    """The customer's address on a channel, or None when they cannot be reached there."""
    if channel == "sms":
        return customer.phone
    if channel == "email":
        return customer.email
    if channel == "wecom":
        return customer.wecom_external_userid if customer.wecom_staff_ids else None
    if channel == "wechat_oa":
        return customer.wechat_openid if customer.official_account_follower else None
    if channel == "webhook":
        return customer.customer_id
    if channel == "staff_task":
        return customer.owner_staff_id
    return None


def consent_block(status: ConsentStatus, priority: str) -> str | None:
    """Why this consent stops a touch (None when it may go)."""
    if status in NEGATIVE:
        return status
    if status == "unknown" and priority == "marketing":
        return "no_marketing_opt_in"
    return None
