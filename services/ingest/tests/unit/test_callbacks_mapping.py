from datetime import UTC, datetime

import pytest

from scrm_ingest.domain.callbacks_common import CallbackContext, ItemError
from scrm_ingest.domain.callbacks_email import map_sendgrid_events
from scrm_ingest.domain.callbacks_generic import SignatureError, map_generic_receipts, sign, verify_signature
from scrm_ingest.domain.callbacks_sms import (
    map_aliyun_replies,
    map_aliyun_reports,
    map_tencent_replies,
    map_tencent_reports,
    normalise_reply,
    unsubscribe_keywords,
)

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
KEYWORDS = unsubscribe_keywords(["TD", "T", "N", "R", "退订", "回T退订"])


def ctx(provider: str) -> CallbackContext:
    return CallbackContext(tenant_id="t1", provider=provider, received_at=NOW, unsubscribe_keywords=KEYWORDS)


def aliyun_report(**overrides: object) -> dict[str, object]:
    report: dict[str, object] = {
        "phone_number": "13800138000",
        "send_time": "2026-12-01 15:59:00",
        "report_time": "2026-12-01 15:59:30",
        "success": True,
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功",
        "sms_size": "1",
        "biz_id": "900619746936498440^0",
        "out_id": "touch-1",
    }
    report.update(overrides)
    return report


def test_aliyun_report_becomes_delivered_with_the_touch_key_and_beijing_time() -> None:
    [event] = map_aliyun_reports([aliyun_report()], ctx("aliyun-sms")).events
    assert event.event == "Message Delivered"
    assert event.properties == {"channel": "sms", "touch_key": "touch-1", "provider_message_id": "900619746936498440^0"}
    assert event.context["traits"] == {"phone": "+8613800138000"}
    assert event.anonymous_id is not None and event.anonymous_id.startswith("sms:")
    assert "13800138000" not in event.anonymous_id
    assert event.occurred_at == datetime(2026, 12, 1, 7, 59, 30, tzinfo=UTC)


def test_aliyun_failed_report_becomes_message_failed_with_the_reason() -> None:
    [event] = map_aliyun_reports(
        [aliyun_report(success=False, err_code="MK:0001", err_msg="空号")], ctx("aliyun-sms")
    ).events
    assert event.event == "Message Failed"
    assert event.properties["error_code"] == "MK:0001"
    assert event.properties["error_message"] == "空号"


def test_one_bad_report_does_not_lose_the_others() -> None:
    mapped = map_aliyun_reports(
        [aliyun_report(), aliyun_report(phone_number="not a phone"), aliyun_report(biz_id=None), "x"],
        ctx("aliyun-sms"),
    )
    assert len(mapped.events) == 1
    assert [(e.field, e.message) for e in mapped.errors] == [
        ("[1].phone_number", "is not a phone number"),
        ("[2].biz_id", "is required"),
        ("[3]", "each item must be a JSON object"),
    ]
    with pytest.raises(ItemError) as error:
        map_aliyun_reports("nope", ctx("aliyun-sms"))
    assert error.value.field == "body"


@pytest.mark.parametrize("reply", ["TD", "td", " T ", "退订", "回T退订", "ｔｄ。", "R"])
def test_unsubscribe_keywords_become_sms_unsubscribed(reply: str) -> None:
    item = {"phone_number": "13800138000", "content": reply, "send_time": "2026-12-01 16:00:00", "sequence_id": 77}
    [event] = map_aliyun_replies([item], ctx("aliyun-sms")).events
    assert event.event == "SMS Unsubscribed"
    assert event.properties == {"phone": "+8613800138000", "keyword": reply.strip()}
    assert event.event_id == "aliyun-sms:up:77"


def test_other_replies_become_message_replied_with_the_text() -> None:
    item = {"phone_number": "13800138000", "content": "什么时候发货?", "send_time": "2026-12-01 16:00:00"}
    [event] = map_aliyun_replies([item], ctx("aliyun-sms")).events
    assert event.event == "Message Replied"
    assert event.properties == {"channel": "sms", "content": "什么时候发货?"}
    assert normalise_reply("Tdx") not in KEYWORDS


def test_tencent_report_and_reply() -> None:
    report = {
        "user_receive_time": "2026-12-01 16:00:00",
        "nationcode": "86",
        "mobile": "13800138000",
        "report_status": "FAIL",
        "errmsg": "MN:0001",
        "description": "空号",
        "sid": "sid-1",
        "ext": "touch-9",
    }
    [failed] = map_tencent_reports([report], ctx("tencent-sms")).events
    assert failed.event == "Message Failed"
    assert failed.properties["touch_key"] == "touch-9"
    assert failed.context["traits"] == {"phone": "+8613800138000"}
    [delivered] = map_tencent_reports([{**report, "report_status": "SUCCESS"}], ctx("tencent-sms")).events
    assert delivered.event == "Message Delivered"
    bad = map_tencent_reports([{**report, "report_status": "MAYBE"}], ctx("tencent-sms"))
    assert bad.errors[0].field == "[0].report_status"
    reply = {"extend": "", "mobile": "13800138000", "nationcode": "86", "sign": "店", "text": "N", "time": 1764576000}
    [unsubscribed] = map_tencent_replies(reply, ctx("tencent-sms")).events
    assert unsubscribed.event == "SMS Unsubscribed"
    assert unsubscribed.occurred_at == datetime.fromtimestamp(1764576000, UTC)


