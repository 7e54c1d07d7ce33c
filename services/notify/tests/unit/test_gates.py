"""Each gate alone and combined, on a virtual clock."""

from datetime import UTC, datetime, time, timedelta

from scrm_notify.domain.consent import ConsentRecord, CustomerView, effective_consent
from scrm_notify.domain.gates import GateRequest, History, decide
from scrm_notify.domain.policy import Cap, QuietHours, TenantPolicy

# 2031-03-04 04:00 UTC = 12:00 in Shanghai (UTC+8).
NOON_SHANGHAI = datetime(2031, 3, 4, 4, 0, tzinfo=UTC)
OPEN = TenantPolicy(global_cap=Cap(), channel_caps={}, stage_caps={}, high_value_cap=Cap())


def customer(**overrides: object) -> CustomerView:
    values: dict[str, object] = {
        "customer_id": "cus_1",
        "version": 1,
        "snapshot_at": NOON_SHANGHAI - timedelta(days=30),
        "timezone": "Asia/Shanghai",
        "phone": "13800138000",
        "email": "li@example.com",
        "wecom_external_userid": "wm_1",
        "wecom_staff_ids": ("staff_1",),
        "sms_consent": "subscribed",
        "email_consent": "subscribed",
        "lifecycle_stage": "active",
    }
    values.update(overrides)
    return CustomerView(**values)  # type: ignore[arg-type]


def ask(*channels: str, priority: str = "marketing", at: datetime = NOON_SHANGHAI) -> GateRequest:
    return GateRequest(channels=channels, priority=priority, requested_at=at)


def sent(*items: tuple[str, datetime]) -> History:
    return History(sent=[(ch, at, "marketing") for ch, at in items])


def test_erased_customer_is_suppressed_and_unknown_one_is_held_until_the_grace_ends() -> None:
    assert decide(ask("sms"), None, True, {}, History(), OPEN, NOON_SHANGHAI).reason_code == "customer_erased"
    held = decide(ask("sms"), None, False, {}, History(), OPEN, NOON_SHANGHAI)
    assert held.verdict == "held" and held.until == NOON_SHANGHAI + timedelta(seconds=2), "looked at again soon"
    last = decide(ask("sms"), None, False, {}, History(), OPEN, NOON_SHANGHAI + timedelta(seconds=119))
    assert last.verdict == "held" and last.until == NOON_SHANGHAI + timedelta(seconds=120), "never past the grace"
    late = decide(ask("sms"), None, False, {}, History(), OPEN, NOON_SHANGHAI + timedelta(minutes=3))
    assert (late.verdict, late.reason_code) == ("suppressed", "customer_unknown")


def test_unsubscribed_channel_falls_back_to_the_next_reachable_one() -> None:
    consents = {"sms": ConsentRecord("unsubscribed", "event:SMS Unsubscribed", NOON_SHANGHAI)}
    decision = decide(ask("sms", "email"), customer(), False, consents, History(), OPEN, NOON_SHANGHAI)
    assert (decision.verdict, decision.channel, decision.address) == ("send", "email", "li@example.com")
    assert decision.skipped == ("sms: unsubscribed",)


def test_consent_blocks_every_channel_means_suppressed_with_the_reason() -> None:
    consents = {"sms": ConsentRecord("blocked", "provider", NOON_SHANGHAI)}
    decision = decide(ask("sms", "wechat_oa"), customer(), False, consents, History(), OPEN, NOON_SHANGHAI)
    assert (decision.verdict, decision.reason_code) == ("suppressed", "blocked")
    assert "wechat_oa: not_reachable" in (decision.reason or "")


def test_marketing_needs_an_opt_in_but_transactional_does_not() -> None:
    never = customer(sms_consent="unknown")
    marketing = decide(ask("sms"), never, False, {}, History(), OPEN, NOON_SHANGHAI)
    assert (marketing.verdict, marketing.reason_code) == ("suppressed", "no_marketing_opt_in")
    assert (
        decide(ask("sms", priority="transactional"), never, False, {}, History(), OPEN, NOON_SHANGHAI).verdict == "send"
    )


def test_transactional_still_respects_an_unsubscribe() -> None:
    consents = {"sms": ConsentRecord("unsubscribed", "api", NOON_SHANGHAI)}
    decision = decide(ask("sms", priority="transactional"), customer(), False, consents, History(), OPEN, NOON_SHANGHAI)
    assert decision.verdict == "suppressed"


