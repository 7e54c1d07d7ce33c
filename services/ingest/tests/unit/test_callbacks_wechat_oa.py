from datetime import UTC, datetime

from scrm_ingest.domain.callbacks_common import CallbackContext
from scrm_ingest.domain.callbacks_wechat_oa import map_official_account_message

CTX = CallbackContext(tenant_id="t1", provider="wechat-oa", received_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC))


def oa_event(event: str, **extra: str) -> str:
    fields = {"ToUserName": "gh_1", "FromUserName": "oOPEN1", "CreateTime": "1764576000", "MsgType": "event"}
    fields |= {"Event": event, **extra}
    return "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()) + "</xml>"


def test_follow_and_unfollow_name_the_openid_and_scene() -> None:
    [followed] = map_official_account_message(oa_event("subscribe", EventKey="qrscene_store9"), CTX, "wxapp").events
    assert followed.event == "Official Account Subscribed"
    assert followed.properties == {"openid": "oOPEN1", "appid": "wxapp", "scene": "store9"}
    assert followed.anonymous_id == "oa:oOPEN1"
    assert followed.context["traits"] == {"wechat_openid": "oOPEN1"}
    [unfollowed] = map_official_account_message(oa_event("unsubscribe"), CTX, "wxapp").events
    assert unfollowed.event == "Official Account Unsubscribed"
    assert unfollowed.event_id != followed.event_id


def test_template_receipts_become_delivered_or_failed() -> None:
    ok = map_official_account_message(oa_event("TEMPLATESENDJOBFINISH", MsgID="200163836", Status="success"), CTX, "a")
    assert ok.events[0].event == "Message Delivered"
    assert ok.events[0].properties == {"channel": "wechat_oa", "provider_message_id": "200163836"}
    assert ok.events[0].event_id == "wechat-oa:template:200163836"
    blocked = map_official_account_message(
        oa_event("TEMPLATESENDJOBFINISH", MsgID="200163837", Status="failed:user block"), CTX, "a"
    )
    assert blocked.events[0].event == "Message Failed"
    assert blocked.events[0].properties["error_code"] == "failed:user block"


def test_other_messages_are_ignored_and_bad_ones_name_the_field() -> None:
    assert map_official_account_message(oa_event("CLICK"), CTX, "a").ignored == 1
    bad = map_official_account_message(oa_event("TEMPLATESENDJOBFINISH", Status="success"), CTX, "a")
    assert [e.field for e in bad.errors] == ["MsgID"]
