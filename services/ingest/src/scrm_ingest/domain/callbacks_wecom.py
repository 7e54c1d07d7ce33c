"""WeCom callbacks: the encrypted XML envelope, and ``change_external_contact`` events as channel events.

- ``add_external_contact`` (a customer added a staff member) -> ``WeCom Contact Added`` with the ``WelcomeCode``
  (valid 20 seconds, once) and ``State`` (the channel code the customer came through).
- ``del_external_contact`` (the staff member deleted the customer) -> ``WeCom Contact Removed``, removed_by staff.
- ``del_follow_user`` (the customer deleted the staff member) -> ``WeCom Contact Removed``, removed_by customer.

Other events are acknowledged and ignored. WeCom sends no message id; the event id is a hash of the corp, change
type, staff, customer and ``CreateTime``, which WeCom keeps when it retries.
"""

from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from scrm_contracts import TrackedEvent
from scrm_contracts.semantic import SemanticEvent
from scrm_ingest.domain.callbacks_common import (
    CallbackContext,
    ItemError,
    MappedCallback,
    channel_event,
    optional_text,
    provider_time,
    required_text,
    short_hash,
    wecom_identity,
)

CONTACT_EVENT = "change_external_contact"


def parse_xml(raw: bytes | str, what: str) -> dict[str, str]:
    """The child elements of an XML document's root as a dict; raises ``ItemError`` naming ``what``."""
    try:
        root: Element = fromstring(raw)
    except (ParseError, DefusedXmlException) as exc:
        raise ItemError(what, f"is not well-formed XML: {exc}") from exc
    return {child.tag: (child.text or "").strip() for child in root}


def envelope_ciphertext(body: bytes) -> str:
    """The ``Encrypt`` element of a POSTed callback envelope."""
    fields = parse_xml(body, "body")
    ciphertext = fields.get("Encrypt")
    if not ciphertext:
        raise ItemError("body.Encrypt", "is required")
    return ciphertext


def _contact_event(ctx: CallbackContext, message: dict[str, Any], change: str) -> TrackedEvent:
    staff_id = required_text(message.get("UserID"), "UserID")
    identity = wecom_identity(message.get("ExternalUserID"), "ExternalUserID")
    occurred_at = provider_time(message.get("CreateTime"), "CreateTime", ctx.received_at)
    event_id = "wecom:" + short_hash(
        str(message.get("ToUserName")), change, staff_id, identity.traits["wecom_external_userid"], str(occurred_at)
    )
    if change == "add_external_contact":
        name = SemanticEvent.WECOM_CONTACT_ADDED
        properties: dict[str, Any] = {
            "staff_id": staff_id,
            "external_userid": identity.traits["wecom_external_userid"],
            "welcome_code": optional_text(message.get("WelcomeCode"), "WelcomeCode"),
            "state": optional_text(message.get("State"), "State"),
        }
    else:
        name = SemanticEvent.WECOM_CONTACT_REMOVED
        properties = {
            "staff_id": staff_id,
            "external_userid": identity.traits["wecom_external_userid"],
            "removed_by": "staff" if change == "del_external_contact" else "customer",
            "source": optional_text(message.get("Source"), "Source"),
        }
    return channel_event(
        ctx, name=name, event_id=event_id, identity=identity, properties=properties, occurred_at=occurred_at
    )


def map_wecom_message(plaintext: str, ctx: CallbackContext) -> MappedCallback:
    """One decrypted WeCom callback message as events (none when it is not a contact change)."""
    result = MappedCallback()
    message = parse_xml(plaintext, "Encrypt")
    change = message.get("ChangeType", "")
    if message.get("Event") != CONTACT_EVENT or change not in (
        "add_external_contact",
        "del_external_contact",
        "del_follow_user",
    ):
        result.ignored += 1
        return result
    try:
        result.events.append(_contact_event(ctx, message, change))
    except ItemError as exc:
        result.errors.append(exc)
    return result
