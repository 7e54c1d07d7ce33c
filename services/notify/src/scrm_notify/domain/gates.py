"""The gates every touch passes, in order, each verdict carrying its reason:

1. the customer is known and not erased            -> suppressed ``customer_erased`` / held ``customer_unknown``
2. consent and reachability, channel by channel    -> next channel in preference order, else suppressed
   (and what the caller found about the message on a channel, e.g. no one-time subscribe consent left)
3. global frequency caps (marketing only)          -> suppressed ``frequency_cap``
4. per-channel caps and platform limits            -> next channel, else suppressed / deferred to the next window
5. quiet hours in the customer's time zone          -> deferred to the end of the quiet period (marketing only)

Dedup by ``touch_key`` happens before the gates (the touch row is the idempotency record). Transactional touches
skip caps and quiet hours but never consent. Pure code: the caller loads history and passes ``now``.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from scrm_notify.domain import clock_rules
from scrm_notify.domain.consent import ConsentRecord, CustomerView, address_of, consent_block, effective_consent
from scrm_notify.domain.policy import Cap, TenantPolicy

Verdict = Literal["send", "suppressed", "deferred", "held"]

# How soon a touch held for a customer notify does not know yet is looked at again (until the grace ends).
UNKNOWN_RECHECK = timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class History:
    """When this customer was last touched: ``(channel, sent_at, priority)`` of touches already sent; and until
    when WeCom said their mass-message quota is spent (status 3: the provider's answer is the authority)."""

    sent: Sequence[tuple[str, datetime, str]] = ()
    wecom_quota_until: datetime | None = None

    def count(self, since: datetime, channel: str | None = None) -> int:
        return sum(
            1 for ch, at, priority in self.sent if priority == "marketing" and at > since and channel in (None, ch)
        )


@dataclass(frozen=True, slots=True)
class GateRequest:
    channels: Sequence[str]
    priority: str
    requested_at: datetime
    staff_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason_code: str | None = None
    reason: str | None = None
    channel: str | None = None
    address: str | None = None
    until: datetime | None = None
    skipped: tuple[str, ...] = field(default=())


def reason_code(skip: str) -> str:
    """``"sms: unsubscribed"`` -> ``"unsubscribed"``."""
    return skip.split(": ", 1)[1].split(" ", 1)[0]


def _cap_block(history: History, cap: Cap, now: datetime, channel: str | None, label: str) -> str | None:
    if cap.per_day is not None and history.count(now - timedelta(days=1), channel) >= cap.per_day:
        return f"{label} per_day={cap.per_day}"
    if cap.per_week is not None and history.count(now - timedelta(days=7), channel) >= cap.per_week:
        return f"{label} per_week={cap.per_week}"
    return None


def _platform_block(history: History, policy: TenantPolicy, now: datetime) -> tuple[str, datetime] | None:
    """WeCom mass-message quota per calendar day and month (platform clock); returns (reason, next window)."""
    tz = clock_rules.zone(policy.platform.platform_timezone, "Asia/Shanghai")
    today = clock_rules.start_of_day(now, tz)
    month = clock_rules.start_of_month(now, tz)
    limits = policy.platform
    if history.wecom_quota_until is not None and history.wecom_quota_until > now:
        return "wecom mass-message quota spent (WeCom status 3)", history.wecom_quota_until
    if history.count(month, "wecom") >= limits.wecom_mass_per_month:
        return f"wecom mass messages per_month={limits.wecom_mass_per_month}", clock_rules.start_of_next_month(now, tz)
    if history.count(today, "wecom") >= limits.wecom_mass_per_day:
        return f"wecom mass messages per_day={limits.wecom_mass_per_day}", clock_rules.start_of_next_day(now, tz)
    return None


def decide(
    request: GateRequest,
    customer: CustomerView | None,
    erased: bool,
    consents: dict[str, ConsentRecord],
    history: History,
    policy: TenantPolicy,
    now: datetime,
    blocked: Mapping[str, str] | None = None,
) -> Decision:
    """Run the gates in order; the first that stops the touch names the reason. ``blocked``: channels the message
    cannot go out on, with the reason (``"<code> (<why>)"``)."""
    if erased:
        return Decision("suppressed", "customer_erased", "the customer was erased")
    if customer is None:
        grace_end = request.requested_at + timedelta(seconds=policy.unknown_customer_grace_seconds)
        if now >= grace_end:
            return Decision("suppressed", "customer_unknown", "no profile for this customer")
        # Looked at again shortly, not only when the grace ends: the profile is usually a moment behind the touch.
        # (From the request when this clock is behind it: a skewed clock never turns the wait into a busy loop.)
        recheck = min(grace_end, max(now, request.requested_at) + UNKNOWN_RECHECK)
        return Decision("held", "customer_unknown", "waiting for the customer's profile", until=recheck)
    reachable, skipped = _consented(request, customer, consents, blocked or {})
    if not reachable:
        return Decision("suppressed", reason_code(skipped[0]), "; ".join(skipped), skipped=tuple(skipped))
    marketing = request.priority == "marketing"
    if marketing:
        global_block = _cap_block(history, policy.cap_for(customer.lifecycle_stage, customer.tier), now, None, "global")
        if global_block:
            return Decision("suppressed", "frequency_cap", global_block)
    return _pick_channel(request, customer, reachable, skipped, history, policy, now)


def _consented(
    request: GateRequest, customer: CustomerView, consents: dict[str, ConsentRecord], blocked: Mapping[str, str]
) -> tuple[list[tuple[str, str]], list[str]]:
    reachable: list[tuple[str, str]] = []
    skipped: list[str] = []
    for channel in request.channels:
        address = request.staff_id if channel == "staff_task" and request.staff_id else address_of(customer, channel)
        if not address:
            skipped.append(f"{channel}: not_reachable")
            continue
        block = consent_block(effective_consent(customer, channel, consents.get(channel)).status, request.priority)
        block = block or blocked.get(channel)
        if block:
            skipped.append(f"{channel}: {block}")
            continue
        reachable.append((channel, address))
    return reachable, skipped


def _pick_channel(
    request: GateRequest,
    customer: CustomerView,
    reachable: list[tuple[str, str]],
    skipped: list[str],
    history: History,
    policy: TenantPolicy,
    now: datetime,
) -> Decision:
    marketing = request.priority == "marketing"
    deferred_until: datetime | None = None
    for channel, address in reachable:
        if marketing:
            cap = policy.channel_caps.get(channel)  # type: ignore[call-overload]
            block = _cap_block(history, cap, now, channel, f"{channel} cap") if cap else None
            if block:
                skipped.append(f"{channel}: channel_cap {block}")
                continue
            if channel == "wecom":
                limit = _platform_block(history, policy, now)
                if limit:
                    skipped.append(f"{channel}: platform_limit {limit[0]}")
                    deferred_until = min(deferred_until or limit[1], limit[1])
                    continue
        quiet = _quiet(customer, policy, now) if marketing else None
        if quiet is not None:
            return Decision("deferred", "quiet_hours", f"quiet hours until {quiet.isoformat()}", channel, until=quiet)
        return Decision("send", channel=channel, address=address, skipped=tuple(skipped))
    if deferred_until is not None:
        return Decision("deferred", "platform_limit", "; ".join(skipped), until=deferred_until)
    return Decision("suppressed", reason_code(skipped[-1]), "; ".join(skipped), skipped=tuple(skipped))


def _quiet(customer: CustomerView, policy: TenantPolicy, now: datetime) -> datetime | None:
    tz = clock_rules.zone(customer.timezone, policy.default_timezone)
    return clock_rules.quiet_until(now, tz, policy.quiet_hours)
