"""WeChat official account callbacks (safe mode): follows, unfollows and template message receipts.

The official account uses the same message crypto as WeCom, with the appid as receive id. Only safe mode
(``encrypt_type=aes``, ``msg_signature`` over the ciphertext) is accepted: plaintext mode's ``signature`` does not
cover the body, so it cannot prove a message genuine.

- ``subscribe`` -> ``Official Account Subscribed`` (``EventKey`` ``qrscene_<scene>`` gives the QR scene).
- ``unsubscribe`` -> ``Official Account Unsubscribed``.
- ``TEMPLATESENDJOBFINISH`` -> ``Message Delivered`` (``success``) or ``Message Failed`` (``failed:user block``,
  ``failed: system failed``), with the template message's ``MsgID`` as ``provider_message_id``.
"""

from typing import Any

from scrm_contracts import TrackedEvent
from scrm_contracts.semantic import SemanticEvent
from scrm_ingest.domain.callbacks_common import (
    CallbackContext,
    ItemError,
    MappedCallback,
    channel_event,
    openid_identity,
    optional_text,
    provider_time,
    required_text,
    short_hash,
)
from scrm_ingest.domain.callbacks_wecom import parse_xml

FOLLOW_EVENTS = {
    "subscribe": SemanticEvent.OFFICIAL_ACCOUNT_SUBSCRIBED,
    "unsubscribe": SemanticEvent.OFFICIAL_ACCOUNT_UNSUBSCRIBED,
}
TEMPLATE_FINISHED = "TEMPLATESENDJOBFINISH"


def _follow(ctx: CallbackContext, message: dict[str, Any], kind: str, appid: str) -> TrackedEvent:
    identity = openid_identity(message.get("FromUserName"), "FromUserName")
    occurred_at = provider_time(message.get("CreateTime"), "CreateTime", ctx.received_at)
    scene = optional_text(message.get("EventKey"), "EventKey")
    openid = identity.traits["wechat_openid"]
    return channel_event(
        ctx,
        name=FOLLOW_EVENTS[kind],
        event_id="wechat-oa:" + short_hash(appid, kind, openid, str(message.get("CreateTime"))),
        identity=identity,
        properties={
            "openid": openid,
            "appid": appid,
            "scene": scene.removeprefix("qrscene_") if scene else None,
        },
        occurred_at=occurred_at,
    )


def _template_finished(ctx: CallbackContext, message: dict[str, Any]) -> TrackedEvent:
    identity = openid_identity(message.get("FromUserName"), "FromUserName")
    msg_id = required_text(message.get("MsgID"), "MsgID")
    status = required_text(message.get("Status"), "Status")
    delivered = status == "success"
    properties: dict[str, Any] = {"channel": "wechat_oa", "provider_message_id": msg_id}
    if not delivered:
        properties |= {"error_code": status, "error_message": status}
    return channel_event(
        ctx,
        name=SemanticEvent.MESSAGE_DELIVERED if delivered else SemanticEvent.MESSAGE_FAILED,
        event_id=f"wechat-oa:template:{msg_id}",
        identity=identity,
        properties=properties,
        occurred_at=provider_time(message.get("CreateTime"), "CreateTime", ctx.received_at),
    )


def map_official_account_message(plaintext: str, ctx: CallbackContext, appid: str) -> MappedCallback:
    """One decrypted official account message as events (none for messages that are not these events)."""
    result = MappedCallback()
    message = parse_xml(plaintext, "Encrypt")
    kind = message.get("Event", "") if message.get("MsgType") == "event" else ""
    try:
        if kind in FOLLOW_EVENTS:
            result.events.append(_follow(ctx, message, kind, appid))
        elif kind == TEMPLATE_FINISHED:
            result.events.append(_template_finished(ctx, message))
        else:
            result.ignored += 1
    except ItemError as exc:
        result.errors.append(exc)
    return result
