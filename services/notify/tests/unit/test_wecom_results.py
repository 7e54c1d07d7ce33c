"""WeCom's second phase as rules: when a mass message is read again, what each recipient status does, and how long
WeCom's over-quota answer holds further WeCom marketing; on a virtual clock."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from scrm_notify.domain.consent import CustomerView
from scrm_notify.domain.gates import GateRequest, History, decide
from scrm_notify.domain.policy import Cap, TenantPolicy
from scrm_notify.domain.wecom_results import next_check, quota_hold_until, verdict

NOON_SHANGHAI = datetime(2031, 3, 4, 4, 0, tzinfo=UTC)
SCHEDULE = (60.0, 300.0, 1800.0, 3600.0)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_reads_back_off_then_repeat_hourly_and_never_pass_the_give_up_time() -> None:
    give_up = NOON_SHANGHAI + timedelta(hours=72)
    delays = [next_check(NOON_SHANGHAI, n, SCHEDULE, give_up) - NOON_SHANGHAI for n in range(6)]
    assert delays == [timedelta(seconds=s) for s in (60, 300, 1800, 3600, 3600, 3600)]
    almost = give_up - timedelta(minutes=10)
    assert next_check(almost, 9, SCHEDULE, give_up) == give_up


def test_each_recipient_status_settles_the_touch() -> None:
    give_up = NOON_SHANGHAI + timedelta(hours=72)
    assert verdict(1, NOON_SHANGHAI, give_up, 1, SCHEDULE).action == "delivered"
    assert verdict(2, NOON_SHANGHAI, give_up, 1, SCHEDULE).reason_code == "wecom_not_friend"
    assert verdict(3, NOON_SHANGHAI, give_up, 1, SCHEDULE).reason_code == "wecom_over_quota"
    waiting = verdict(0, NOON_SHANGHAI, give_up, 1, SCHEDULE)
    assert (waiting.action, waiting.next_check_at) == ("wait", NOON_SHANGHAI + timedelta(minutes=5))
    assert verdict(0, give_up, give_up, 9, SCHEDULE).reason_code == "wecom_not_sent"
    unreadable = verdict(None, give_up, give_up, 9, SCHEDULE, error="wecom errcode 48002: no permission")
    assert unreadable.reason_code == "wecom_result_unknown" and "48002" in (unreadable.reason or "")


def test_the_quota_hold_ends_when_the_platform_window_resets() -> None:
    late_evening = datetime(2031, 3, 31, 15, 30, tzinfo=UTC)  # 23:30 on 31 March in Shanghai
    assert quota_hold_until(late_evening, "month", SHANGHAI) == datetime(2031, 3, 31, 16, 0, tzinfo=UTC)
    assert quota_hold_until(NOON_SHANGHAI, "day", SHANGHAI) == datetime(2031, 3, 4, 16, 0, tzinfo=UTC)


def test_wecoms_over_quota_answer_defers_wecom_marketing_and_lets_other_channels_through() -> None:
    view = CustomerView(
        customer_id="cus_1",
        version=1,
        snapshot_at=NOON_SHANGHAI,
        timezone="Asia/Shanghai",
        phone="13800138000",
        wecom_external_userid="wm_1",
        wecom_staff_ids=("staff_1",),
        sms_consent="subscribed",
        lifecycle_stage="active",
    )
    policy = TenantPolicy(global_cap=Cap(), channel_caps={}, stage_caps={}, high_value_cap=Cap())
    until = datetime(2031, 3, 31, 16, 0, tzinfo=UTC)
    held = History(wecom_quota_until=until)
    only_wecom = decide(
        GateRequest(["wecom"], "marketing", NOON_SHANGHAI), view, False, {}, held, policy, NOON_SHANGHAI
    )
    assert (only_wecom.verdict, only_wecom.reason_code, only_wecom.until) == ("deferred", "platform_limit", until)
    fallback = decide(
        GateRequest(["wecom", "sms"], "marketing", NOON_SHANGHAI), view, False, {}, held, policy, NOON_SHANGHAI
    )
    assert (fallback.verdict, fallback.channel) == ("send", "sms")
    after = decide(
        GateRequest(["wecom"], "marketing", until), view, False, {}, held, policy, until + timedelta(hours=9)
    )
    assert (after.verdict, after.channel) == ("send", "wecom")
