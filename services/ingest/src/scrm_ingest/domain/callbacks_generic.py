"""Generic signed receipts: channel events from a tenant's own systems, signed as notify signs its webhooks.

``X-SCRM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``, accepted within a tolerance
(5 minutes by default) of ingest's clock. The body is an array of receipts (or ``{"events": [...]}``)::

    {"id": "r-1", "event": "Message Delivered", "timestamp": "2026-12-01T08:00:00Z",
     "phone": "+8613800000000", "properties": {"channel": "sms", "touch_key": "t-1"}}

``id`` is the receipt's own id (the dedup key), ``event`` one of the channel events below, and at least one of
``user_id``, ``phone``, ``email``, ``wecom_external_userid``, ``wechat_openid`` names the customer.
"""

import hashlib
import hmac
from datetime import datetime
from typing import Any

from scrm_contracts import TrackedEvent
from scrm_contracts.semantic import SemanticEvent
from scrm_ingest.domain.callbacks_common import (
    CallbackContext,
    ChannelIdentity,
    ItemError,
    MappedCallback,
    as_items,
    channel_event,
    email_identity,
    map_items,
    openid_identity,
    optional_text,
    phone_identity,
    provider_time,
    required_text,
    wecom_identity,
)

GENERIC_EVENTS = {
    SemanticEvent.MESSAGE_DELIVERED,
    SemanticEvent.MESSAGE_OPENED,
    SemanticEvent.MESSAGE_CLICKED,
    SemanticEvent.MESSAGE_REPLIED,
    SemanticEvent.MESSAGE_FAILED,
    SemanticEvent.SMS_UNSUBSCRIBED,
    SemanticEvent.EMAIL_UNSUBSCRIBED,
    SemanticEvent.WECOM_CONTACT_ADDED,
    SemanticEvent.WECOM_CONTACT_REMOVED,
    SemanticEvent.OFFICIAL_ACCOUNT_SUBSCRIBED,
    SemanticEvent.OFFICIAL_ACCOUNT_UNSUBSCRIBED,
    SemanticEvent.SUBSCRIBE_MESSAGE_AUTHORIZED,
}
# Which property of an event names the customer's channel identity (filled in from the receipt when missing).
_IDENTITY_PROPERTY = {
    SemanticEvent.SMS_UNSUBSCRIBED: ("phone", "phone"),
    SemanticEvent.EMAIL_UNSUBSCRIBED: ("email", "email"),
    SemanticEvent.WECOM_CONTACT_ADDED: ("external_userid", "wecom_external_userid"),
    SemanticEvent.WECOM_CONTACT_REMOVED: ("external_userid", "wecom_external_userid"),
    SemanticEvent.OFFICIAL_ACCOUNT_SUBSCRIBED: ("openid", "wechat_openid"),
    SemanticEvent.OFFICIAL_ACCOUNT_UNSUBSCRIBED: ("openid", "wechat_openid"),
    SemanticEvent.SUBSCRIBE_MESSAGE_AUTHORIZED: ("openid", "wechat_openid"),
}


class SignatureError(Exception):
    """The receipt is not signed with the tenant's secret, or the signature is too old."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, header: str | None, body: bytes, now: datetime, tolerance_seconds: int) -> None:
    """Raise ``SignatureError`` unless ``header`` signs ``body`` with ``secret`` within the tolerance."""
    if not header:
        raise SignatureError("missing X-SCRM-Signature header")
    try:
        parts = dict(item.strip().split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError) as exc:
        raise SignatureError("malformed X-SCRM-Signature header: expected t=<unix>,v1=<hex>") from exc
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise SignatureError(f"signature timestamp is more than {tolerance_seconds} seconds from now")
    expected = sign(secret, timestamp, body).rsplit("v1=", 1)[1]
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature does not match the body")


def _identity(item: dict[str, Any], region: str) -> tuple[ChannelIdentity, str | None]:
    found: list[ChannelIdentity] = []
    if item.get("phone") is not None:
        found.append(phone_identity(item["phone"], "phone", region))
    if item.get("email") is not None:
        found.append(email_identity(item["email"], "email"))
    if item.get("wecom_external_userid") is not None:
        found.append(wecom_identity(item["wecom_external_userid"], "wecom_external_userid"))
    if item.get("wechat_openid") is not None:
        found.append(openid_identity(item["wechat_openid"], "wechat_openid"))
    user_id = optional_text(item.get("user_id"), "user_id")
    if not found and not user_id:
        raise ItemError("user_id", "one of user_id, phone, email, wecom_external_userid, wechat_openid is required")
    traits = {k: v for identity in found for k, v in identity.traits.items()}
    return ChannelIdentity(found[0].anonymous_id if found else "", traits), user_id


def _receipt(ctx: CallbackContext, item: dict[str, Any]) -> TrackedEvent:
    receipt_id = required_text(item.get("id"), "id")
    name_text = required_text(item.get("event"), "event")
    if name_text not in {e.value for e in GENERIC_EVENTS}:
        raise ItemError("event", f"must be one of: {', '.join(sorted(e.value for e in GENERIC_EVENTS))}")
    name = SemanticEvent(name_text)
    properties = item.get("properties") or {}
    if not isinstance(properties, dict):
        raise ItemError("properties", "must be an object")
    identity, user_id = _identity(item, ctx.default_region)
    if name in _IDENTITY_PROPERTY:
        prop, trait = _IDENTITY_PROPERTY[name]
        if prop not in properties and trait in identity.traits:
            properties = {**properties, prop: identity.traits[trait]}
    return channel_event(
        ctx,
        name=name,
        event_id=f"generic:{receipt_id}",
        identity=identity,
        user_id=user_id,
        properties=properties,
        occurred_at=provider_time(item.get("timestamp"), "timestamp", ctx.received_at),
    )


def map_generic_receipts(body: Any, ctx: CallbackContext) -> MappedCallback:
    """An array of signed receipts (or ``{"events": [...]}``)."""
    items = body.get("events") if isinstance(body, dict) and "events" in body else body
    if isinstance(body, dict) and "events" in body and not isinstance(items, list):
        raise ItemError("events", "must be an array of receipts")
    return map_items(as_items(items), lambda item: _receipt(ctx, item), MappedCallback())