def test_a_newer_positive_snapshot_lifts_an_old_unsubscribe_but_unknown_never_does() -> None:
    old = ConsentRecord("unsubscribed", "event", NOON_SHANGHAI - timedelta(days=60))
    assert effective_consent(customer(), "sms", old).status == "subscribed"
    assert effective_consent(customer(sms_consent="unknown"), "sms", old).status == "unsubscribed"
    fresh = ConsentRecord("unsubscribed", "event", NOON_SHANGHAI)
    assert effective_consent(customer(), "sms", fresh).status == "unsubscribed"


def test_global_daily_cap_is_a_rolling_24_hours() -> None:
    policy = OPEN.model_copy(update={"global_cap": Cap(per_day=1)})
    history = sent(("email", NOON_SHANGHAI - timedelta(hours=23)))
    capped = decide(ask("email"), customer(), False, {}, history, policy, NOON_SHANGHAI)
    assert (capped.verdict, capped.reason_code) == ("suppressed", "frequency_cap")
    later = NOON_SHANGHAI + timedelta(hours=1, seconds=1)
    assert decide(ask("email", at=later), customer(), False, {}, history, policy, later).verdict == "send"


def test_weekly_cap_counts_seven_rolling_days_and_transactional_skips_it() -> None:
    policy = OPEN.model_copy(update={"global_cap": Cap(per_week=2)})
    history = sent(("email", NOON_SHANGHAI - timedelta(days=6)), ("sms", NOON_SHANGHAI - timedelta(days=2)))
    assert decide(ask("email"), customer(), False, {}, history, policy, NOON_SHANGHAI).verdict == "suppressed"
    assert (
        decide(ask("email", priority="transactional"), customer(), False, {}, history, policy, NOON_SHANGHAI).verdict
        == "send"
    )
    eighth_day = NOON_SHANGHAI + timedelta(days=1)
    assert decide(ask("email", at=eighth_day), customer(), False, {}, history, policy, eighth_day).verdict == "send"


def test_per_channel_cap_falls_back_to_another_channel() -> None:
    policy = OPEN.model_copy(update={"channel_caps": {"sms": Cap(per_day=1)}})
    history = sent(("sms", NOON_SHANGHAI - timedelta(hours=2)))
    decision = decide(ask("sms", "email"), customer(), False, {}, history, policy, NOON_SHANGHAI)
    assert (decision.verdict, decision.channel) == ("send", "email")
    only_sms = decide(ask("sms"), customer(), False, {}, history, policy, NOON_SHANGHAI)
    assert (only_sms.verdict, only_sms.reason_code) == ("suppressed", "channel_cap")


def test_stage_and_high_value_tier_tighten_the_cap() -> None:
    policy = TenantPolicy(
        global_cap=Cap(per_week=5),
        stage_caps={"churned": Cap(per_week=1)},
        high_value_tiers=["DT"],
        high_value_cap=Cap(per_week=2),
        channel_caps={},
    )
    history = sent(("email", NOON_SHANGHAI - timedelta(days=3)))
    assert decide(ask("email"), customer(), False, {}, history, policy, NOON_SHANGHAI).verdict == "send"
    churned = customer(lifecycle_stage="churned")
    assert decide(ask("email"), churned, False, {}, history, policy, NOON_SHANGHAI).reason_code == "frequency_cap"
    two = sent(("email", NOON_SHANGHAI - timedelta(days=3)), ("sms", NOON_SHANGHAI - timedelta(days=1)))
    assert decide(ask("email"), customer(tier="DT"), False, {}, two, policy, NOON_SHANGHAI).verdict == "suppressed"
    assert decide(ask("email"), customer(tier=None), False, {}, two, policy, NOON_SHANGHAI).verdict == "send"


def test_wecom_mass_limit_per_calendar_day_defers_to_the_next_day() -> None:
    policy = OPEN
    history = sent(("wecom", NOON_SHANGHAI - timedelta(hours=3)))
    decision = decide(ask("wecom"), customer(), False, {}, history, policy, NOON_SHANGHAI)
    assert (decision.verdict, decision.reason_code) == ("deferred", "platform_limit")
    assert decision.until == datetime(2031, 3, 4, 16, 0, tzinfo=UTC)  # midnight in Shanghai
    with_fallback = decide(ask("wecom", "email"), customer(), False, {}, history, policy, NOON_SHANGHAI)
    assert (with_fallback.verdict, with_fallback.channel) == ("send", "email")


