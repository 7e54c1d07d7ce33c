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


def prompt_event(event: str, container: str, *items: tuple[str, str]) -> str:
    answers = "".join(
        f"<List><TemplateId><![CDATA[{tpl}]]></TemplateId>"
        f"<SubscribeStatusString><![CDATA[{status}]]></SubscribeStatusString><PopupScene>2</PopupScene></List>"
        for tpl, status in items
    )
    head = oa_event(event).removesuffix("</xml>")
    return f"{head}<{container}>{answers}</{container}></xml>"


def test_a_subscribe_prompt_answer_becomes_one_event_per_template() -> None:
    xml = prompt_event("subscribe_msg_popup_event", "SubscribeMsgPopupEvent", ("TPL-A", "accept"), ("TPL-B", "reject"))
    accepted, rejected = map_official_account_message(xml, CTX, "wxapp").events
    assert accepted.event == rejected.event == "Subscribe Message Authorized"
    assert accepted.properties == {
        "openid": "oOPEN1",
        "template_id": "TPL-A",
        "status": "accept",
        "appid": "wxapp",
        "scene": "2",
    }
    assert rejected.properties["template_id"] == "TPL-B" and rejected.properties["status"] == "reject"
    assert accepted.anonymous_id == "oa:oOPEN1" and accepted.context["traits"] == {"wechat_openid": "oOPEN1"}
    assert accepted.event_id != rejected.event_id
    # WeChat retrying the same push produces the same events (deduplicated downstream).
    assert [e.event_id for e in map_official_account_message(xml, CTX, "wxapp").events] == [
        accepted.event_id,
        rejected.event_id,
    ]


def test_a_change_in_the_notice_settings_is_read_from_either_container() -> None:
    for container in ("SubscribeMsgChangeEvent", "SubscribeMsgPopupEvent"):
        xml = prompt_event("subscribe_msg_change_event", container, ("TPL-A", "reject"))
        [event] = map_official_account_message(xml, CTX, "wxapp").events
        assert (event.properties["template_id"], event.properties["status"]) == ("TPL-A", "reject")


def test_a_prompt_answer_without_template_or_with_an_unknown_status_names_the_field() -> None:
    no_items = map_official_account_message(oa_event("subscribe_msg_popup_event"), CTX, "a")
    assert [e.field for e in no_items.errors] == ["SubscribeMsgPopupEvent.List"]
    odd = prompt_event("subscribe_msg_popup_event", "SubscribeMsgPopupEvent", ("TPL-A", "maybe"))
    assert [e.field for e in map_official_account_message(odd, CTX, "a").errors] == ["List[0].SubscribeStatusString"]
    blank = prompt_event("subscribe_msg_popup_event", "SubscribeMsgPopupEvent", ("", "accept"))
    assert [e.field for e in map_official_account_message(blank, CTX, "a").errors] == ["List[0].TemplateId"]
