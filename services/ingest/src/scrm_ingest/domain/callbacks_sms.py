"""SMS provider pushes: Aliyun (SmsReport, SmsUp) and Tencent Cloud (status report, reply).

A delivery report becomes ``Message Delivered`` or ``Message Failed``; a reply becomes ``SMS Unsubscribed`` when it
is one of the unsubscribe keywords (TD, T, N, R, 退订, 回T退订, ...; case, spaces and punctuation ignored), else
``Message Replied`` with its text. Our touch key travels as Aliyun's ``out_id`` and Tencent's ``ext`` /
``session_context``, so receipts match back to the touch.
"""

import re
import unicodedata
from typing import Any

from scrm_contracts import TrackedEvent
from scrm_contracts.semantic import SemanticEvent
from scrm_ingest.domain.callbacks_common import (
    CallbackContext,
    ItemError,
    MappedCallback,
    as_items,
    channel_event,
    map_items,
    optional_text,
    phone_identity,
    provider_time,
    required_text,
    short_hash,
)

_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)


def normalise_reply(text: str) -> str:
    """Upper-cased, full-width folded, without spaces and punctuation: ' td。' -> 'TD'."""
    return _NOISE.sub("", unicodedata.normalize("NFKC", text)).upper()


def unsubscribe_keywords(keywords: list[str]) -> frozenset[str]:
    return frozenset(normalise_reply(k) for k in keywords if normalise_reply(k))


def _reply_event(ctx: CallbackContext, phone: Any, text: Any, when: Any, seq: str | None) -> TrackedEvent:
    identity = phone_identity(phone, "phone_number" if ctx.provider == "aliyun-sms" else "mobile", ctx.default_region)
    content = required_text(text, "content" if ctx.provider == "aliyun-sms" else "text")
    occurred_at = provider_time(when, "send_time" if ctx.provider == "aliyun-sms" else "time", ctx.received_at)
    event_id = f"{ctx.provider}:up:{seq or short_hash(identity.traits['phone'], occurred_at.isoformat(), content)}"
    keyword = normalise_reply(content)
    if keyword in ctx.unsubscribe_keywords:
        return channel_event(
            ctx,
            name=SemanticEvent.SMS_UNSUBSCRIBED,
            event_id=event_id,
            identity=identity,
            properties={"phone": identity.traits["phone"], "keyword": content},
            occurred_at=occurred_at,
        )
    return channel_event(
        ctx,
        name=SemanticEvent.MESSAGE_REPLIED,
        event_id=event_id,
        identity=identity,
        properties={"channel": "sms", "content": content[:2000]},
        occurred_at=occurred_at,
    )


def _aliyun_report(ctx: CallbackContext, item: dict[str, Any]) -> TrackedEvent:
    identity = phone_identity(item.get("phone_number"), "phone_number", ctx.default_region)
    biz_id = required_text(item.get("biz_id"), "biz_id")
    success = item.get("success")
    if not isinstance(success, bool):
        raise ItemError("success", "must be true or false")
    properties: dict[str, Any] = {
        "channel": "sms",
        "touch_key": optional_text(item.get("out_id"), "out_id"),
        "provider_message_id": biz_id,
    }
    if not success:
        properties |= {"error_code": item.get("err_code"), "error_message": item.get("err_msg")}
    return channel_event(
        ctx,
        name=SemanticEvent.MESSAGE_DELIVERED if success else SemanticEvent.MESSAGE_FAILED,
        event_id=f"aliyun-sms:report:{biz_id}:{short_hash(identity.traits['phone'])}",
        identity=identity,
        properties=properties,
        occurred_at=provider_time(item.get("report_time"), "report_time", ctx.received_at),
    )


def map_aliyun_reports(body: Any, ctx: CallbackContext) -> MappedCallback:
    """Aliyun ``SmsReport``: a JSON array of delivery reports."""
    return map_items(as_items(body), lambda item: _aliyun_report(ctx, item), MappedCallback())


def map_aliyun_replies(body: Any, ctx: CallbackContext) -> MappedCallback:
    """Aliyun ``SmsUp``: a JSON array of replies."""

    def one(item: dict[str, Any]) -> TrackedEvent:
        seq = optional_text(item.get("sequence_id"), "sequence_id")
        return _reply_event(ctx, item.get("phone_number"), item.get("content"), item.get("send_time"), seq)

    return map_items(as_items(body), one, MappedCallback())


def _session_context(item: dict[str, Any]) -> str | None:
    for key in ("session_context", "SessionContext", "ext"):
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, dict) and isinstance(value.get("SessionContext") or value.get("session_context"), str):
            return str(value.get("SessionContext") or value.get("session_context"))
    return None


def _tencent_report(ctx: CallbackContext, item: dict[str, Any]) -> TrackedEvent:
    identity = phone_identity(item.get("mobile"), "mobile", ctx.default_region, item.get("nationcode"))
    sid = required_text(item.get("sid"), "sid")
    status = required_text(item.get("report_status"), "report_status").upper()
    if status not in ("SUCCESS", "FAIL"):
        raise ItemError("report_status", "must be SUCCESS or FAIL")
    properties: dict[str, Any] = {"channel": "sms", "touch_key": _session_context(item), "provider_message_id": sid}
    if status == "FAIL":
        properties |= {"error_code": item.get("errmsg"), "error_message": item.get("description")}
    return channel_event(
        ctx,
        name=SemanticEvent.MESSAGE_DELIVERED if status == "SUCCESS" else SemanticEvent.MESSAGE_FAILED,
        event_id=f"tencent-sms:report:{sid}:{short_hash(identity.traits['phone'])}",
        identity=identity,
        properties=properties,
        occurred_at=provider_time(item.get("user_receive_time"), "user_receive_time", ctx.received_at),
    )


def map_tencent_reports(body: Any, ctx: CallbackContext) -> MappedCallback:
    """Tencent Cloud SMS status callback: a JSON array of receipts."""
    return map_items(as_items(body), lambda item: _tencent_report(ctx, item), MappedCallback())


def map_tencent_replies(body: Any, ctx: CallbackContext) -> MappedCallback:
    """Tencent Cloud SMS reply callback: one reply object (or an array of them)."""

    def one(item: dict[str, Any]) -> TrackedEvent:
        mobile = item.get("mobile")
        code = optional_text(item.get("nationcode"), "nationcode")
        if code and isinstance(mobile, str) and not mobile.startswith("+"):
            mobile = f"+{code}{mobile}"
        return _reply_event(ctx, mobile, item.get("text"), item.get("time"), None)

    return map_items(as_items(body), one, MappedCallback())
