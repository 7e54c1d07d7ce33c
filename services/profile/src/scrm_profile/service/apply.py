"""How each kind of event changes a customer row (traits, membership, stored value, reachability).

Orders and refunds are handled in ``consume`` because they recompute aggregates from stored history.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from scrm_contracts import IdentifyTraits, OwnerChanged, ProfileChange, SemanticEvent, TrackedEvent
from scrm_contracts.semantic import (
    MembershipRenewedProperties,
    MembershipStartedProperties,
    TagsChangedProperties,
    WeComContactAddedProperties,
    WeComContactRemovedProperties,
)
from scrm_kit.errors import InvalidInput
from scrm_profile.adapters.orm import CustomerRow
from scrm_profile.domain.identity import normalise_email, normalise_phone

ENGAGEMENT_EVENTS = {SemanticEvent.MESSAGE_OPENED, SemanticEvent.MESSAGE_CLICKED, SemanticEvent.MESSAGE_REPLIED}
ID_TRAITS = ("wecom_external_userid", "wechat_unionid", "wechat_openid")


def _validated(model: type[Any], event: TrackedEvent) -> Any:
    try:
        return model.model_validate(event.properties)
    except ValidationError as exc:
        raise InvalidInput(f"{event.event} properties: {exc}", field="properties") from exc


def _owner_change(
    customer: CustomerRow, staff_id: str | None, store_id: str | None, reason: str, event: TrackedEvent
) -> list[ProfileChange]:
    if not staff_id or staff_id == customer.owner_staff_id:
        return []
    previous = customer.owner_staff_id
    customer.owner_staff_id = staff_id
    customer.store_id = store_id or customer.store_id
    return [
        OwnerChanged(
            event_id=f"owner:{customer.customer_id}:{event.event_id}",
            tenant_id=customer.tenant_id,
            customer_id=customer.customer_id,
            user_id=customer.user_id,
            occurred_at=event.occurred_at,
            from_staff_id=previous,
            to_staff_id=staff_id,
            store_id=customer.store_id,
            reason=reason,  # type: ignore[arg-type]
        )
    ]


def apply_identify(customer: CustomerRow, event: TrackedEvent, region: str) -> list[ProfileChange]:
    """Take the traits an identify call carries; unknown traits are kept in ``traits``."""
    try:
        traits = IdentifyTraits.model_validate(event.traits)
    except ValidationError as exc:
        raise InvalidInput(f"identify traits: {exc}", field="traits") from exc
    known = set(IdentifyTraits.model_fields)
    extra = {k: v for k, v in event.traits.items() if k not in known}
    customer.traits = {
        **(customer.traits or {}),
        **extra,
        **{k: getattr(traits, k) for k in ID_TRAITS if getattr(traits, k)},
    }
    customer.phone = normalise_phone(traits.phone, region) or customer.phone
    customer.email = normalise_email(traits.email) or customer.email
    for attr in ("name", "birthday", "gender", "city", "timezone", "membership_level"):
        if getattr(traits, attr) is not None:
            setattr(customer, attr, getattr(traits, attr))
    if traits.sms_consent is not None:
        customer.sms_consent = "subscribed" if traits.sms_consent else "unsubscribed"
    if traits.email_consent is not None:
        customer.email_consent = "subscribed" if traits.email_consent else "unsubscribed"
    if traits.store_id and not traits.owner_staff_id:
        customer.store_id = traits.store_id
    return _owner_change(customer, traits.owner_staff_id, traits.store_id, "trait", event)


def apply_track(customer: CustomerRow, event: TrackedEvent) -> list[ProfileChange]:
    """Membership, channel and engagement events; every other track event only lands on the timeline."""
    name = event.event
    if name == SemanticEvent.MEMBERSHIP_STARTED:
        props = _validated(MembershipStartedProperties, event)
        customer.membership_level = props.level
        customer.membership_started_at = props.started_at or event.occurred_at
        customer.membership_expires_at = props.expires_at
    elif name == SemanticEvent.MEMBERSHIP_RENEWED:
        props = _validated(MembershipRenewedProperties, event)
        customer.membership_expires_at = props.expires_at
        customer.membership_level = props.level or customer.membership_level
    elif name == SemanticEvent.MEMBERSHIP_CANCELLED:
        customer.membership_expires_at = event.occurred_at
    elif name == SemanticEvent.WECOM_CONTACT_ADDED:
        props = _validated(WeComContactAddedProperties, event)
        customer.wecom_staff_ids = sorted(set(customer.wecom_staff_ids or []) | {props.staff_id})
        customer.traits = {**(customer.traits or {}), "wecom_external_userid": props.external_userid}
        if customer.owner_staff_id is None:
            return _owner_change(customer, props.staff_id, props.store_id, "contact_added", event)
    elif name == SemanticEvent.WECOM_CONTACT_REMOVED:
        props = _validated(WeComContactRemovedProperties, event)
        customer.wecom_staff_ids = sorted(set(customer.wecom_staff_ids or []) - {props.staff_id})
    elif name in (SemanticEvent.OFFICIAL_ACCOUNT_SUBSCRIBED, SemanticEvent.OFFICIAL_ACCOUNT_UNSUBSCRIBED):
        customer.official_account_follower = name == SemanticEvent.OFFICIAL_ACCOUNT_SUBSCRIBED
    elif name == SemanticEvent.SMS_UNSUBSCRIBED:
        customer.sms_consent = "unsubscribed"
    elif name == SemanticEvent.EMAIL_UNSUBSCRIBED:
        customer.email_consent = "unsubscribed"
    elif name == SemanticEvent.TAGS_CHANGED:
        props = _validated(TagsChangedProperties, event)
        tags = (set(customer.tags or []) | {t.strip() for t in props.add}) - {t.strip() for t in props.remove}
        customer.tags = sorted(tags)
    if name in ENGAGEMENT_EVENTS:
        touch_engagement(customer, event.occurred_at)
    return []


def touch_engagement(customer: CustomerRow, at: datetime) -> None:
    if customer.last_engagement_at is None or at > customer.last_engagement_at:
        customer.last_engagement_at = at


def validate_stored_value(event: TrackedEvent) -> Decimal:
    """The amount a stored-value event moves (validated; the balance is summed from stored events)."""
    from scrm_contracts.semantic import StoredValueProperties

    return Decimal(_validated(StoredValueProperties, event).amount)
