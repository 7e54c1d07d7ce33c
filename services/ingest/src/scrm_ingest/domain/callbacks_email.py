"""SendGrid's event webhook: a JSON array of events about e-mails we sent.

``delivered`` -> Message Delivered, ``open`` -> Message Opened, ``click`` -> Message Clicked (with ``url``),
``bounce`` / ``dropped`` -> Message Failed, ``unsubscribe`` / ``group_unsubscribe`` / ``spamreport`` -> Email
Unsubscribed. Other event types (processed, deferred, group_resubscribe) are acknowledged and ignored. Our touch
key travels as the custom arg ``touch_key`` (SendGrid puts custom args at the top level of each event).
``provider_message_id`` is the ``X-Message-Id`` the send API answered (``sg_message_id`` up to its first dot).
"""

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from scrm_contracts import TrackedEvent
from scrm_contracts.semantic import SemanticEvent
from scrm_ingest.domain.callbacks_common import (
    CallbackContext,
    ItemError,
    MappedCallback,
    as_items,
    channel_event,
    email_identity,
    map_items,
    optional_text,
    provider_time,
    required_text,
    short_hash,
)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class SendGridSignatureError(Exception):
    """The event webhook request is not signed with the tenant's SendGrid key."""


def load_verification_key(key: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key as shown in its console: base64 DER of an ECDSA public key."""
    try:
        loaded = load_der_public_key(base64.b64decode(key.strip(), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("is not a base64 DER public key (copy SendGrid's verification key)") from exc
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise ValueError("is not an ECDSA public key")
    return loaded


def verify_sendgrid_signature(key: str, signature: str | None, timestamp: str | None, body: bytes) -> None:
    """SendGrid's signed event webhook: ECDSA (SHA-256) over the timestamp header followed by the raw body."""
    if not signature or not timestamp:
        raise SendGridSignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    try:
        load_verification_key(key).verify(
            base64.b64decode(signature, validate=True), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (binascii.Error, ValueError, InvalidSignature) as exc:
        raise SendGridSignatureError("SendGrid signature does not match the body") from exc


OUTCOMES = {
    "delivered": SemanticEvent.MESSAGE_DELIVERED,
    "open": SemanticEvent.MESSAGE_OPENED,
    "click": SemanticEvent.MESSAGE_CLICKED,
    "bounce": SemanticEvent.MESSAGE_FAILED,
    "dropped": SemanticEvent.MESSAGE_FAILED,
    "unsubscribe": SemanticEvent.EMAIL_UNSUBSCRIBED,
    "group_unsubscribe": SemanticEvent.EMAIL_UNSUBSCRIBED,
    "spamreport": SemanticEvent.EMAIL_UNSUBSCRIBED,
}
IGNORED = {"processed", "deferred", "group_resubscribe"}


def _touch_key(item: dict[str, Any]) -> str | None:
    custom = item.get("custom_args")
    if isinstance(custom, dict) and custom.get("touch_key"):
        return optional_text(custom.get("touch_key"), "custom_args.touch_key")
    return optional_text(item.get("touch_key"), "touch_key")


def _properties(name: SemanticEvent, item: dict[str, Any], email: str) -> dict[str, Any]:
    if name == SemanticEvent.EMAIL_UNSUBSCRIBED:
        return {"email": email, "reason": item["event"], "touch_key": _touch_key(item)}
    message_id = optional_text(item.get("sg_message_id"), "sg_message_id")
    properties: dict[str, Any] = {
        "channel": "email",
        "touch_key": _touch_key(item),
        "provider_message_id": message_id.split(".", 1)[0] if message_id else None,
    }
    if name == SemanticEvent.MESSAGE_CLICKED:
        properties["url"] = required_text(item.get("url"), "url")
    if name == SemanticEvent.MESSAGE_FAILED:
        properties["error_code"] = optional_text(item.get("status"), "status") or item["event"]
        properties["error_message"] = optional_text(item.get("reason"), "reason")
    return properties


def _sendgrid_event(ctx: CallbackContext, item: dict[str, Any]) -> TrackedEvent | None:
    kind = required_text(item.get("event"), "event")
    if kind in IGNORED:
        return None
    name = OUTCOMES.get(kind)
    if name is None:
        raise ItemError("event", f"unknown SendGrid event type {kind!r}")
    identity = email_identity(item.get("email"), "email")
    occurred_at = provider_time(item.get("timestamp"), "timestamp", ctx.received_at)
    sg_event_id = optional_text(item.get("sg_event_id"), "sg_event_id")
    fallback = short_hash(kind, identity.traits["email"], occurred_at.isoformat(), str(item.get("sg_message_id")))
    return channel_event(
        ctx,
        name=name,
        event_id=f"sendgrid:{sg_event_id or fallback}",
        identity=identity,
        properties=_properties(name, {**item, "event": kind}, identity.traits["email"]),
        occurred_at=occurred_at,
    )


def map_sendgrid_events(body: Any, ctx: CallbackContext) -> MappedCallback:
    """SendGrid event webhook: a JSON array of events."""
    return map_items(as_items(body), lambda item: _sendgrid_event(ctx, item), MappedCallback())