def test_wecom_monthly_limit_defers_to_the_first_of_next_month() -> None:
    history = sent(
        *[("wecom", datetime(2031, 3, d, 4, tzinfo=UTC)) for d in (1, 2, 3)],
        ("wecom", NOON_SHANGHAI - timedelta(days=0, hours=30)),
    )
    policy = OPEN.model_copy(update={"platform": OPEN.platform.model_copy(update={"wecom_mass_per_month": 4})})
    decision = decide(ask("wecom"), customer(), False, {}, history, policy, NOON_SHANGHAI)
    assert decision.verdict == "deferred"
    assert decision.until == datetime(2031, 3, 31, 16, 0, tzinfo=UTC)  # 1 April 00:00 Shanghai


def test_quiet_hours_defer_marketing_to_the_morning_in_the_customers_zone() -> None:
    night = datetime(2031, 3, 4, 14, 30, tzinfo=UTC)  # 22:30 Shanghai
    decision = decide(ask("email", at=night), customer(), False, {}, History(), OPEN, night)
    assert (decision.verdict, decision.reason_code) == ("deferred", "quiet_hours")
    assert decision.until == datetime(2031, 3, 5, 1, 0, tzinfo=UTC)  # 09:00 Shanghai next day
    after_midnight = datetime(2031, 3, 4, 17, 0, tzinfo=UTC)  # 01:00 Shanghai
    assert decide(ask("email"), customer(), False, {}, History(), OPEN, after_midnight).until == decision.until
    assert (
        decide(ask("email", priority="transactional"), customer(), False, {}, History(), OPEN, night).verdict == "send"
    )


def test_quiet_hours_follow_each_customers_time_zone() -> None:
    night_in_shanghai = datetime(2031, 3, 4, 14, 30, tzinfo=UTC)  # 22:30 Shanghai, 14:30 London
    london = customer(timezone="Europe/London")
    assert decide(ask("email"), london, False, {}, History(), OPEN, night_in_shanghai).verdict == "send"
    unknown_zone = customer(timezone="Mars/Olympus")  # falls back to the tenant default (Shanghai)
    assert decide(ask("email"), unknown_zone, False, {}, History(), OPEN, night_in_shanghai).verdict == "deferred"


def test_quiet_hours_within_one_day_and_across_a_dst_change() -> None:
    policy = OPEN.model_copy(update={"quiet_hours": QuietHours(start=time(12, 0), end=time(14, 0))})
    lunch = NOON_SHANGHAI + timedelta(minutes=30)
    decision = decide(ask("email"), customer(), False, {}, History(), policy, lunch)
    assert decision.until == NOON_SHANGHAI + timedelta(hours=2)
    # New York springs forward on 2031-03-09: 21:00 on the 8th (EST) -> 09:00 on the 9th (EDT) is 11 hours.
    ny_night = datetime(2031, 3, 9, 2, 0, tzinfo=UTC)  # 21:00 EST on the 8th
    ny = customer(timezone="America/New_York")
    assert decide(ask("email"), ny, False, {}, History(), OPEN, ny_night).until == datetime(
        2031, 3, 9, 13, 0, tzinfo=UTC
    )


def test_gates_in_combination_consent_then_caps_then_quiet_hours() -> None:
    policy = OPEN.model_copy(update={"channel_caps": {"email": Cap(per_day=1)}})
    consents = {"sms": ConsentRecord("unsubscribed", "api", NOON_SHANGHAI)}
    history = sent(("email", NOON_SHANGHAI - timedelta(hours=1)))
    night = datetime(2031, 3, 4, 14, 30, tzinfo=UTC)
    decision = decide(ask("sms", "email", "wecom"), customer(), False, consents, history, policy, night)
    # sms unsubscribed, email capped, wecom allowed but it is night: deferred on wecom until 09:00.
    assert (decision.verdict, decision.channel, decision.reason_code) == ("deferred", "wecom", "quiet_hours")