def sendgrid(event: str, **extra: object) -> dict[str, object]:
    return {
        "email": "Ann@Example.com",
        "timestamp": 1764576000,
        "event": event,
        "sg_event_id": f"sg-{event}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "touch_key": "touch-5",
        **extra,
    }


def test_sendgrid_events_map_to_channel_events() -> None:
    body = [
        sendgrid("delivered"),
        sendgrid("open"),
        sendgrid("click", url="https://shop.example/p/1"),
        sendgrid("bounce", reason="550 no such user", status="5.1.1"),
        sendgrid("spamreport"),
        sendgrid("processed"),
    ]
    mapped = map_sendgrid_events(body, ctx("sendgrid"))
    assert [e.event for e in mapped.events] == [
        "Message Delivered",
        "Message Opened",
        "Message Clicked",
        "Message Failed",
        "Email Unsubscribed",
    ]
    assert mapped.ignored == 1
    delivered, _, clicked, bounced, unsubscribed = mapped.events
    assert delivered.properties["provider_message_id"] == "14c5d75ce93"
    assert delivered.properties["touch_key"] == "touch-5"
    assert delivered.context["traits"] == {"email": "ann@example.com"}
    assert delivered.event_id == "sendgrid:sg-delivered"
    assert clicked.properties["url"] == "https://shop.example/p/1"
    assert bounced.properties["error_code"] == "5.1.1"
    assert unsubscribed.properties["email"] == "ann@example.com"


def test_sendgrid_click_without_url_and_unknown_types_are_named() -> None:
    mapped = map_sendgrid_events([sendgrid("click"), sendgrid("teleported")], ctx("sendgrid"))
    assert [e.field for e in mapped.errors] == ["[0].url", "[1].event"]


def test_generic_signature_accepts_fresh_and_refuses_stale_or_forged() -> None:
    body = b'[{"id": "r1"}]'
    header = sign("s" * 20, int(NOW.timestamp()) - 10, body)
    verify_signature("s" * 20, header, body, NOW, 300)
    with pytest.raises(SignatureError, match="300 seconds"):
        verify_signature("s" * 20, sign("s" * 20, int(NOW.timestamp()) - 301, body), body, NOW, 300)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("s" * 20, header, body + b" ", NOW, 300)
    with pytest.raises(SignatureError, match="missing"):
        verify_signature("s" * 20, None, body, NOW, 300)


def test_generic_receipts_name_the_customer_by_any_channel_id() -> None:
    body = {
        "events": [
            {"id": "r1", "event": "Message Delivered", "phone": "+8613800138000", "properties": {"channel": "sms"}},
            {"id": "r2", "event": "Official Account Subscribed", "wechat_openid": "o-1"},
            {"id": "r3", "event": "Message Opened", "user_id": "u-9", "properties": {"channel": "email"}},
            {"id": "r4", "event": "Order Completed", "user_id": "u-9"},
            {"id": "r5", "event": "Message Opened", "properties": {"channel": "email"}},
            {"id": "r6", "event": "Message Opened", "user_id": "u-9", "properties": {"channel": "fax"}},
        ]
    }
    mapped = map_generic_receipts(body, ctx("generic"))
    delivered, subscribed, opened = mapped.events
    assert delivered.event_id == "generic:r1"
    assert delivered.context["traits"] == {"phone": "+8613800138000"}
    assert subscribed.properties == {"openid": "o-1"}
    assert subscribed.anonymous_id == "oa:o-1"
    assert opened.user_id == "u-9"
    assert opened.anonymous_id is None
    assert [e.field for e in mapped.errors] == ["[3].event", "[4].user_id", "[5].properties.channel"]


def test_sendgrid_signed_webhook_is_verified_with_the_tenants_key() -> None:
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from scrm_ingest.domain.callbacks_email import SendGridSignatureError, verify_sendgrid_signature

    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = base64.b64encode(public).decode()
    body, timestamp = b'[{"event":"open"}]', "1764576000"
    signature = base64.b64encode(private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    verify_sendgrid_signature(key, signature, timestamp, body)
    with pytest.raises(SendGridSignatureError, match="does not match"):
        verify_sendgrid_signature(key, signature, timestamp, body + b" ")
    with pytest.raises(SendGridSignatureError, match="missing"):
        verify_sendgrid_signature(key, None, timestamp, body)
