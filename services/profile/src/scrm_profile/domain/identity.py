"""Identity resolution rules: which identifiers name a customer, how they are normalised, who survives a merge."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import phonenumbers

from scrm_contracts import TrackedEvent

IDENTITY_KINDS = (
    "user_id",
    "anonymous_id",
    "phone",
    "email",
    "wecom_external_userid",
    "wechat_unionid",
    "wechat_openid",
)
MERGED_KIND = "merged_customer_id"
"""Identity kind kept for a merged-away customer id, so old references resolve to the survivor."""

_TRAIT_KINDS = ("phone", "email", "wecom_external_userid", "wechat_unionid", "wechat_openid")
_PROPERTY_KINDS = {
    "external_userid": "wecom_external_userid",
    "openid": "wechat_openid",
    "phone": "phone",
    "email": "email",
}
_PROPERTY_EVENTS = {
    "WeCom Contact Added",
    "WeCom Contact Removed",
    "WeCom Group Joined",
    "WeCom Group Left",
    "Official Account Subscribed",
    "Official Account Unsubscribed",
    "Subscribe Message Authorized",
    "SMS Unsubscribed",
    "Email Unsubscribed",
}


def normalise_phone(raw: Any, default_region: str = "CN") -> str | None:
    """E.164 (``+8613812345678``), or None when it is not a valid number."""
    if not isinstance(raw, str | int) or not str(raw).strip():
        return None
    try:
        parsed = phonenumbers.parse(str(raw).strip(), default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: Any) -> str | None:
    """Trimmed and lower-cased, or None when it is not an address."""
    if not isinstance(raw, str):
        return None
    value = raw.strip().lower()
    local, at, domain = value.partition("@")
    return value if at and local and "." in domain and " " not in value else None


def normalise(kind: str, raw: Any, default_region: str = "CN") -> str | None:
    if kind == "phone":
        return normalise_phone(raw, default_region)
    if kind == "email":
        return normalise_email(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    return str(raw).strip()


def identifiers_of(event: TrackedEvent, default_region: str = "CN") -> list[tuple[str, str]]:
    """Every identifier an event names, normalised, deduplicated, strongest first."""
    found: list[tuple[str, Any]] = [("user_id", event.user_id), ("anonymous_id", event.anonymous_id)]
    found += [(kind, event.traits.get(kind)) for kind in _TRAIT_KINDS]
    found += [
        (kind, event.context.get("traits", {}).get(kind))
        for kind in _TRAIT_KINDS
        if isinstance(event.context.get("traits"), dict)
    ]
    if event.type == "track" and event.event in _PROPERTY_EVENTS:
        found += [(kind, event.properties.get(prop)) for prop, kind in _PROPERTY_KINDS.items()]
    seen: dict[tuple[str, str], None] = {}
    for kind, raw in found:
        value = normalise(kind, raw, default_region)
        if value is not None:
            seen[(kind, value)] = None
    return list(seen)


def survivor(candidates: Iterable[tuple[str, datetime]]) -> str:
    """The customer that survives a merge: the oldest, then the smallest id (deterministic on every replica)."""
    return min(candidates, key=lambda c: (c[1], c[0]))[0]
