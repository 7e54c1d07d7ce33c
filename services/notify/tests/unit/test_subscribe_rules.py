"""Which official account message a touch may use, and how the verdict reads in the gates (no I/O)."""

from datetime import UTC, datetime

from scrm_notify.domain.consent import CustomerView
from scrm_notify.domain.gates import GateRequest, History, decide
from scrm_notify.domain.policy import Cap, TenantPolicy
from scrm_notify.domain.subscribe import channel_block, wechat_template_of
from scrm_notify.domain.templates import TemplateSource, render_source

NOON_SHANGHAI = datetime(2031, 3, 4, 4, 0, tzinfo=UTC)
OPEN = TenantPolicy(global_cap=Cap(), channel_caps={}, stage_caps={}, high_value_cap=Cap())

SUBSCRIBE = TemplateSource("b", provider_template="TPL-S", kind="subscribe", page="pages/o?id={{ order_id }}")
NOTICE = TemplateSource("b", provider_template="TPL-N")


def test_a_subscribe_message_needs_a_grant_whatever_the_priority() -> None:
    for priority in ("marketing", "transactional"):
        assert channel_block(SUBSCRIBE, priority, "TPL-S", 1) is None
        reason = channel_block(SUBSCRIBE, priority, "TPL-S", 0)
        assert reason is not None and reason.startswith("no_subscribe_consent") and "TPL-S" in reason


def test_a_template_message_carries_service_notices_only() -> None:
    assert channel_block(NOTICE, "transactional", "TPL-N", 0) is None
    refused = channel_block(NOTICE, "marketing", "TPL-N", 5)
    assert refused is not None and refused.startswith("template_message_not_for_marketing")


def test_the_wechat_template_is_the_templates_own_else_the_channel_default() -> None:
    assert wechat_template_of(SUBSCRIBE, {"template_id": "DEFAULT"}) == "TPL-S"
    assert wechat_template_of(TemplateSource("b", kind="subscribe"), {"template_id": "DEFAULT"}) == "DEFAULT"
    assert wechat_template_of(TemplateSource("b"), {}) is None


def test_the_page_is_rendered_and_the_kind_kept() -> None:
    message = render_source("restock", SUBSCRIBE, {"order_id": "A1"})
    assert (message.kind, message.page) == ("subscribe", "pages/o?id=A1")


def test_a_blocked_channel_falls_back_and_names_its_reason_when_nothing_is_left() -> None:
    view = CustomerView(
        "cus_1",
        1,
        NOON_SHANGHAI,
        timezone="Asia/Shanghai",
        phone="13800138000",
        sms_consent="subscribed",
        wechat_openid="o-1",
        official_account_follower=True,
    )
    blocked = {"wechat_oa": "no_subscribe_consent (no one-time subscribe consent for WeChat template TPL-S)"}
    both = GateRequest(channels=("wechat_oa", "sms"), priority="marketing", requested_at=NOON_SHANGHAI)
    fallback = decide(both, view, False, {}, History(), OPEN, NOON_SHANGHAI, blocked)
    assert (fallback.verdict, fallback.channel) == ("send", "sms")
    only = GateRequest(channels=("wechat_oa",), priority="marketing", requested_at=NOON_SHANGHAI)
    alone = decide(only, view, False, {}, History(), OPEN, NOON_SHANGHAI, blocked)
    assert (alone.verdict, alone.reason_code) == ("suppressed", "no_subscribe_consent")
    assert "TPL-S" in (alone.reason or "")
