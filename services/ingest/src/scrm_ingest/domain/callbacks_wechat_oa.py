"""WeChat official account callbacks (safe mode): follows, unfollows and template message receipts.

The official account uses the same message crypto as WeCom, with the appid as receive id. Only safe mode
(``encrypt_type=aes``, ``msg_signature`` over the ciphertext) is accepted: plaintext mode's ``signature`` does not
cover the body, so it cannot prove a message genuine.

- ``subscribe`` -> ``Official Account Subscribed`` (``EventKey`` ``qrscene_<scene>`` gives the QR scene).
- ``unsubscribe`` -> ``Official Account Unsubscribed``.
- ``TEMPLATESENDJOBFINISH`` -> ``Message Delivered`` (``success``) or ``Message Failed`` (``failed:user block``,
  ``failed: system failed``), with the template message's ``MsgID`` as ``provider_message_id``.
- ``subscribe_msg_popup_event`` (the customer answered a subscribe message prompt) and
  ``subscribe_msg_change_event`` (they changed it in the service notice settings) -> one
  ``Subscribe Message Authorized`` per ``List`` item, with its ``TemplateId`` and ``SubscribeStatusString``
  (``accept``: one one-time send of that template; ``reject``: none). WeChat documents the change event's items
  inside ``SubscribeMsgChangeEvent`` but has been seen to send them inside ``SubscribeMsgPopupEvent``: both are read.
"""

from typing import Any
from xml.etree.ElementTree import Element

from defusedxml.ElementTree import fromstring

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
SUBSCRIBE_PROMPT_EVENTS = ("subscribe_msg_popup_event", "subscribe_msg_change_event")
SUBSCRIBE_STATUSES = ("accept", "reject", "ban")


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


def _prompt_items(plaintext: str) -> list[Element]:
    """The ``List`` items of a subscribe prompt event, whichever container WeChat put them in."""
    root = fromstring(plaintext)
    return [
        item
        for container in ("SubscribeMsgPopupEvent", "SubscribeMsgChangeEvent")
        for holder in root.findall(container)
        for item in holder.findall("List")
    ]


def _subscribe_answers(
    ctx: CallbackContext, plaintext: str, message: dict[str, Any], kind: str, appid: str
) -> list[TrackedEvent]:
    identity = openid_identity(message.get("FromUserName"), "FromUserName")
    occurred_at = provider_time(message.get("CreateTime"), "CreateTime", ctx.received_at)
    items = _prompt_items(plaintext)
    if not items:
        raise ItemError("SubscribeMsgPopupEvent.List", "is required")
    openid = identity.traits["wechat_openid"]
    answers = []
    for index, item in enumerate(items):
        fields = {child.tag: (child.text or "").strip() for child in item}
        where = f"List[{index}]"
        template_id = required_text(fields.get("TemplateId"), f"{where}.TemplateId")
        status = required_text(fields.get("SubscribeStatusString"), f"{where}.SubscribeStatusString")
        if status not in SUBSCRIBE_STATUSES:
            raise ItemError(f"{where}.SubscribeStatusString", f"must be one of {', '.join(SUBSCRIBE_STATUSES)}")
        created = str(message.get("CreateTime"))
        answers.append(
            channel_event(
                ctx,
                name=SemanticEvent.SUBSCRIBE_MESSAGE_AUTHORIZED,
                event_id="wechat-oa:" + short_hash(appid, kind, openid, created, str(index), template_id, status),
                identity=identity,
                properties={
                    "openid": openid,
                    "template_id": template_id,
                    "status": status,
                    "appid": appid,
                    "scene": fields.get("PopupScene") or None,
                },
                occurred_at=occurred_at,
            )
        )
    return answers


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
        elif kind in SUBSCRIBE_PROMPT_EVENTS:
            result.events += _subscribe_answers(ctx, plaintext, message, kind, appid)
        else:
            result.ignored += 1
    except ItemError as exc:
        result.errors.append(exc)
    return result
